"""Conversions between MMSeg's ``seg_logits`` and probabilities."""
from __future__ import annotations

import torch

__all__ = ['foreground_probability', 'probability_to_seg_logits']


def foreground_probability(seg_logits: torch.Tensor) -> torch.Tensor:
    """Pneumothorax probability from one sample's ``seg_logits``.

    Args:
        seg_logits (torch.Tensor): (C, H, W) ``seg_logits`` of a
            ``SegDataSample`` written by MMSeg's ``postprocess_result``.
            With C >= 2 they are logits (softmax, channel 1); with C == 1
            MMSeg has already applied the sigmoid, so the channel is the
            probability.

    Returns:
        torch.Tensor: (H, W) float32 probabilities.
    """
    if seg_logits.dim() != 3:
        raise ValueError('seg_logits must be (C, H, W), got shape '
                         f'{tuple(seg_logits.shape)}')
    x = seg_logits.float()
    if x.shape[0] == 1:
        if x.min() < 0 or x.max() > 1:
            raise ValueError(
                '1-channel seg_logits must be probabilities (MMSeg applies '
                f'the sigmoid), got values in {float(x.min()):.3g}..'
                f'{float(x.max()):.3g}')
        return x[0]
    return x.softmax(dim=0)[1]


def probability_to_seg_logits(prob: torch.Tensor) -> torch.Tensor:
    """(H, W) probability -> (2, H, W) log-probabilities.

    ``softmax`` of the result gives back ``(1 - prob, prob)`` (up to
    float rounding), so metrics that read ``seg_logits`` through a softmax
    see ``prob``. Probabilities are clamped to float32's smallest normal
    number so that no log is infinite.

    Args:
        prob (torch.Tensor): Pneumothorax probability, (H, W).

    Returns:
        torch.Tensor: float32 log-probabilities of background and
        pneumothorax, (2, H, W).
    """
    tiny = torch.finfo(torch.float32).tiny
    prob = prob.float()
    return torch.stack((1.0 - prob, prob)).clamp_min(tiny).log()
