"""Swin window attention through PyTorch's FlexAttention.

Swin's attention scores get an additive bias: the relative position bias
(heads, N, N), a learned parameter, plus in shifted blocks the shift mask
(windows, N, N). SDPA's fused CUDA kernels take such a bias only as a
materialised tensor, one (heads, N, N) slab per window and image, and in
training the memory-efficient kernel writes its gradient at that full
size before autograd sums it back to (heads, N, N).
:func:`torch.nn.attention.flex_attention.flex_attention` instead reads the
bias inside a generated flash-attention kernel through a ``score_mod``
function, and in the backward adds the bias gradient into a buffer of the
bias's own size (with atomic adds, so the bias gradient is not bitwise
deterministic).

FlexAttention is fused only under :func:`torch.compile` (the model compiled
whole or block by block, e.g. by ``CompileModulesHook``); called eagerly it
computes the same values through an unfused fallback that materialises all
scores, and PyTorch warns once. Its backward needs a GPU.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from torch import Tensor

from ... import compat

__all__ = ['flex_window_attention']


def flex_window_attention(
        query: Tensor,
        key: Tensor,
        value: Tensor,
        bias: Tensor,
        mask: Optional[Tensor] = None,
        scale: Optional[float] = None,
        kernel_options: Optional[Dict[str, Any]] = None) -> Tensor:
    """Window attention with an additive per-head bias and an optional
    per-window mask, as one FlexAttention call.

    Computes ``softmax(q @ k^T * scale + bias[h] + mask[w]) @ v`` for every
    window ``w`` of every image and head ``h``, where the windows of one
    image are consecutive along the batch axis (window index fastest), as
    Swin partitions them.

    Args:
        query (Tensor): (num_windows*B, num_heads, N, head_dims).
        key (Tensor): Same shape as ``query``.
        value (Tensor): Same shape as ``query``.
        bias (Tensor): Relative position bias (num_heads, N, N); may require
            grad.
        mask (Tensor | None): Additive shift mask (num_windows, N, N), or
            None for unshifted windows. Default: None.
        scale (float | None): Score scale; None for ``head_dims ** -0.5``.
            Default: None.
        kernel_options (dict | None): FlexAttention's ``kernel_options``
            (e.g. ``dict(BLOCK_M=64, BLOCK_N=64)``: 144-token windows fill
            two 128-token tiles but three 64-token ones). Default: None.

    Returns:
        Tensor: (num_windows*B, num_heads, N, head_dims).
    """
    if compat.flex_attention is None:
        raise RuntimeError('flex_window_attention needs FlexAttention '
                           '(torch >= 2.5)')
    if mask is None:

        def score_mod(score, b, h, q_idx, kv_idx):
            return score + bias[h, q_idx, kv_idx]
    else:
        num_windows = mask.shape[0]
        if query.shape[0] % num_windows:
            raise ValueError(f'{query.shape[0]} windows in the batch are not '
                             f'a multiple of the mask\'s {num_windows}')
        # One gather per score instead of two; the windows' bias gradients
        # then collide only across the images of the batch, not across
        # every window of it.
        bias_and_mask = bias.unsqueeze(0) + mask.unsqueeze(1)

        def score_mod(score, b, h, q_idx, kv_idx):
            return score + bias_and_mask[b % num_windows, h, q_idx, kv_idx]

    return compat.flex_attention(
        query,
        key,
        value,
        score_mod=score_mod,
        scale=scale,
        kernel_options=kernel_options)
