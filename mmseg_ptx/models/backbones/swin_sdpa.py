"""Swin Transformer backbone with fused window attention.

:class:`SwinTransformerSDPA` is mmseg's :class:`~mmseg.models.backbones.
SwinTransformer` with the window attention computed by
:func:`torch.nn.functional.scaled_dot_product_attention` (SDPA). Everything
else -- patch embedding, blocks, FFNs, norms, ``init_weights`` -- is
inherited, and the module tree and ``state_dict`` keys are exactly mmseg's,
so the two load each other's checkpoints. Pretrained weights are
OpenMMLab's (the URLs of mmseg's Swin configs): like mmseg's, the backbone
does not convert Microsoft's original Swin checkpoints, whose keys it
would not find (mmseg's ``tools/model_converters/swin2mmseg.py`` converts
them).

Why it is faster (same maths):

* Stock ``WindowMSA`` materialises the (windows, heads, N, N) attention
  matrix several times (scaled scores, +bias, +mask, softmax, dropout). SDPA
  runs it as one fused kernel (memory-efficient / flash-style on CUDA and
  CPU), with the relative position bias plus the shift mask passed as the
  float ``attn_mask``.
* Stock ``ShiftWindowMSA`` rebuilds the shift mask on every forward of every
  shifted block (about fifteen small kernel launches); here it is built once
  per (window, shift, padded size, dtype, device) and kept in a bounded
  cache that every block shares (``WINDOW_CACHE``).
* The relative position bias is gathered straight into (heads, N, N) order
  (no permute + ``contiguous``).
* Pad, roll and window partition are one gather, and the reverse
  partition, roll back and crop another
  (:mod:`~mmseg_ptx.models.utils.window_tokens`): 3 copies instead of 6
  per block and pass, bit for bit the same values.
* Under autocast the features are cast to the autocast dtype in the
  partition's copy rather than by the qkv projection after it: the same
  values, no extra cast, half the bytes gathered.
* Stochastic depth is :class:`~mmseg_ptx.models.utils.TensorDropPath`, so
  under ``torch.compile`` blocks that differ only in their drop rate share
  one compiled graph.

``attn_impl='flex'`` swaps SDPA for PyTorch's FlexAttention
(:func:`~mmseg_ptx.models.utils.flex_window_attention`), which reads the
bias inside its kernel instead of taking it materialised per window.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import nullcontext
from typing import (Any, Callable, Dict, List, Optional, Sequence, Tuple,
                    TypeVar)

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import DropPath
from mmseg.models.backbones.swin import (ShiftWindowMSA, SwinTransformer,
                                         WindowMSA)
from mmseg.registry import MODELS
from torch import Tensor

from ... import compat
from ...compat import SDPBackend, autocast_dtype, is_compiling, sdpa_kernel
from ..utils.drop_path import TensorDropPath
from ..utils.flex_window_attention import (check_flex_kernel_options,
                                           flex_window_attention)
from ..utils.window_tokens import (partition_windows, reverse_windows,
                                   window_token_index)

__all__ = ['WindowMSASDPA', 'ShiftWindowMSASDPA', 'SwinTransformerSDPA']

# The value stock mmseg puts between tokens of different regions of a
# shifted window. Kept (rather than -inf) so that results match mmseg and a
# fully masked row can never produce NaN.
_SHIFT_MASK_VALUE = -100.0

T = TypeVar('T')

#: Values of ``SwinTransformerSDPA(attn_impl=...)``.
ATTN_IMPLS = ('sdpa', 'flex')

#: Names accepted by ``SwinTransformerSDPA(sdpa_backends=...)``: those of
#: the installed torch's SDPA kernels (none before torch's ``sdpa_kernel``).
SDPA_BACKENDS = {
    name: getattr(SDPBackend, member)
    for name, member in (('flash', 'FLASH_ATTENTION'),
                         ('efficient', 'EFFICIENT_ATTENTION'),
                         ('cudnn', 'CUDNN_ATTENTION'), ('math', 'MATH'))
    if hasattr(SDPBackend, member)
}


class _WindowCache:
    """The shift masks and window token indices of recently seen feature
    map sizes, least recently used first out.

    One cache serves every block of every model: an entry depends only on
    its key (window, shift, size, dtype, device), so the shifted blocks of
    a stage share one mask instead of one copy each. Bounded, since
    whole-image inference over images of many sizes would otherwise keep a
    mask per size (13 MiB per size for Swin-B's window 12) for good; an
    evicted entry is rebuilt in a few small kernels.

    Args:
        maxsize (int): Entries kept; one input size needs three per stage
            (a mask and two indices).
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[Tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, key: Tuple, build: Callable[[], T]) -> T:
        """``build()``, kept under ``key``, except while ``torch.compile``
        traces: there the result is traced into the graph instead, since
        mutating Python state would force recompilation.

        Built outside inference mode: a first forward under
        ``torch.inference_mode()`` would otherwise cache inference
        tensors, which autograd refuses to save in a later training
        forward.
        """
        if is_compiling():
            return build()
        # One lock: forwards in several threads (a threaded server, say)
        # must not evict an entry between its lookup and its use.
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                return value
        with torch.inference_mode(False):
            value = build()
        with self._lock:
            self._entries[key] = value
            if len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return value


#: Room for 8 input sizes of a 4-stage Swin (3 entries per stage and size).
WINDOW_CACHE = _WindowCache(maxsize=96)


class WindowMSASDPA(WindowMSA):
    """:class:`WindowMSA` whose attention runs through
    :func:`torch.nn.functional.scaled_dot_product_attention`.

    Same constructor, parameters, buffers and ``forward`` contract as
    :class:`~mmseg.models.backbones.swin.WindowMSA`. Attention dropout
    (``attn_drop_rate``) is applied by SDPA's ``dropout_p`` in training mode.

    Args:
        embed_dims (int): Number of input channels.
        num_heads (int): Number of attention heads.
        window_size (tuple[int]): The height and width of the window.
        qkv_bias (bool): If True, add a learnable bias to q, k, v.
            Default: True.
        qk_scale (float | None): Override the default qk scale of
            ``head_dim ** -0.5`` if set. Default: None.
        attn_drop_rate (float): Dropout ratio of attention weights.
            Default: 0.0.
        proj_drop_rate (float): Dropout ratio of the output. Default: 0.0.
        init_cfg (dict | None): The config for initialization.
            Default: None.
    """

    #: SDPA kernels allowed for this module (None: PyTorch's choice); set
    #: by :class:`SwinTransformerSDPA`.
    sdpa_backends: Optional[List['SDPBackend']] = None
    #: 'sdpa', or 'flex' for :func:`~mmseg_ptx.models.utils.
    #: flex_window_attention` (no attention dropout); set by
    #: :class:`SwinTransformerSDPA`, as is ``flex_kernel_options``.
    attn_impl: str = 'sdpa'
    flex_kernel_options: Optional[Dict[str, Any]] = None

    @classmethod
    def from_stock(cls, stock: WindowMSA) -> 'WindowMSASDPA':
        """Wrap an existing :class:`WindowMSA`, sharing its parameters.

        The new module is constructed on the ``meta`` device (no memory, no
        draw from the random number generator), then takes over the stock
        module's submodules, parameter and buffer objects, so both stay the
        same tensors (same ``requires_grad``, same optimizer state).

        Args:
            stock (WindowMSA): The module to convert.

        Returns:
            WindowMSASDPA: A module computing the same function.
        """
        with torch.device('meta'):
            new = cls(
                embed_dims=stock.embed_dims,
                num_heads=stock.num_heads,
                window_size=stock.window_size,
                qkv_bias=stock.qkv.bias is not None,
                # `scale` already is `qk_scale or head_dims ** -0.5`.
                qk_scale=stock.scale,
                attn_drop_rate=stock.attn_drop.p,
                proj_drop_rate=stock.proj_drop.p,
                init_cfg=stock.init_cfg)
        for name, child in stock.named_children():
            setattr(new, name, child)
        for name, param in stock.named_parameters(recurse=False):
            setattr(new, name, param)
        for name, buf in stock.named_buffers(recurse=False):
            new.register_buffer(
                name,
                buf,
                persistent=name not in stock._non_persistent_buffers_set)
        return new

    def relative_position_bias(self) -> Tensor:
        """The relative position bias of shape (num_heads, N, N).

        Gathered from the transposed table so the result is contiguous in
        (head, query, key) order without a permute + copy.
        """
        n = self.window_size[0] * self.window_size[1]
        table = self.relative_position_bias_table.t()  # nH, (2Wh-1)*(2Ww-1)
        return table[:, self.relative_position_index.view(-1)].view(
            self.num_heads, n, n)

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor,
              mask: Optional[Tensor]) -> Tensor:
        """Attention of (B, nH, N, hd) windows through SDPA, the bias and
        mask passed as its float ``attn_mask``."""
        B, num_heads, N, _ = q.shape
        if mask is not None:
            nW = mask.shape[0]
            # Fused kernels need 4-D inputs, and a mask that repeats with
            # period nW along the batch axis has no strided 4-D view, so it
            # is expanded over the B // nW images (a view when B == nW).
            bias = (bias.unsqueeze(0) + mask.unsqueeze(1)).to(q.dtype)
            bias = bias.unsqueeze(0).expand(B // nW, -1, -1, -1, -1).reshape(
                B, num_heads, N, N)
        else:
            bias = bias.to(q.dtype).unsqueeze(0)

        dropout_p = self.attn_drop.p if self.training else 0.0
        with (nullcontext() if self.sdpa_backends is None else
              sdpa_kernel(self.sdpa_backends)):
            return F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=dropout_p,
                scale=self.scale)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """Window attention.

        Args:
            x (Tensor): Input features of shape (num_windows*B, N, C).
            mask (Tensor | None): Additive mask of shape
                (num_windows, N, N) with values in (-inf, 0], shared by the
                B images (window index varies fastest), as built by
                :class:`ShiftWindowMSA`. Default: None.

        Returns:
            Tensor: Output of shape (num_windows*B, N, C).
        """
        B, N, C = x.shape
        head_dims = C // self.num_heads
        # (3, B, nH, N, hd) as a view of the linear output: SDPA accepts
        # strided q/k/v (last dim contiguous), so no copy here.
        qkv = self.qkv(x).view(B, N, 3, self.num_heads,
                               head_dims).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)

        bias = self.relative_position_bias()  # nH, N, N
        if self.attn_impl == 'flex':
            # The bias stays in the parameters' dtype: FlexAttention adds
            # it to float32 scores inside its kernel.
            x = flex_window_attention(
                q, k, v, bias, mask=mask, scale=self.scale,
                kernel_options=self.flex_kernel_options)
        else:
            x = self._sdpa(q, k, v, bias, mask)
        x = x.transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        x = self.proj_drop(x)
        return x


class ShiftWindowMSASDPA(ShiftWindowMSA):
    """:class:`ShiftWindowMSA` using :class:`WindowMSASDPA` and a cached
    shift mask.

    Same constructor, parameters and ``forward`` contract as
    :class:`~mmseg.models.backbones.swin.ShiftWindowMSA`.

    Args:
        embed_dims (int): Number of input channels.
        num_heads (int): Number of attention heads.
        window_size (int): The height and width of the window.
        shift_size (int): The shift step of each window towards the
            bottom-right. If zero, acts as regular window MSA. Default: 0.
        qkv_bias (bool): If True, add a learnable bias to q, k, v.
            Default: True.
        qk_scale (float | None): Override the default qk scale of
            ``head_dim ** -0.5`` if set. Default: None.
        attn_drop_rate (float): Dropout ratio of attention weights.
            Default: 0.
        proj_drop_rate (float): Dropout ratio of the output. Default: 0.
        dropout_layer (dict): The dropout layer used before the output.
            Default: ``dict(type='DropPath', drop_prob=0.)``.
        init_cfg (dict | None): The config for initialization.
            Default: None.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.w_msa = WindowMSASDPA.from_stock(self.w_msa)

    @classmethod
    def from_stock(cls, stock: ShiftWindowMSA) -> 'ShiftWindowMSASDPA':
        """Convert an existing :class:`ShiftWindowMSA`, sharing its
        parameters and dropout modules (see :meth:`WindowMSASDPA.from_stock`).

        Args:
            stock (ShiftWindowMSA): The module to convert.

        Returns:
            ShiftWindowMSASDPA: A module computing the same function.
        """
        w_msa = stock.w_msa
        with torch.device('meta'):
            new = cls(
                embed_dims=w_msa.embed_dims,
                num_heads=w_msa.num_heads,
                window_size=stock.window_size,
                shift_size=stock.shift_size,
                qkv_bias=w_msa.qkv.bias is not None,
                qk_scale=w_msa.scale,
                attn_drop_rate=w_msa.attn_drop.p,
                proj_drop_rate=w_msa.proj_drop.p,
                init_cfg=stock.init_cfg)
        new.w_msa = WindowMSASDPA.from_stock(w_msa)
        new.drop = stock.drop
        return new

    def shift_mask(self, H_pad: int, W_pad: int, dtype: torch.dtype,
                   device: torch.device) -> Tensor:
        """Additive attention mask of the shifted windows.

        Equivalent to the one stock :class:`ShiftWindowMSA` builds in every
        forward: tokens of one window that come from different regions of
        the cyclically shifted map must not attend to each other.

        Args:
            H_pad (int): Padded feature map height (multiple of the window).
            W_pad (int): Padded feature map width (multiple of the window).
            dtype (torch.dtype): Mask dtype.
            device (torch.device): Mask device.

        Returns:
            Tensor: (num_windows, N, N) with 0 or -100.
        """
        ws, s = self.window_size, self.shift_size

        def build() -> Tensor:

            def regions(n: int) -> Tensor:
                # 0, 1, 2 for [0, n-ws), [n-ws, n-s), [n-s, n): the slices
                # of stock mmseg; only equality of region ids matters.
                idx = torch.arange(n, device=device)
                return (idx >= n - ws).long() + (idx >= n - s).long()

            region = regions(H_pad)[:, None] * 3 + regions(W_pad)[None, :]
            region = self.window_partition(region[None, :, :, None]).view(
                -1, ws * ws)
            mask = (region[:, None, :] != region[:, :, None]).to(dtype)
            return mask * _SHIFT_MASK_VALUE

        # Not a buffer: derived data, never saved, keyed by device.
        return WINDOW_CACHE.get(
            ('shift_mask', ws, s, H_pad, W_pad, dtype, device), build)

    def window_token_index(self, H: int, W: int,
                           device: torch.device) -> Tuple[Tensor, Tensor]:
        """:func:`~mmseg_ptx.models.utils.window_tokens.window_token_index`
        for this block's window and shift, cached per (H, W, device) in
        ``WINDOW_CACHE`` like :meth:`shift_mask`."""
        ws, s = self.window_size, self.shift_size
        return WINDOW_CACHE.get(
            ('token_index', ws, s, H, W, device),
            lambda: window_token_index((H, W), ws, s, device))

    def forward(self, query: Tensor, hw_shape: Tuple[int, int]) -> Tensor:
        """(Shifted) window attention over a feature map.

        Args:
            query (Tensor): Input of shape (B, H*W, C).
            hw_shape (tuple[int, int]): The feature map size (H, W).

        Returns:
            Tensor: Output of shape (B, H*W, C).
        """
        B, L, C = query.shape
        H, W = hw_shape
        if L != H * W:
            raise ValueError(f'input feature has wrong size: {L} tokens for '
                             f'a {H}x{W} feature map')
        ws, s = self.window_size, self.shift_size
        # Under CUDA autocast the block's LayerNorm returns float32, and the
        # qkv linear would cast the windows to bf16/fp16 only after the pad,
        # roll and partition copies. Casting in the partition's copy gives
        # the linear the very same values and halves the bytes moved.
        cast_to = autocast_dtype(query.device.type)
        if cast_to is None or query.dtype != torch.float32:
            cast_to = query.dtype
        index, inverse = self.window_token_index(H, W, query.device)
        windows = partition_windows(query, index, inverse, dtype=cast_to)

        if s > 0:
            table = self.w_msa.relative_position_bias_table
            mask = self.shift_mask(-(-H // ws) * ws, -(-W // ws) * ws,
                                   table.dtype, query.device)
        else:
            mask = None
        windows = self.w_msa(windows.view(-1, ws * ws, C), mask=mask)
        x = reverse_windows(windows.view(B, -1, C), index, inverse)
        return self.drop(x)


@MODELS.register_module()
class SwinTransformerSDPA(SwinTransformer):
    """Swin Transformer backbone with SDPA window attention.

    Takes exactly the arguments of mmseg's
    :class:`~mmseg.models.backbones.SwinTransformer` and computes the same
    function (to float rounding); only the window attention modules and
    the stochastic depth modules differ (see the module docstring). Module
    names, parameters, persistent buffers and ``init_weights`` (including
    ``init_cfg=dict(type='Pretrained', ...)`` with OpenMMLab's Swin
    checkpoints) are inherited unchanged.

    Example:
        >>> model = dict(backbone=dict(type='SwinTransformerSDPA', ...))

    Args:
        *args: Positional arguments of ``SwinTransformer``.
        sdpa_backends (Sequence[str] | None): SDPA kernels the window
            attention may use, in order of preference: any of ``'flash'``,
            ``'efficient'``, ``'cudnn'``, ``'math'``. None lets PyTorch
            choose. On an H200 PyTorch 2.11 picked cuDNN's kernel for
            inference (14 % of its GPU time) and was faster than the others
            (docs/performance.md); this lets a config measure them. CUDA's
            flash attention takes no bias, so it never runs there
            (``['flash']`` alone finds no kernel; the CPU's flash kernel
            takes one in inference, but not one that needs a gradient, as
            in training). Default: None.
        attn_impl (str): ``'sdpa'``, or ``'flex'`` for PyTorch's
            FlexAttention (torch >= 2.6; see
            :func:`~mmseg_ptx.models.utils.flex_window_attention`): the
            bias read inside a generated flash-attention kernel instead of
            materialised per window, its gradient added up there with
            atomic adds. Fused only under ``torch.compile`` with Inductor
            (``CompileModulesHook``); eagerly it computes the same values
            slowly. PyTorch refuses its training backward on the CPU, and
            it has no attention dropout (``attn_drop_rate`` must be 0).
            Default: 'sdpa'.
        flex_kernel_options (dict | None): FlexAttention's
            ``kernel_options`` (tile sizes and the like; keys the installed
            torch does not list are warned about), with
            ``attn_impl='flex'`` only. Default: None.
        **kwargs: Keyword arguments of ``SwinTransformer``.
    """

    def __init__(self,
                 *args,
                 sdpa_backends: Optional[Sequence[str]] = None,
                 attn_impl: str = 'sdpa',
                 flex_kernel_options: Optional[Dict[str, Any]] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._check_attn_impl(attn_impl, sdpa_backends, flex_kernel_options)
        backends = None
        if sdpa_backends is not None:
            unknown = [b for b in sdpa_backends if b not in SDPA_BACKENDS]
            if unknown or not sdpa_backends:
                raise ValueError(
                    f'sdpa_backends: unknown {unknown or "(empty list)"}; '
                    f'torch {torch.__version__} offers '
                    f'{sorted(SDPA_BACKENDS) or "no choice of SDPA kernel"}')
            backends = [SDPA_BACKENDS[b] for b in sdpa_backends]
        for stage in self.stages:
            for block in stage.blocks:
                block.attn = ShiftWindowMSASDPA.from_stock(block.attn)
                block.attn.w_msa.sdpa_backends = backends
                block.attn.w_msa.attn_impl = attn_impl
                block.attn.w_msa.flex_kernel_options = flex_kernel_options
                if isinstance(block.attn.drop, DropPath):
                    block.attn.drop = TensorDropPath.from_stock(
                        block.attn.drop)
                if isinstance(block.ffn.dropout_layer, DropPath):
                    block.ffn.dropout_layer = TensorDropPath.from_stock(
                        block.ffn.dropout_layer)
        meta = [
            name for name, t in self.state_dict(keep_vars=True).items()
            if t.is_meta
        ]
        if meta:  # a WindowMSA attribute that from_stock did not take over
            raise RuntimeError('SwinTransformerSDPA: tensors left on the meta '
                               f'device after conversion: {meta}')

    def _check_attn_impl(self, attn_impl: str,
                         sdpa_backends: Optional[Sequence[str]],
                         flex_kernel_options: Optional[Dict[str, Any]]
                         ) -> None:
        """Refuse ``attn_impl`` settings that could not run as asked."""
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f'attn_impl: {attn_impl!r} is not one of '
                             f'{ATTN_IMPLS}')
        if attn_impl != 'flex':
            if flex_kernel_options is not None:
                raise ValueError("flex_kernel_options needs attn_impl='flex'")
            return
        if compat.flex_attention is None:
            raise ValueError("attn_impl='flex' needs FlexAttention with a "
                             'learned bias (torch >= 2.6); this is torch '
                             f'{torch.__version__}')
        if sdpa_backends is not None:
            raise ValueError("sdpa_backends chooses SDPA kernels; with "
                             "attn_impl='flex' SDPA does not run")
        if flex_kernel_options is not None:
            check_flex_kernel_options(flex_kernel_options)
        dropout = {
            block.attn.w_msa.attn_drop.p
            for stage in self.stages for block in stage.blocks
        }
        if dropout != {0.0}:
            raise ValueError("attn_impl='flex' has no attention dropout; "
                             f'attn_drop_rate is {max(dropout)}, not 0')
