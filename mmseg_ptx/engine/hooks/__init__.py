"""Hooks registered in MMSeg's HOOKS registry."""
from .pr_curve_hook import PRCurveHook
from .train_seg_metrics_hook import TrainSegMetricsHook, batch_dice_iou

__all__ = ['PRCurveHook', 'TrainSegMetricsHook', 'batch_dice_iou']
