"""Training-loop components: hooks."""
from .hooks import (CompileModulesHook, InferenceDtypeHook,
                    PerformanceReportHook, PredictionWriterHook, PRCurveHook,
                    TrainSegMetricsHook)

__all__ = ['CompileModulesHook', 'InferenceDtypeHook',
           'PerformanceReportHook', 'PredictionWriterHook', 'PRCurveHook',
           'TrainSegMetricsHook']
