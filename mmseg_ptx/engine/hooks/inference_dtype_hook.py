"""Test runs with the network's weights in bfloat16."""
from __future__ import annotations

from typing import Union

import torch
from mmseg.registry import HOOKS

from ...models.utils import cast_for_inference, resolve_inference_dtype
from .inference_only_hook import InferenceOnlyHook


@HOOKS.register_module()
class InferenceDtypeHook(InferenceOnlyHook):
    """Cast the model to ``dtype`` with :func:`cast_for_inference` before
    testing.

    For ``tools/test.py``-style runs: ``tools/test.py ... --dtype bfloat16``
    adds it, or add
    ``custom_hooks = [dict(type='InferenceDtypeHook', dtype='bfloat16')]``
    to the config.
    The cast happens in ``before_test``, after the checkpoint is loaded.

    In a run that trains, the hook does nothing (and says so once):
    casting for validation would round the float32 weights being trained.

    Args:
        dtype (str | torch.dtype): ``'bfloat16'``, ``'float16'`` or
            ``'float32'`` (no cast). Defaults to ``'bfloat16'``.
    """

    kept_in_training = 'its weights and its validation stay float32'

    def __init__(self, dtype: Union[str, torch.dtype] = 'bfloat16') -> None:
        super().__init__()
        self.dtype = resolve_inference_dtype(dtype)

    def prepare_for_test(self, runner) -> None:
        # cast_for_inference looks through DDP and TTA wrappers itself.
        cast_for_inference(runner.model, self.dtype)
        runner.logger.info(f'InferenceDtypeHook: network in {self.dtype}, '
                           'data preprocessor and logits in float32')
