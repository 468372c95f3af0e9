"""Training Dice and IoU of the foreground class in the training log."""
from __future__ import annotations

from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.models.utils import resize
from mmseg.registry import HOOKS
from torch import Tensor


def batch_dice_iou(seg_logits: Tensor,
                   seg_label: Tensor,
                   ignore_index: int = 255,
                   threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """Foreground Dice and IoU pooled over the pixels of one batch.

    The reference's training protocol: binarise the prediction (argmax of a
    softmax head, ``sigmoid > threshold`` of a one-channel head) and pool
    intersection and union over every non-ignored pixel of the batch.

    Args:
        seg_logits (Tensor): (N, C, H, W) logits at the label's size.
        seg_label (Tensor): (N, H, W) labels, 1 = foreground.
        ignore_index (int): Label value excluded. Defaults to 255.
        threshold (float): Sigmoid threshold of a one-channel head.
            Defaults to 0.5.

    Returns:
        tuple[Tensor, Tensor]: Dice and IoU; 1.0 when the batch has no
        foreground in prediction or label.
    """
    if seg_logits.shape[1] == 1:
        pred = seg_logits[:, 0].sigmoid() > threshold
    else:
        # max().indices: on CPU, argmax over a non-last dim is 20x slower.
        pred = seg_logits.max(dim=1).indices == 1
    valid = seg_label != ignore_index
    pred = pred & valid
    gt = (seg_label == 1) & valid
    inter = (pred & gt).sum().float()
    total = pred.sum().float() + gt.sum().float()
    union = total - inter
    # torch.where, not `if total == 0`, and a 1 made on the device, not
    # new_tensor(1.0) (a blocking host-to-device copy): no wait for the GPU
    # every step.
    empty = total == 0
    one = torch.ones_like(total)
    dice = torch.where(empty, one, 2 * inter / total.clamp_min(1))
    iou = torch.where(empty, one, inter / union.clamp_min(1))
    return dice, iou


@HOOKS.register_module()
class TrainSegMetricsHook(Hook):
    """Log pooled training Dice and IoU next to MMSeg's ``acc_seg``.

    MMSeg's decode heads log only pixel accuracy in training, which says
    little at a 1:100 class imbalance. This hook wraps the decode head's
    ``loss_by_feat`` so that every training iteration also reports
    ``decode.dice_seg`` and ``decode.iou_seg`` (no gradient; keys without
    "loss" are logged but not added to the loss). Of a cascade of decode
    heads (OCRNet), the last one's, which predicts: mmseg names its losses
    ``decode_<i>.``, so they are ``decode_<i>.dice_seg`` and
    ``decode_<i>.iou_seg`` (the report finds them).

    Args:
        threshold (float, optional): Sigmoid threshold for a one-channel
            head. Defaults to None: the head's own ``threshold``, with
            which it predicts (MMSeg's default for one channel is 0.3),
            else 0.5.
    """

    priority = 'LOW'

    def __init__(self, threshold: Optional[float] = None) -> None:
        self.threshold = threshold

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        head = getattr(model, 'decode_head', None)
        if head is None:
            raise TypeError(f'{type(model).__name__} has no decode_head: '
                            'TrainSegMetricsHook needs an MMSeg segmentor')
        if isinstance(head, torch.nn.ModuleList):
            # CascadeEncoderDecoder (OCRNet): the last head predicts.
            head = head[-1]
        self._wrap(head)

    def _wrap(self, head) -> None:
        if getattr(head.loss_by_feat, '_with_seg_metrics', False):
            return
        loss_by_feat = head.loss_by_feat
        threshold = self.threshold
        if threshold is None:
            threshold = getattr(head, 'threshold', None)
        if threshold is None:
            threshold = 0.5

        def loss_by_feat_with_metrics(seg_logits: Tensor,
                                      batch_data_samples: list,
                                      *args, **kwargs) -> dict:
            losses = loss_by_feat(seg_logits, batch_data_samples, *args,
                                  **kwargs)
            with torch.no_grad():
                label = head._stack_batch_gt(batch_data_samples)
                logits = resize(
                    seg_logits.detach().float(),
                    size=label.shape[2:],
                    mode='bilinear',
                    align_corners=head.align_corners)
                dice, iou = batch_dice_iou(logits, label.squeeze(1),
                                           head.ignore_index, threshold)
            losses['dice_seg'] = dice
            losses['iou_seg'] = iou
            return losses

        loss_by_feat_with_metrics._with_seg_metrics = True
        head.loss_by_feat = loss_by_feat_with_metrics
