"""Training-loop components: hooks and optimizer wrapper constructors."""
from .hooks import (ChannelsLastHook, CompileModulesHook,
                    DeferredRuntimeInfoHook, FuseConvBNHook,
                    InferenceDtypeHook, PerformanceReportHook,
                    PredictionWriterHook, PRCurveHook, ResumeConsistencyHook,
                    TrainSegMetricsHook)
from .optimizers import MergedParamGroupsOptimWrapperConstructor

__all__ = ['ChannelsLastHook', 'CompileModulesHook',
           'DeferredRuntimeInfoHook', 'FuseConvBNHook', 'InferenceDtypeHook',
           'PerformanceReportHook', 'PredictionWriterHook', 'PRCurveHook',
           'ResumeConsistencyHook', 'TrainSegMetricsHook',
           'MergedParamGroupsOptimWrapperConstructor']
