"""Training-loop components: hooks and optimizer wrapper constructors."""
from .hooks import (ChannelsLastHook, CompileModulesHook, InferenceDtypeHook,
                    PerformanceReportHook, PredictionWriterHook, PRCurveHook,
                    TrainSegMetricsHook)
from .optimizers import MergedParamGroupsOptimWrapperConstructor

__all__ = ['ChannelsLastHook', 'CompileModulesHook', 'InferenceDtypeHook',
           'PerformanceReportHook', 'PredictionWriterHook', 'PRCurveHook',
           'TrainSegMetricsHook', 'MergedParamGroupsOptimWrapperConstructor']
