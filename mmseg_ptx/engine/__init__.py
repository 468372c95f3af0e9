"""Training-loop components: hooks."""
from .hooks import PRCurveHook, TrainSegMetricsHook

__all__ = ['PRCurveHook', 'TrainSegMetricsHook']
