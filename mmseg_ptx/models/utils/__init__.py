"""Model utilities: inference in bfloat16 weights, BatchNorm folding,
compile-friendly stochastic depth, Swin window gathers and FlexAttention
window attention, strict checkpoint loading, checkpoint averaging."""
from .average_checkpoints import average_checkpoints
from .checkpoint import (CheckpointError, check_checkpoint_file,
                         init_model_strict, load_checkpoint_strict,
                         load_runner_checkpoints_strictly, read_checkpoint)
from .drop_path import TensorDropPath
from .flex_window_attention import (check_flex_kernel_options,
                                    flex_window_attention)
from .fuse_conv_bn import fuse_conv_bn
from .inference_dtype import (INFERENCE_DTYPES, cast_for_inference,
                              resolve_inference_dtype)

__all__ = [
    'CheckpointError', 'INFERENCE_DTYPES', 'TensorDropPath',
    'average_checkpoints', 'cast_for_inference', 'check_checkpoint_file',
    'check_flex_kernel_options', 'flex_window_attention', 'fuse_conv_bn',
    'init_model_strict', 'load_checkpoint_strict',
    'load_runner_checkpoints_strictly', 'read_checkpoint',
    'resolve_inference_dtype'
]
