"""Hold a segmentor's weights in bfloat16 (or float16) for inference."""
from __future__ import annotations

from typing import List, Union

import torch
from mmseg.models.backbones.swin import WindowMSA
from mmseg.models.segmentors import EncoderDecoder
from torch import nn

from ..segmentors import segmentors_of

__all__ = [
    'cast_for_inference', 'resolve_inference_dtype', 'INFERENCE_DTYPES'
]

#: The dtypes :func:`cast_for_inference` accepts, by name.
INFERENCE_DTYPES = {
    'float32': torch.float32,
    'bfloat16': torch.bfloat16,
    'float16': torch.float16,
}
# Set on each cast segmentor: a second call with the same dtype is a no-op,
# one with another dtype is refused.
_MARK = '_ptx_inference_dtype'


def resolve_inference_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    """The torch dtype of a name in :data:`INFERENCE_DTYPES` (or a dtype).

    Args:
        dtype (str | torch.dtype): ``'float32'``, ``'bfloat16'`` or
            ``'float16'`` (``'torch.'`` prefix allowed), or the dtype.

    Returns:
        torch.dtype: The dtype.

    Raises:
        ValueError: Not float32, bfloat16 or float16.
    """
    if isinstance(dtype, str):
        resolved = INFERENCE_DTYPES.get(dtype.replace('torch.', ''))
    else:
        resolved = dtype if dtype in INFERENCE_DTYPES.values() else None
    if resolved is None:
        raise ValueError(
            f'Unsupported inference dtype {dtype!r}; expected one '
            f'of {", ".join(INFERENCE_DTYPES)} (a str or torch.dtype)')
    return resolved


def _float32_output(module: nn.Module, args: tuple,
                    output: torch.Tensor) -> torch.Tensor:
    """A forward hook on a head's ``conv_seg``: its logits in float32."""
    return output.float()


def _inputs_like_weights(module: nn.Module, args: tuple) -> tuple:
    """A forward pre-hook: the floating-point inputs in the dtype of the
    module's weights."""
    dtype = next(module.parameters()).dtype
    return tuple(
        a.to(dtype) if isinstance(a, torch.Tensor)
        and a.is_floating_point() else a for a in args)


def _shift_mask_like_input(module: nn.Module, args: tuple,
                           kwargs: dict) -> tuple:
    # mmseg's ShiftWindowMSA builds its shift mask with torch.zeros, in the
    # default float32: added to bf16 scores it promotes them to float32 and
    # ``attn @ v`` then fails on mixed dtypes. The mask holds 0 and -100,
    # exact in bf16 and fp16.
    mask = kwargs.get('mask')
    if mask is not None and mask.dtype != args[0].dtype:
        kwargs['mask'] = mask.to(args[0].dtype)
    return args, kwargs


def _needs_cast(model: EncoderDecoder, dtype: torch.dtype) -> bool:
    """Whether ``model`` is still float32 and ``dtype`` is not."""
    done = getattr(model, _MARK, None)
    if done == dtype:
        return False
    if done is not None:
        raise ValueError(
            f'cast_for_inference: {type(model).__name__} already holds '
            f'{done} weights; casting them to {dtype} cannot recover the '
            'precision they lost. Load the checkpoint again instead.')
    held = {t.dtype for t in _network_tensors(model) if t.is_floating_point()}
    if held - {torch.float32}:
        raise ValueError(
            'cast_for_inference expects float32 weights, found '
            f'{sorted(map(str, held))} in {type(model).__name__}; load the '
            'checkpoint into a float32 model first')
    return dtype != torch.float32


def _network(model: EncoderDecoder) -> List[nn.Module]:
    return [child for name, child in model.named_children()
            if name != 'data_preprocessor']


def _network_tensors(model: EncoderDecoder) -> List[torch.Tensor]:
    return [t for child in _network(model)
            for t in list(child.parameters()) + list(child.buffers())]


def _last_heads(model: EncoderDecoder) -> List[nn.Module]:
    """The decode and auxiliary heads (the last of a cascade), each
    checked to end in a ``conv_seg`` layer."""
    heads = []
    for head in (model.decode_head, getattr(model, 'auxiliary_head', None)):
        if isinstance(head, nn.ModuleList):
            head = head[-1]
        if head is None:
            continue
        if not isinstance(getattr(head, 'conv_seg', None), nn.Module):
            raise TypeError(
                'cast_for_inference needs heads whose last layer is a '
                'conv_seg module (mmseg\'s BaseDecodeHead); '
                f'{type(head).__name__} has none')
        heads.append(head)
    return heads


def _cast_segmentor(model: EncoderDecoder, dtype: torch.dtype) -> None:
    heads = _last_heads(model)  # before anything is cast
    for child in _network(model):
        # Module.to(dtype) casts floating-point tensors only: BatchNorm's
        # integer num_batches_tracked and Swin's position index stay.
        child.to(dtype)
    for module in model.backbone.modules():
        if isinstance(module, WindowMSA):
            module.register_forward_pre_hook(
                _shift_mask_like_input, with_kwargs=True)
    # SegDataPreProcessor returns float32 images; extract_feat calls
    # self.backbone(inputs), so a pre-hook sees them.
    model.backbone.register_forward_pre_hook(_inputs_like_weights)
    # The heads' predict()/loss() call self.forward() directly, which skips
    # the head's own hooks; its last layer, conv_seg, is called as a
    # module. CascadeEncoderDecoder feeds each head's output to the next
    # one, so only its last head returns float32. Hooks of module-level
    # functions, unlike a replaced forward, go with a copy (deepcopy,
    # pickle) of the model and act on the copy's own layers.
    for head in heads:
        head.conv_seg.register_forward_hook(_float32_output)
    setattr(model, _MARK, dtype)


def cast_for_inference(model: nn.Module,
                       dtype: Union[str, torch.dtype] = 'bfloat16'
                       ) -> nn.Module:
    """Hold a segmentor's network in ``dtype`` for inference.

    On an H200, UPerNet + Swin-B inference under
    ``torch.autocast(bfloat16)`` spent 18 % of its GPU time in
    ``aten::copy_``: autocast casts the float32 weights, and the float32
    residual stream (LayerNorm runs in float32 under autocast), to bf16
    before every linear layer, and the elementwise ops (roll, add,
    LayerNorm, upsampling) read and write float32 activations. Weights held
    in bf16 remove those casts and halve the memory traffic.

    Every floating-point parameter and buffer of the network (backbone,
    neck, heads; BatchNorm statistics included) is cast to ``dtype``,
    except the ``data_preprocessor``: its mean/std normalisation stays
    float32 (bf16 would round the mean 123.675 to 123.5). A forward
    pre-hook casts the backbone's float32 input to ``dtype``, and the
    decode (and auxiliary) head's ``forward`` returns float32 logits, so
    MMSeg's resize to the original shape, the softmax and the metrics
    (PR curves need fine probabilities) run in float32. mmseg's stock
    ``ShiftWindowMSA`` builds its shift mask in float32; a pre-hook on each
    ``WindowMSA`` casts it to the attention's dtype.

    For inference only: the cast rounds the weights in place, so casting
    a model that is still being trained would lose its float32 master
    weights. Casting back is refused for the same reason.

    Args:
        model (nn.Module): An mmseg ``EncoderDecoder`` (or subclass) with
            float32 weights, or a model wrapper (DDP, a TTA model) or
            :class:`~mmseg_ptx.models.EnsembleSegmentor` around such
            segmentors, which are all cast.
        dtype (str | torch.dtype): ``'bfloat16'``, ``'float16'`` or
            ``'float32'`` (or the torch dtype). ``'float32'`` leaves a
            float32 model unchanged. Defaults to ``'bfloat16'``.

    Returns:
        nn.Module: ``model`` itself, cast in place. A second call with the
        same ``dtype`` does nothing.

    Raises:
        ValueError: ``dtype`` is not one of the above, or a segmentor
            already holds weights of another dtype.
        TypeError: ``model`` holds no ``EncoderDecoder``.
    """
    dtype = resolve_inference_dtype(dtype)
    # Check every member of an ensemble before casting any.
    todo = [s for s in segmentors_of(model) if _needs_cast(s, dtype)]
    for segmentor in todo:
        _cast_segmentor(segmentor, dtype)
    return model
