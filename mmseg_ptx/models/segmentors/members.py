"""The segmentors a test-time model is made of."""
from __future__ import annotations

from typing import List

from mmengine.model import BaseTTAModel, is_model_wrapper
from mmseg.models.segmentors import EncoderDecoder
from torch import nn

from .ensemble_segmentor import EnsembleSegmentor

__all__ = ['segmentors_of']


def segmentors_of(model: nn.Module, strict: bool = True) -> List[nn.Module]:
    """The mmseg ``EncoderDecoder`` segmentors inside ``model``.

    Looks through model wrappers (DDP), TTA models (``tools/test.py
    --tta``) and :class:`EnsembleSegmentor` (``--extra-model``), so that
    what is done to "the model" (a cast, a compilation) reaches every
    network that runs.

    Args:
        model (nn.Module): A segmentor, or a wrapper, TTA model or
            ensemble of segmentors.
        strict (bool): Whether a model inside that is not an
            ``EncoderDecoder`` (mmseg's ``MultimodalEncoderDecoder``, a
            custom segmentor) is an error; else it is returned as found.
            Defaults to True.

    Returns:
        list[nn.Module]: The segmentors, ensemble members in order.

    Raises:
        TypeError: With ``strict``, something else is found inside.
    """
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    if isinstance(model, EnsembleSegmentor):
        return [
            s for member in model.models
            for s in segmentors_of(member, strict)
        ]
    if strict and not isinstance(model, EncoderDecoder):
        raise TypeError('Expected an mmseg EncoderDecoder (or a model '
                        'wrapper, TTA model or EnsembleSegmentor of them), '
                        f'got {type(model).__name__}')
    return [model]
