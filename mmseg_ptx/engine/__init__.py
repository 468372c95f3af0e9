"""Training-loop components: hooks and optimizer wrapper constructors."""
from .hooks import (CompileModulesHook, InferenceDtypeHook,
                    PerformanceReportHook, PredictionWriterHook, PRCurveHook,
                    TrainSegMetricsHook)
from .optimizers import MergedParamGroupsOptimWrapperConstructor

__all__ = ['CompileModulesHook', 'InferenceDtypeHook',
           'PerformanceReportHook', 'PredictionWriterHook', 'PRCurveHook',
           'TrainSegMetricsHook', 'MergedParamGroupsOptimWrapperConstructor']
