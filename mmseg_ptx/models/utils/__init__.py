"""Model utilities: inference in bfloat16 weights, compile-friendly
stochastic depth."""
from .drop_path import TensorDropPath
from .inference_dtype import (INFERENCE_DTYPES, cast_for_inference,
                              resolve_inference_dtype)

__all__ = [
    'INFERENCE_DTYPES', 'TensorDropPath', 'cast_for_inference',
    'resolve_inference_dtype'
]
