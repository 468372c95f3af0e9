"""Training-loop components: hooks."""
from .hooks import (CompileModulesHook, PerformanceReportHook,
                    PredictionWriterHook, PRCurveHook, TrainSegMetricsHook)

__all__ = ['CompileModulesHook', 'PerformanceReportHook',
           'PredictionWriterHook', 'PRCurveHook', 'TrainSegMetricsHook']
