"""Fold BatchNorm into the convolution before it, for inference."""
from __future__ import annotations

from collections import Counter

import torch
from mmcv.cnn import ConvModule
from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
from mmcv.cnn.bricks.wrappers import Conv2d as MMCVConv2d
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['fuse_conv_bn']

#: Convolutions whose ``forward`` uses ``self.weight`` and ``self.bias`` as
#: they are (not subclasses: mmcv's ConvWS2d standardises its weight).
_FOLDABLE_CONVS = (nn.Conv2d, MMCVConv2d, Conv2dAdaptivePadding)


def _fold(conv: nn.Conv2d, norm: _BatchNorm) -> None:
    """Give ``conv`` the weight and bias of ``norm(conv(x))`` in eval
    mode (in float64, then back to the weight's dtype and memory layout)."""
    weight = conv.weight
    with torch.no_grad():
        inv_std = (norm.running_var.double() + norm.eps).rsqrt()
        scale = inv_std if norm.weight is None else norm.weight * inv_std
        shift = -norm.running_mean.double() * scale
        if norm.bias is not None:
            shift = shift + norm.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        fused = weight.double() * scale.view(-1, 1, 1, 1)
        layout = (torch.channels_last if weight.dim() == 4
                  and weight.is_contiguous(memory_format=torch.channels_last)
                  and not weight.is_contiguous() else torch.contiguous_format)
        fused = fused.to(weight.dtype).contiguous(memory_format=layout)
    conv.weight = nn.Parameter(fused, requires_grad=weight.requires_grad)
    conv.bias = nn.Parameter(
        shift.to(weight.dtype), requires_grad=weight.requires_grad)


def fuse_conv_bn(model: nn.Module) -> int:
    """Fold each BatchNorm of an mmcv ``ConvModule`` into its convolution.

    In eval mode a BatchNorm is an affine map per channel, so
    ``norm(conv(x))`` is one convolution with a scaled weight and a bias:
    one kernel and one pass over the activations fewer per layer. UPerNet
    with its auxiliary FCN head has 13 such layers (``ConvModule`` with
    ``norm_cfg`` BN or SyncBN).
    The result computes eval-mode BatchNorm (the running statistics),
    whatever the model's mode: for inference only, never before training.

    Unlike mmcv's ``fuse_conv_bn``, which pairs a BatchNorm with whichever
    convolution was registered just before it, only ``ConvModule`` s whose
    ``order`` puts the convolution right before the norm are folded, so a
    BatchNorm that is not applied to that convolution's output is never
    touched. Left as they are: BatchNorms without running statistics,
    convolutions that transform their weight in ``forward`` (mmcv's
    weight-standardised ``ConvWS``/``ConvAWS``: only plain ``nn.Conv2d``
    and mmcv's ``Conv2d`` wrapper and ``Conv2dAdaptivePadding`` are
    folded), and convolutions or weights the model uses in more than one
    place (folding them would change the other use). The folding is done
    in float64; the weights keep their dtype and memory layout
    (``channels_last`` included). Calling it again folds nothing.

    Args:
        model (nn.Module): Any module; every ``ConvModule`` inside is
            considered (through wrappers, TTA models and ensembles).

    Returns:
        int: The number of BatchNorms folded.
    """
    uses = Counter(id(m) for _, m in model.named_modules(
        remove_duplicate=False))
    uses.update(
        id(p) for _, p in model.named_parameters(remove_duplicate=False))
    folded = 0
    for module in model.modules():
        if not (isinstance(module, ConvModule) and module.with_norm
                and isinstance(module.norm, _BatchNorm)
                and type(module.conv) in _FOLDABLE_CONVS):
            continue
        order = module.order
        if order.index('norm') != order.index('conv') + 1:
            continue
        conv, norm = module.conv, module.norm
        if norm.running_mean is None or norm.running_var is None:
            continue
        if any(uses[id(t)] > 1 for t in (conv, *conv.parameters())):
            continue
        _fold(conv, norm)
        # ConvModule.forward calls getattr(self, norm_name).
        module.add_module(module.norm_name, nn.Identity())
        # Its efficient_conv_bn_eval path (mmcv >= 2.0.1) would feed the
        # Identity to a conv-BN forward.
        if hasattr(module, 'turn_on_efficient_conv_bn_eval'):
            module.turn_on_efficient_conv_bn_eval(False)
        folded += 1
    return folded
