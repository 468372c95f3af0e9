"""Hooks registered in MMSeg's HOOKS registry."""
from .channels_last_hook import ChannelsLastHook, to_channels_last
from .compile_modules_hook import (SWIN_BLOCKS, CompileModulesHook,
                                   allow_recompiles, compile_modules)
from .deferred_runtime_info_hook import DeferredRuntimeInfoHook
from .fuse_conv_bn_hook import FuseConvBNHook
from .inference_dtype_hook import InferenceDtypeHook
from .performance_report_hook import PerformanceReportHook
from .pr_curve_hook import PRCurveHook
from .prediction_writer_hook import PredictionWriterHook
from .resume_consistency_hook import ResumeConsistencyHook
from .train_seg_metrics_hook import TrainSegMetricsHook, batch_dice_iou

__all__ = [
    'ChannelsLastHook', 'to_channels_last', 'CompileModulesHook',
    'SWIN_BLOCKS', 'allow_recompiles', 'compile_modules',
    'DeferredRuntimeInfoHook',
    'FuseConvBNHook', 'InferenceDtypeHook', 'PerformanceReportHook',
    'PRCurveHook', 'PredictionWriterHook', 'ResumeConsistencyHook',
    'TrainSegMetricsHook',
    'batch_dice_iou'
]
