"""Grid search of the triplet-threshold post-processing.

The search never stores probability maps: for every image it keeps the
few counts the competition Dice of any (top, min_area, bottom) setting
depends on (pixels above each top threshold; prediction and overlap sizes
at each bottom threshold; the ground-truth size). They are exact at full
resolution and take O(thresholds) memory per image, so a whole validation
set at 1024 x 1024 is searched after a single model pass. Component removal
and closing are not searched (they need the maps).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from .metrics.pneumothorax_metric import binary_label_masks

__all__ = ['TripletImageStats', 'triplet_image_stats', 'search_triplet']


@dataclass
class TripletImageStats:
    """Counts of one image for :func:`search_triplet`.

    Attributes:
        count_top (np.ndarray): Pixels with probability > each top
            threshold, over the whole map.
        pred (np.ndarray): Pixels not ignored with probability > each
            bottom threshold.
        inter (np.ndarray): Of those, pixels that are pneumothorax.
        gt (int): Pneumothorax pixels.
    """

    count_top: np.ndarray
    pred: np.ndarray
    inter: np.ndarray
    gt: int


def triplet_image_stats(prob: Union[np.ndarray, torch.Tensor],
                        gt: Union[np.ndarray, torch.Tensor],
                        tops: Sequence[float],
                        bottoms: Sequence[float],
                        ignore_index: int = 255,
                        name: Optional[str] = None) -> TripletImageStats:
    """Count what the triplet search needs from one image.

    The counts follow :class:`~mmseg_ptx.evaluation.PneumothoraxMetric`
    with a post-processor: the decision to empty an image counts the
    pixels above the top threshold over the whole map, as the
    post-processor does at inference, where nothing is ignored; pixels
    labelled ``ignore_index`` are left out of the prediction and overlap
    counts only.

    Args:
        prob (np.ndarray | torch.Tensor): (H, W) probabilities.
        gt (np.ndarray | torch.Tensor): (H, W) ground truth, 0/1 or
            ``ignore_index``.
        tops (Sequence[float]): Top thresholds of the grid.
        bottoms (Sequence[float]): Bottom thresholds of the grid.
        ignore_index (int): Defaults to 255.
        name (str, optional): The image, for error messages.
            Defaults to None.

    Returns:
        TripletImageStats: The counts.
    """
    where = f'{name}: ' if name else ''
    prob = torch.as_tensor(prob).float()
    gt = torch.as_tensor(gt).to(prob.device)
    if prob.shape != gt.shape or prob.dim() != 2:
        raise ValueError(f'{where}probability map {tuple(prob.shape)} and '
                         f'ground truth {tuple(gt.shape)} must be the same '
                         '(H, W)')
    valid, pos = binary_label_masks(gt, ignore_index, name)
    scores = prob[valid]
    pos_scores = prob[pos]

    def above(values: torch.Tensor, thresholds: Sequence[float]) -> list:
        return [int((values > t).sum()) for t in thresholds]

    return TripletImageStats(
        count_top=np.array(above(prob, tops), np.int64),
        pred=np.array(above(scores, bottoms), np.int64),
        inter=np.array(above(pos_scores, bottoms), np.int64),
        gt=int(pos.sum()))


def search_triplet(stats: Sequence[TripletImageStats],
                   tops: Sequence[float],
                   min_areas: Sequence[int],
                   bottoms: Sequence[float]) -> List[dict]:
    """Mean competition Dice of every valid grid point, best first.

    The competition Dice of an image is 1 when both the prediction and the
    ground truth are empty, 0 when exactly one is, else the Dice. Grid
    points with ``bottom > top`` are skipped (the post-processor rejects
    them).

    Args:
        stats (Sequence[TripletImageStats]): From
            :func:`triplet_image_stats` with the same ``tops``/``bottoms``.
        tops (Sequence[float]): Top thresholds.
        min_areas (Sequence[int]): Minimum areas (pixels of the maps the
            stats were counted on).
        bottoms (Sequence[float]): Bottom thresholds.

    Returns:
        list[dict]: ``top_threshold``, ``min_area``, ``bottom_threshold``,
        ``kaggle_dice``, ``kaggle_dice_pos``, ``kaggle_dice_neg``,
        ``num_empty`` (images predicted empty), sorted by ``kaggle_dice``
        (ties: the earlier grid point first).
    """
    if not stats:
        raise ValueError('search_triplet needs at least one image')
    count_top = np.stack([s.count_top for s in stats])  # (N, T)
    pred = np.stack([s.pred for s in stats])  # (N, B)
    inter = np.stack([s.inter for s in stats])
    gt = np.array([s.gt for s in stats])[:, None]  # (N, 1)
    if count_top.shape[1] != len(tops) or pred.shape[1] != len(bottoms):
        raise ValueError('stats were counted with other thresholds')
    total = pred + gt
    dice_kept = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
    dice_empty = (gt[:, 0] == 0).astype(np.float64)
    pos = gt[:, 0] > 0

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if values.size else float('nan')

    rows = []
    for ti, top in enumerate(tops):
        for area in min_areas:
            empty = count_top[:, ti] < area
            for bi, bottom in enumerate(bottoms):
                if bottom > top:
                    continue
                dice = np.where(empty, dice_empty, dice_kept[:, bi])
                rows.append(
                    dict(
                        top_threshold=float(top),
                        min_area=int(area),
                        bottom_threshold=float(bottom),
                        kaggle_dice=mean(dice),
                        kaggle_dice_pos=mean(dice[pos]),
                        kaggle_dice_neg=mean(dice[~pos]),
                        num_empty=int(empty.sum())))
    if not rows:
        raise ValueError('No grid point has bottom <= top')
    order = sorted(range(len(rows)), key=lambda i: (-rows[i]['kaggle_dice'],
                                                    i))
    return [rows[i] for i in order]
