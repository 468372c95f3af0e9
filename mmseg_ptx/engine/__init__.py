"""Training-loop components: hooks."""
from .hooks import (PerformanceReportHook, PredictionWriterHook, PRCurveHook,
                    TrainSegMetricsHook)

__all__ = ['PerformanceReportHook', 'PredictionWriterHook', 'PRCurveHook',
           'TrainSegMetricsHook']
