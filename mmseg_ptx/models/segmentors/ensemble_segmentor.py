"""Average the probabilities of several trained segmentors."""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
from mmengine.model import BaseModel
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.utils import SampleList
from torch import nn

from ..utils import load_checkpoint_strict
from .probability import foreground_probability, probability_to_seg_logits

__all__ = ['EnsembleSegmentor']


@MODELS.register_module()
class EnsembleSegmentor(BaseModel):
    """Several segmentors evaluated as one (test and validation only).

    Every member runs on the same batch through its own ``test_step`` (its
    own data preprocessor and test mode: ``whole`` or ``slide``) and its
    pneumothorax probabilities at the original resolution are averaged
    (weighted). The output looks like a 2-class segmentor's:
    ``seg_logits`` = log of (1 - p, p), so that a softmax, as
    :class:`~mmseg_ptx.evaluation.PneumothoraxMetric` applies, recovers the
    averaged probability p, and ``pred_sem_seg`` = p > 0.5. Members may mix
    2-class softmax and 1-channel sigmoid heads; only the pneumothorax
    probability is averaged, so the output is binary whatever the members.

    The members must share the test pipeline (they see the same batch). In
    ``tools/test.py`` this model is built by ``--extra-model``; it can be
    wrapped in a TTA model like a single segmentor.

    Args:
        models (Sequence[dict | nn.Module]): Member segmentor configs (or
            built segmentors).
        checkpoints (Sequence[str | None], optional): One checkpoint per
            member, loaded at construction; None entries (or no list) leave
            that member's weights as built. Defaults to None.
        weights (Sequence[float], optional): Non-negative member weights,
            normalised to sum 1. Defaults to None (equal weights).
        data_preprocessor (dict, optional): Unused by the members, which
            keep their own; kept for ``BaseModel``. Defaults to None.
        init_cfg (dict, optional): Defaults to None.
        train_cfg (dict, optional): Must be None: an ensemble only
            predicts. Taken because mmseg's ``init_model`` sets it (to
            None) on every model config. Defaults to None.
        pretrained (str, optional): Must be None (the members load their
            own weights); set to None by ``init_model`` too. Defaults to
            None.
    """

    def __init__(self,
                 models: Sequence[Union[dict, nn.Module]],
                 checkpoints: Optional[Sequence[Optional[str]]] = None,
                 weights: Optional[Sequence[float]] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if train_cfg is not None or pretrained is not None:
            raise ValueError(
                'EnsembleSegmentor only predicts: train_cfg and pretrained '
                'must be None (its members load their checkpoints)')
        if len(models) < 1:
            raise ValueError('EnsembleSegmentor needs at least one model')
        if checkpoints is not None and len(checkpoints) != len(models):
            raise ValueError(f'{len(models)} models but {len(checkpoints)} '
                             'checkpoints')
        if weights is None:
            weights = [1.0] * len(models)
        if len(weights) != len(models) or any(w < 0 for w in weights) \
                or sum(weights) <= 0:
            raise ValueError('weights must be one non-negative number per '
                             f'model with a positive sum, got {weights}')
        self.models = nn.ModuleList(
            m if isinstance(m, nn.Module) else MODELS.build(m)
            for m in models)
        for model, ckpt in zip(self.models, checkpoints or []):
            if ckpt is not None:
                load_checkpoint_strict(model, ckpt)
        total = float(sum(weights))
        self.weights = [float(w) / total for w in weights]
        # Lets SegTTAModel-style wrappers treat the ensemble as a 2-class
        # segmentor.
        self.out_channels = 2

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """Only prediction is supported; use :meth:`test_step`."""
        raise NotImplementedError(
            'EnsembleSegmentor only predicts: call test_step/val_step '
            f"(got mode={mode!r}); train the members separately")

    def test_step(self, data: Union[dict, tuple, list]) -> SampleList:
        """Predict a batch with every member and average.

        Args:
            data (dict): A batch from the dataloader (``inputs`` and
                ``data_samples``), as for a single segmentor.

        Returns:
            list[SegDataSample]: The samples with the averaged
            ``seg_logits`` and ``pred_sem_seg``.
        """
        probs: Optional[List[torch.Tensor]] = None
        samples = None
        for weight, model in zip(self.weights, self.models):
            # Each member's data preprocessor copies the data samples (as it
            # moves them to its device), so one member's test-time padding
            # and results are not seen by the next.
            samples = model.test_step(data)
            member = [
                weight * foreground_probability(s.seg_logits.data)
                for s in samples
            ]
            probs = member if probs is None else [
                p + m for p, m in zip(probs, member)
            ]
        for sample, prob in zip(samples, probs):
            prob = prob.clamp(0.0, 1.0)
            sample.set_data({
                'seg_logits':
                PixelData(data=probability_to_seg_logits(prob)),
                'pred_sem_seg':
                PixelData(data=(prob > 0.5).to(torch.int64)[None])
            })
        return samples

    val_step = test_step
