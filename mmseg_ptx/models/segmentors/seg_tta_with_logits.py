"""Test-time augmentation that keeps the merged probabilities."""
from __future__ import annotations

from typing import List

import torch
from mmengine.structures import PixelData
from mmseg.models.segmentors import SegTTAModel
from mmseg.registry import MODELS
from mmseg.utils import SampleList

__all__ = ['SegTTAModelWithLogits']


@MODELS.register_module()
class SegTTAModelWithLogits(SegTTAModel):
    """MMSeg's ``SegTTAModel`` with the averaged scores in ``seg_logits``.

    MMSeg 1.2.2's ``SegTTAModel.merge_preds`` averages the augmented
    probabilities into ``pred_sem_seg`` only; the ``seg_logits`` it returns
    are those of the *last* augmentation (e.g. the flipped view alone), so
    a metric reading ``seg_logits`` would not see the TTA at all. For a
    1-channel head it also applies the sigmoid a second time (MMSeg's
    segmentors already store probabilities there).

    Here each view's scores are turned into probabilities (softmax over the
    channels; a 1-channel output is already a probability) and averaged.
    ``seg_logits`` holds the log of the averaged probabilities for a
    multi-channel head, so a softmax recovers the average exactly, and the
    averaged probability itself for a 1-channel head, the layout MMSeg's
    segmentors use. ``pred_sem_seg`` is the argmax (multi-channel) or the
    decode head's threshold (1 channel, 0.5 without a decode head).

    Args:
        module (dict | nn.Module): The segmentor to augment.
        data_preprocessor (dict, optional): See ``BaseTTAModel``.
    """

    def merge_preds(self, data_samples_list: List[SampleList]) -> SampleList:
        """Average the probabilities of the views of each image.

        Args:
            data_samples_list (list[list[SegDataSample]]): For each image,
                the predictions of all its views.

        Returns:
            list[SegDataSample]: One merged prediction per image.
        """
        tiny = torch.finfo(torch.float32).tiny
        threshold = getattr(
            getattr(self.module, 'decode_head', None), 'threshold', 0.5)
        predictions = []
        for data_samples in data_samples_list:
            probs = []
            for data_sample in data_samples:
                logits = data_sample.seg_logits.data.float()
                probs.append(logits if logits.shape[0] == 1 else
                             logits.softmax(dim=0))
            prob = torch.stack(probs).mean(dim=0)
            if prob.shape[0] == 1:
                seg_logits = prob
                seg_pred = (prob > threshold).to(torch.int64)
            else:
                seg_logits = prob.clamp_min(tiny).log()
                seg_pred = prob.argmax(dim=0, keepdim=True)
            merged = data_samples[0]
            merged.set_data({
                'seg_logits': PixelData(data=seg_logits),
                'pred_sem_seg': PixelData(data=seg_pred)
            })
            predictions.append(merged)
        return predictions
