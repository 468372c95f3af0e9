"""Runs with the convolution weights in channels_last (NHWC) memory format."""
from __future__ import annotations

import copy
from typing import Any, Iterable, Optional

import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmseg.registry import HOOKS


def _like(param: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` with ``param``'s strides (itself if it has them)."""
    if tensor.stride() == param.stride():
        return tensor
    return torch.empty_like(param, dtype=tensor.dtype).copy_(tensor)


def to_channels_last(model: torch.nn.Module,
                     optimizers: Iterable[torch.optim.Optimizer] = ()
                     ) -> int:
    """Put every 4-D parameter and buffer of ``model`` (the convolution
    weights) in ``torch.channels_last`` memory format, in place, with their
    gradients and the optimizers' state of those parameters.

    cuDNN then runs the convolutions in NHWC, its native layout for tensor
    cores; their outputs follow the weights' layout, so the input may stay
    NCHW. Parameters keep their identity (``param.data`` is replaced, as
    ``Module.to`` does), so optimizers built before stay valid. A
    parameter's gradient and state (AdamW's moments) get its exact strides:
    fused AdamW walks them as flat memory; on CUDA it refuses mixed
    layouts, and on the CPU (torch 2.13) it silently pairs the wrong
    elements. Other tensors (5-D ones too) are left as they are. Calling it
    again changes nothing.

    Args:
        model (torch.nn.Module): The model, or a model wrapper around it.
        optimizers (Iterable[torch.optim.Optimizer]): Optimizers over the
            model's parameters, whose state is converted too.

    Returns:
        int: The number of 4-D parameters of ``model``.
    """
    params = [p for p in model.parameters() if p.dim() == 4]
    for param in params:
        param.data = param.data.contiguous(memory_format=torch.channels_last)
        if param.grad is not None:
            param.grad = _like(param, param.grad)
    for module in model.modules():
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None and buffer.dim() == 4:
                setattr(module, name, buffer.contiguous(
                    memory_format=torch.channels_last))
    for optimizer in optimizers:
        for param in params:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if (isinstance(value, torch.Tensor)
                        and value.shape == param.shape):
                    state[key] = _like(param, value)
    return len(params)


def contiguous_tensors(obj: Any) -> Any:
    """``obj`` (a checkpoint's nested dicts, lists and tuples) with every
    tensor in the default contiguous layout.

    Containers are copied, not changed: an optimizer's ``state_dict``
    shares its per-parameter dicts with the live optimizer. Tensors already
    contiguous are kept, not copied.

    Args:
        obj: A tensor, or a dict, list or tuple holding them; anything else
            is returned as it is.

    Returns:
        The same structure with contiguous tensors.
    """
    if isinstance(obj, torch.Tensor):
        return obj.contiguous()
    if isinstance(obj, dict):
        new = copy.copy(obj)  # keeps the type and a state_dict's _metadata
        for key, value in obj.items():
            new[key] = contiguous_tensors(value)
        return new
    if type(obj) in (list, tuple):
        return type(obj)(contiguous_tensors(v) for v in obj)
    return obj


def _optimizers(optim_wrapper: Optional[object]) -> list:
    if isinstance(optim_wrapper, OptimWrapperDict):
        return [w.optimizer for w in optim_wrapper.values()]
    if isinstance(optim_wrapper, OptimWrapper):
        return [optim_wrapper.optimizer]
    return []  # not built: a val/test run's config dict, or None


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Hold the model's convolution weights in ``torch.channels_last`` for
    training, validation and testing (:func:`to_channels_last`).

    On an H200 (docs/performance.md) channels_last alone, in fp32, gave
    UPerNet + Swin-B 1.07x the train step and 1.14x inference at batch 16,
    and 0.93x (within run-to-run spread) and 1.14x at batch 4. The fastest
    measured rows (all switches, batch 4 and 16) include it; its share on
    top of bf16 is not measured yet. ``configs/upernet_swin-b_ptx-512_fast.py``
    turns it on: ``custom_hooks = [..., dict(type='ChannelsLastHook')]``.

    The model is converted in ``before_train`` / ``before_val`` /
    ``before_test``: after the weights are initialised (random
    initialisers fill a channels_last tensor in another order, so a seeded
    run would start from other weights than without the hook), after a
    checkpoint is loaded or a run resumed (with the resumed optimizer
    state), and before the first forward, where ``CompileModulesHook`` and
    mmengine's ``compile`` trace the model. Checkpoints are saved in the
    default layout, so runs without the hook resume them as any other.

    Under DDP the model is wrapped before the hook converts it. With
    ``find_unused_parameters=False`` (mmengine's default) DDP lays its
    gradient buckets out again after the first iteration; until then, and
    always otherwise, it copies each gradient between the layouts (PyTorch
    warns once: "Grad strides do not match bucket view strides").
    ``gradient_as_bucket_view=True`` would hand the optimizer gradients in
    the old layout, which fused AdamW cannot take, so it is refused.
    """

    priority = 'HIGHEST'

    def __init__(self) -> None:
        self._logged = False

    def _convert(self, runner, optimizers: Iterable = ()) -> None:
        if any(getattr(m, 'gradient_as_bucket_view', False)
               for m in runner.model.modules()):
            raise ValueError(
                'ChannelsLastHook cannot convert a model that DDP wraps with '
                'gradient_as_bucket_view=True: its gradients would keep the '
                'layout the weights had when DDP was built. Set '
                'model_wrapper_cfg=dict(gradient_as_bucket_view=False) or '
                'drop the hook.')
        converted = to_channels_last(runner.model, optimizers)
        if self._logged:
            return
        self._logged = True
        if converted:
            runner.logger.info(f'ChannelsLastHook: {converted} convolution '
                               'weights in channels_last')
        else:
            runner.logger.warning(
                'ChannelsLastHook: the model has no 4-D (convolution) '
                'parameters, nothing to convert')

    def before_train(self, runner) -> None:
        self._convert(runner, _optimizers(runner.optim_wrapper))

    def before_val(self, runner) -> None:
        self._convert(runner)

    def before_test(self, runner) -> None:
        self._convert(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        for key, value in checkpoint.items():
            checkpoint[key] = contiguous_tensors(value)
