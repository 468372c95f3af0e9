"""Grid search of the triplet-threshold post-processing.

The search never stores probability maps: for every image it keeps the
few counts the competition Dice of any (top, min_area, bottom) setting
depends on (pixels above each top threshold; prediction and overlap sizes
at each bottom threshold; the ground-truth size). They are exact at full
resolution and take O(thresholds) memory per image, so a whole validation
set at 1024 x 1024 is searched after a single model pass. Component removal
and closing are not searched (they need the maps). The same counts
cross-validate the search (:func:`cross_validate_triplet`): the best
setting's score on the images it was chosen on is optimistic.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .metrics.pneumothorax_metric import (binary_label_masks,
                                          competition_dice)

__all__ = [
    'TripletImageStats', 'triplet_image_stats', 'search_triplet',
    'triplet_folds', 'cross_validate_triplet'
]


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

    Raises:
        ValueError: Shapes that differ, labels other than 0, 1 and
            ``ignore_index``, or NaN probabilities (below every threshold,
            they would read as no pneumothorax).
    """
    where = f'{name}: ' if name else ''
    prob = torch.as_tensor(prob).float()
    if torch.isnan(prob).any():
        raise ValueError(f'{where}the probability map contains NaN')
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


def _grid_dice(stats: Sequence[TripletImageStats], tops: Sequence[float],
               min_areas: Sequence[int], bottoms: Sequence[float]
               ) -> Tuple[List[dict], np.ndarray, np.ndarray, np.ndarray]:
    """Per-image competition Dice of every valid grid point.

    Args:
        stats, tops, min_areas, bottoms: As :func:`search_triplet`.

    Returns:
        tuple: The settings in grid order (``top_threshold``, ``min_area``,
        ``bottom_threshold``); their (S, N) per-image Dice; their (S, N)
        mask of images predicted empty; the (N,) mask of positive images.
    """
    if not stats:
        raise ValueError('search_triplet needs at least one image')
    count_top = np.stack([s.count_top for s in stats])  # (N, T)
    pred = np.stack([s.pred for s in stats])  # (N, B)
    inter = np.stack([s.inter for s in stats])
    gt = np.array([s.gt for s in stats])[:, None]  # (N, 1)
    if count_top.shape[1] != len(tops) or pred.shape[1] != len(bottoms):
        raise ValueError('stats were counted with other thresholds')
    dice_kept = competition_dice(inter, pred, gt)
    dice_empty = (gt[:, 0] == 0).astype(np.float64)
    settings, dice, empty = [], [], []
    for ti, top in enumerate(tops):
        for area in min_areas:
            emptied = count_top[:, ti] < area
            for bi, bottom in enumerate(bottoms):
                if bottom > top:
                    continue
                settings.append(
                    dict(
                        top_threshold=float(top),
                        min_area=int(area),
                        bottom_threshold=float(bottom)))
                dice.append(np.where(emptied, dice_empty, dice_kept[:, bi]))
                # Emptied by min_area, or no pixel above the bottom.
                empty.append(emptied | (pred[:, bi] == 0))
    if not settings:
        raise ValueError('No grid point has bottom <= top')
    return settings, np.stack(dice), np.stack(empty), gt[:, 0] > 0


def _summary(dice: np.ndarray, empty: np.ndarray, pos: np.ndarray,
             positive_share: Optional[float] = None) -> dict:
    """``kaggle_dice`` (mean), ``kaggle_dice_pos``, ``kaggle_dice_neg``
    (NaN without such images) and ``num_empty`` of per-image values; with
    a ``positive_share``, ``kaggle_dice_reweighted`` too."""

    def mean(values: np.ndarray) -> float:
        return float(values.mean()) if values.size else float('nan')

    out = dict(
        kaggle_dice=mean(dice),
        kaggle_dice_pos=mean(dice[pos]),
        kaggle_dice_neg=mean(dice[~pos]),
        num_empty=int(empty.sum()))
    if positive_share is not None:
        # A class of weight 0 does not count, even where it has no images
        # (NaN): a share of 0 on negative images is their mean.
        terms = [(positive_share, out['kaggle_dice_pos']),
                 (1 - positive_share, out['kaggle_dice_neg'])]
        out['kaggle_dice_reweighted'] = sum(w * d for w, d in terms if w)
    return out


def _check_positive_share(positive_share: Optional[float],
                          pos: np.ndarray, where: str = '') -> None:
    """Refuse a share outside [0, 1], or one that needs a class of images
    the search does not have."""
    if positive_share is None:
        return
    if not 0 <= positive_share <= 1:
        raise ValueError(
            f'positive_share must be in [0, 1], got {positive_share}')
    if (positive_share > 0 and not pos.any()) or (positive_share < 1
                                                  and pos.all()):
        raise ValueError(
            f'positive_share {positive_share} weighs positive and negative '
            f'images, but the images{where} have only '
            f'{"negative" if not pos.any() else "positive"} ones')


def _best_first(rows: Sequence[dict]) -> List[int]:
    """Indices of ``rows`` by ``kaggle_dice_reweighted`` where they have
    it, else by ``kaggle_dice``; ties to the earlier row."""
    key = ('kaggle_dice_reweighted'
           if rows and 'kaggle_dice_reweighted' in rows[0] else 'kaggle_dice')
    return sorted(range(len(rows)), key=lambda i: (-rows[i][key], i))


def search_triplet(stats: Sequence[TripletImageStats],
                   tops: Sequence[float],
                   min_areas: Sequence[int],
                   bottoms: Sequence[float],
                   positive_share: Optional[float] = None) -> List[dict]:
    """Mean competition Dice of every valid grid point, best first.

    The competition Dice of an image is 1 when both the prediction and the
    ground truth are empty, 0 when exactly one is, else the Dice. Grid
    points with ``bottom > top`` are skipped (the post-processor rejects
    them). To search a subset of the images, pass only their stats.

    The mean over the images weighs positive and negative images as the
    searched set holds them. A validation set with another share of
    positives than the images the setting will meet (the reference
    split's is about 2/3 positive, Kaggle's test set about 21 %) favours
    settings that empty too few (or too many) images. ``positive_share``
    ranks the settings by ``kaggle_dice_reweighted`` = share x
    ``kaggle_dice_pos`` + (1 - share) x ``kaggle_dice_neg`` instead: the
    expected mean on images with that share of positives.

    Args:
        stats (Sequence[TripletImageStats]): From
            :func:`triplet_image_stats` with the same ``tops``/``bottoms``.
        tops (Sequence[float]): Top thresholds.
        min_areas (Sequence[int]): Minimum areas (pixels of the maps the
            stats were counted on).
        bottoms (Sequence[float]): Bottom thresholds.
        positive_share (float, optional): Rank by the mean Dice reweighted
            to this share of positive images, in [0, 1] (the images must
            hold the classes it weighs). Defaults to None (the plain mean).

    Returns:
        list[dict]: ``top_threshold``, ``min_area``, ``bottom_threshold``,
        ``kaggle_dice``, ``kaggle_dice_pos``, ``kaggle_dice_neg``,
        ``num_empty`` (images predicted empty), and with a
        ``positive_share`` ``kaggle_dice_reweighted``; sorted by
        ``kaggle_dice_reweighted`` where given, else ``kaggle_dice``
        (ties: the earlier grid point first).
    """
    settings, dice, empty, pos = _grid_dice(stats, tops, min_areas, bottoms)
    _check_positive_share(positive_share, pos)
    rows = [
        dict(setting, **_summary(d, e, pos, positive_share))
        for setting, d, e in zip(settings, dice, empty)
    ]
    return [rows[i] for i in _best_first(rows)]


def triplet_folds(stats: Sequence[TripletImageStats],
                  num_folds: int) -> List[List[int]]:
    """Folds of the images for :func:`cross_validate_triplet`, stratified
    by whether the ground truth has pneumothorax.

    The positive images, then the negative ones, each in their order in
    ``stats``, are dealt round robin to the folds. No random number is
    drawn and only the ground truth is read, so the folds are the same on
    every run and device. Fold sizes differ by at most one, and so do
    their numbers of positives and of negatives.

    Args:
        stats (Sequence[TripletImageStats]): The images.
        num_folds (int): From 2 to ``len(stats)`` (every fold needs an
            image).

    Returns:
        list[list[int]]: Each fold's indices into ``stats``, ascending.
    """
    if not 2 <= num_folds <= len(stats):
        raise ValueError(f'num_folds must be from 2 to the number of images '
                         f'({len(stats)}), got {num_folds}')
    order = ([i for i, s in enumerate(stats) if s.gt > 0] +
             [i for i, s in enumerate(stats) if s.gt == 0])
    return [sorted(order[f::num_folds]) for f in range(num_folds)]


def cross_validate_triplet(stats: Sequence[TripletImageStats],
                           tops: Sequence[float], min_areas: Sequence[int],
                           bottoms: Sequence[float],
                           folds: Sequence[Sequence[int]],
                           positive_share: Optional[float] = None) -> dict:
    """Held-out score of the setting :func:`search_triplet` chooses.

    The best setting's score in :func:`search_triplet` is in-sample: the
    setting was chosen on the images it is scored on, so it is optimistic.
    Here each fold's setting is chosen as :func:`search_triplet` would on
    the other folds' images only, and scored on the fold's images. Every
    image is thus scored once, by a setting chosen without it.

    Args:
        stats, tops, min_areas, bottoms: As :func:`search_triplet`.
        folds (Sequence[Sequence[int]]): A partition of the indices of
            ``stats`` in at least two folds (see :func:`triplet_folds`).
        positive_share (float, optional): As :func:`search_triplet`:
            each fold's setting is chosen by, and the scores include,
            ``kaggle_dice_reweighted``. Defaults to None.

    Returns:
        dict: ``num_folds``; ``kaggle_dice``, ``kaggle_dice_pos``,
        ``kaggle_dice_neg``, ``num_empty`` over all held-out images, each
        scored by its fold's setting (so ``kaggle_dice`` is the folds'
        held-out ``kaggle_dice`` weighted by their sizes);
        ``num_same_as_all``: folds that chose the setting the search on all
        images chooses; ``folds``: per fold ``num_images``, the chosen
        ``top_threshold``, ``min_area``, ``bottom_threshold``, and the
        scores (as above) of that setting on the other folds' images
        (``in_sample``) and on the fold's (``held_out``).
    """
    settings, dice, empty, pos = _grid_dice(stats, tops, min_areas, bottoms)
    num = len(stats)
    if (len(folds) < 2 or not all(folds)
            or sorted(i for f in folds for i in f) != list(range(num))):
        raise ValueError('folds must split the images in at least two '
                         'non-empty folds, each image in exactly one')

    _check_positive_share(positive_share, pos)

    def best(images: np.ndarray) -> Tuple[int, dict]:
        rows = [
            _summary(d[images], e[images], pos[images], positive_share)
            for d, e in zip(dice, empty)
        ]
        index = _best_first(rows)[0]
        return index, rows[index]

    chosen_by_all, _ = best(np.ones(num, bool))
    held_dice, held_empty = np.empty(num), np.empty(num, bool)
    results, num_same = [], 0
    for fold in folds:
        held = np.zeros(num, bool)
        held[list(fold)] = True
        _check_positive_share(positive_share, pos[~held], ' outside a fold')
        index, in_sample = best(~held)
        num_same += int(index == chosen_by_all)
        held_dice[held] = dice[index, held]
        held_empty[held] = empty[index, held]
        results.append(
            dict(
                num_images=len(fold),
                **settings[index],
                in_sample=in_sample,
                held_out=_summary(dice[index, held], empty[index, held],
                                  pos[held], positive_share)))
    return dict(
        num_folds=len(folds),
        **_summary(held_dice, held_empty, pos, positive_share),
        num_same_as_all=num_same,
        folds=results)
