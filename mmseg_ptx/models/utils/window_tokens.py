"""Swin's window partition and its reverse, each as one gather.

Before window attention, stock mmseg's ``ShiftWindowMSA`` zero-pads the
(B, H*W, C) token map to multiples of the window, rolls it by the shift and
partitions it into windows: three copies of the activations (four under
autocast, whose cast comes first here, see ``SwinTransformerSDPA``). After
it, the reverse partition, the roll back and the crop are three more. All
of that is a fixed rearrangement of the tokens plus zero tokens for the
padding, so each direction is a single ``index_select`` with an index
computed once per feature-map size: 2 copies instead of 4 before the
attention and 1 instead of 3 after it, in the forward and in the backward
pass. The values are moved, never computed, so outputs and gradients are
bit for bit those of the stock copies (tested).
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ['window_token_index', 'partition_windows', 'reverse_windows']


def window_token_index(hw_shape: Tuple[int, int], window_size: int,
                       shift_size: int,
                       device: torch.device) -> Tuple[Tensor, Tensor]:
    """Where each token goes in Swin's (shifted) window partition.

    The partition is that of mmseg's ``ShiftWindowMSA``: zero-pad the
    bottom and right to multiples of ``window_size``, roll by
    ``-shift_size`` along both axes, cut into windows in row-major window
    order, tokens row-major inside each window.

    Computed arithmetically (no boolean indexing), so it traces into a
    ``torch.compile`` graph with static shapes.

    Args:
        hw_shape (tuple[int, int]): Feature map size (H, W).
        window_size (int): Window height and width.
        shift_size (int): Cyclic shift, 0 for regular windows.
        device (torch.device): Device of the returned indices.

    Returns:
        tuple[Tensor, Tensor]: ``index`` of shape (H_pad * W_pad,): the
        token (``h * W + w``) at each window position, ``H * W`` for a
        padding position; ``inverse`` of shape (H * W,): the window
        position of each token.
    """
    H, W = hw_shape
    ws, s = window_size, shift_size
    H_pad = -(-H // ws) * ws
    W_pad = -(-W // ws) * ws
    windows_per_row = W_pad // ws

    # Window position p -> (row i, column j) of the rolled, padded map ->
    # the token rolled there from (i + s, j + s).
    p = torch.arange(H_pad * W_pad, device=device)
    window, inside = p // (ws * ws), p % (ws * ws)
    i = window // windows_per_row * ws + inside // ws
    j = window % windows_per_row * ws + inside % ws
    h, w = (i + s) % H_pad, (j + s) % W_pad
    index = torch.where((h < H) & (w < W), h * W + w,
                        torch.full_like(h, H * W))

    # Token (h, w) -> rolled to (h - s, w - s) -> its window position.
    # (+ H_pad keeps the remainder's operand non-negative: inductor's value
    # range analysis asserts on a negative one, torch 2.13.)
    token = torch.arange(H * W, device=device)
    i = (token // W + H_pad - s) % H_pad
    j = (token % W + W_pad - s) % W_pad
    inverse = ((i // ws * windows_per_row + j // ws) * (ws * ws) +
               i % ws * ws + j % ws)
    return index, inverse


def _gather_padded(x: Tensor, index: Tensor, dtype: torch.dtype) -> Tensor:
    """``out[:, p] = x[:, index[p]]`` in ``dtype``, zero where
    ``index[p] == x.shape[1]``."""
    B, L, C = x.shape
    if index.numel() == L:  # a permutation: nothing padded
        return x.to(dtype).index_select(1, index)
    # One copy casts and pads: the extra token L is the zero padding.
    src = x.new_empty((B, L + 1, C), dtype=dtype)
    src[:, :L] = x
    src[:, L] = 0
    return src.index_select(1, index)


class _PartitionWindows(torch.autograd.Function):
    """Tokens (B, L, C) to window positions (B, P, C); the adjoint of
    :class:`_ReverseWindows`."""

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, inverse: Tensor,
                dtype: torch.dtype) -> Tensor:
        ctx.save_for_backward(index, inverse)
        ctx.input_dtype = x.dtype
        return _gather_padded(x, index, dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, inverse = ctx.saved_tensors
        # Each token sits at exactly one window position; the gradient of
        # the zero padding is dropped, as F.pad's backward drops it.
        grad_x = _ReverseWindows.apply(grad, index, inverse)
        return grad_x.to(ctx.input_dtype), None, None, None


class _ReverseWindows(torch.autograd.Function):
    """Window positions (B, P, C) back to tokens (B, L, C), dropping the
    padding; the adjoint of :class:`_PartitionWindows`."""

    @staticmethod
    def forward(ctx, windows: Tensor, index: Tensor,
                inverse: Tensor) -> Tensor:
        ctx.save_for_backward(index, inverse)
        return windows.index_select(1, inverse)

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, inverse = ctx.saved_tensors
        # Padding positions get a zero gradient, as after the stock crop.
        grad_windows = _PartitionWindows.apply(grad, index, inverse,
                                               grad.dtype)
        return grad_windows, None, None


def partition_windows(x: Tensor,
                      index: Tensor,
                      inverse: Tensor,
                      dtype: Optional[torch.dtype] = None) -> Tensor:
    """Tokens to (shifted, padded) windows in one gather.

    Args:
        x (Tensor): Tokens of shape (B, H*W, C).
        index (Tensor): From :func:`window_token_index`.
        inverse (Tensor): From :func:`window_token_index`.
        dtype (torch.dtype | None): Cast to this dtype in the same copy
            (the gradient comes back in ``x.dtype``). Default: None, keep
            ``x.dtype``.

    Returns:
        Tensor: Shape (B, num_windows * window_size**2, C), windows in
        mmseg's order; ``.view(-1, window_size**2, C)`` gives the
        (num_windows*B, N, C) input of ``WindowMSA``.
    """
    return _PartitionWindows.apply(x, index, inverse, dtype or x.dtype)


def reverse_windows(windows: Tensor, index: Tensor,
                    inverse: Tensor) -> Tensor:
    """Windows back to tokens in one gather: the reverse partition, roll
    and crop of :func:`partition_windows`.

    Args:
        windows (Tensor): Shape (B, num_windows * window_size**2, C).
        index (Tensor): From :func:`window_token_index`.
        inverse (Tensor): From :func:`window_token_index`.

    Returns:
        Tensor: Tokens of shape (B, H*W, C).
    """
    return _ReverseWindows.apply(windows, index, inverse)
