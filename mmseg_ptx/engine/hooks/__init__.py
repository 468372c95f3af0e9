"""Hooks registered in MMSeg's HOOKS registry."""
from .train_seg_metrics_hook import TrainSegMetricsHook, batch_dice_iou

__all__ = ['TrainSegMetricsHook', 'batch_dice_iou']
