"""Model utilities: inference in bfloat16 weights."""
from .inference_dtype import (INFERENCE_DTYPES, cast_for_inference,
                              resolve_inference_dtype)

__all__ = [
    'INFERENCE_DTYPES', 'cast_for_inference', 'resolve_inference_dtype'
]
