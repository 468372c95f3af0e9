"""Training-loop components: hooks and optimizer wrapper constructors."""
from .hooks import (CompileModulesHook, PerformanceReportHook,
                    PredictionWriterHook, PRCurveHook, TrainSegMetricsHook)
from .optimizers import MergedParamGroupsOptimWrapperConstructor

__all__ = ['CompileModulesHook', 'PerformanceReportHook',
           'PredictionWriterHook', 'PRCurveHook', 'TrainSegMetricsHook',
           'MergedParamGroupsOptimWrapperConstructor']
