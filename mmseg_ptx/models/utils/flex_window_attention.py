"""Swin window attention through PyTorch's FlexAttention.

Swin's attention scores get an additive bias: the relative position bias
(heads, N, N), a learned parameter, plus in shifted blocks the shift mask
(windows, N, N). SDPA's fused CUDA kernels take such a bias only as a
materialised tensor, one (heads, N, N) slab per window and image, and in
training the memory-efficient kernel writes its gradient at that full
size before autograd sums it back to (heads, N, N).
:func:`torch.nn.attention.flex_attention.flex_attention` instead reads the
bias inside a generated flash-attention kernel through a ``score_mod``
function, and in the backward adds the bias gradient into a buffer the
size of the tensor it read (the bias, or in shifted blocks the bias plus
mask per window) with atomic adds, so the bias gradient is not bitwise
deterministic.

FlexAttention is fused only under :func:`torch.compile` (the model compiled
whole or block by block, e.g. by ``CompileModulesHook``); called eagerly it
computes the same values through an unfused fallback that materialises all
scores, and PyTorch warns once. On the CPU PyTorch refuses its backward
when the query, key or value need a gradient (always in training).
Compiled with a backend other than Inductor (``aot_eager``, the usual
debugging one), the backward of a bias computed inside the graph fails in
torch 2.13 ("Expected a proper Tensor but got None"; torch 2.14 runs it);
Inductor generates that backward itself.
"""
from __future__ import annotations

import warnings
from typing import Any, Dict, Optional

import torch
from torch import Tensor

from ... import compat

__all__ = ['flex_window_attention', 'check_flex_kernel_options']


def check_flex_kernel_options(options: Dict[str, Any]) -> None:
    """Warn about keys the installed FlexAttention does not list.

    FlexAttention ignores a key it does not read (a mistyped ``BLOCKM``,
    say), so a benchmark would time the defaults while its settings claim
    otherwise. Its list (``FlexKernelOptions``) is not complete, though
    (torch 2.13's Inductor also reads ``SPLIT_KV`` for short sequences), so
    an unlisted key is warned about, not refused. Keys may carry a ``fwd_``
    or ``bwd_`` prefix. A torch without ``FlexKernelOptions`` lists none:
    nothing is checked there.

    Args:
        options (dict): ``kernel_options`` for FlexAttention.
    """
    from torch.nn.attention import flex_attention as flex_module
    known_type = getattr(flex_module, 'FlexKernelOptions', None)
    if known_type is None:
        return
    known = set(known_type.__required_keys__ | known_type.__optional_keys__)
    unknown = [
        key for key in options
        if (key[4:] if key.startswith(('fwd_', 'bwd_')) else key) not in known
    ]
    if unknown:
        warnings.warn(
            f'flex_kernel_options: {unknown} not among the options torch '
            f'{torch.__version__} lists ({sorted(known)}, each also with a '
            "'fwd_' or 'bwd_' prefix); FlexAttention ignores the keys it "
            'does not read', stacklevel=2)


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
        kernel_options (dict | None): FlexAttention's ``kernel_options``:
            tile sizes (``BLOCK_M``, ``BLOCK_N`` in the forward,
            ``bwd_BLOCK_M1`` ... ``bwd_BLOCK_N2`` in the backward), warps,
            stages. None: Inductor's defaults, which depend on the torch
            version, GPU, dtype and head size. Default: None.

    Returns:
        Tensor: (num_windows*B, num_heads, N, head_dims).
    """
    if compat.flex_attention is None:
        raise RuntimeError('flex_window_attention needs FlexAttention '
                           'with a learned bias (torch >= 2.6)')
    if mask is None:

        def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor,
                      kv_idx: Tensor) -> Tensor:
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

        def score_mod(score: Tensor, b: Tensor, h: Tensor, q_idx: Tensor,
                      kv_idx: Tensor) -> Tensor:
            return score + bias_and_mask[b % num_windows, h, q_idx, kv_idx]

    return compat.flex_attention(
        query,
        key,
        value,
        score_mod=score_mod,
        scale=scale,
        kernel_options=kernel_options)
