"""Confidence intervals of the Dice scores by resampling images.

A validation set of a few hundred images (the reference's has 725) leaves
its Dice uncertain in the second decimal; a difference between two runs
smaller than that says nothing. The percentile bootstrap over images
resamples the set's images with replacement and recomputes each score,
so it needs no assumption on their distribution, and it keeps an image's
pixels together, as they are correlated.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

__all__ = ['bootstrap_dice_intervals']

#: Resamples drawn per chunk: (chunk, num_images) indices at a time.
_CHUNK = 100


def bootstrap_dice_intervals(inter: np.ndarray,
                             pred: np.ndarray,
                             gt: np.ndarray,
                             per_image: np.ndarray,
                             num_samples: int = 1000,
                             confidence: float = 0.95,
                             seed: int = 0) -> Dict[str, Tuple[float, float]]:
    """Percentile-bootstrap intervals of the pooled and the per-image
    (competition) Dice over a set of images.

    Args:
        inter (np.ndarray): (N,) pixels predicted and true, per image.
        pred (np.ndarray): (N,) pixels predicted, per image.
        gt (np.ndarray): (N,) pixels true, per image.
        per_image (np.ndarray): (N,) competition Dice of each image.
        num_samples (int): Resamples of the N images. Defaults to 1000.
        confidence (float): The intervals' coverage. Defaults to 0.95.
        seed (int): Seed of the resampling: the same counts give the same
            intervals. Defaults to 0.

    Returns:
        dict[str, tuple[float, float]]: ``'dice'`` (pooled over the pixels
        of the resampled images) and ``'kaggle_dice'`` (their mean
        competition Dice): (low, high). A resample without a pooled Dice
        (no true and no predicted pixel in its images) is left out of the
        first; NaN where the set has no image or no resample has one.
    """
    num = len(per_image)
    nan = (float('nan'), float('nan'))
    if num == 0 or num_samples < 1:
        return dict(dice=nan, kaggle_dice=nan)
    rng = np.random.default_rng(seed)
    inter = np.asarray(inter, dtype=np.float64)
    denom = np.asarray(pred, dtype=np.float64) + np.asarray(gt, np.float64)
    per_image = np.asarray(per_image, dtype=np.float64)
    pooled, mean = [], []
    for start in range(0, num_samples, _CHUNK):
        idx = rng.integers(0, num, (min(_CHUNK, num_samples - start), num))
        total = denom[idx].sum(axis=1)
        with np.errstate(invalid='ignore', divide='ignore'):
            pooled.append(np.where(total > 0,
                                   2 * inter[idx].sum(axis=1) / total,
                                   np.nan))
        mean.append(per_image[idx].mean(axis=1))
    tail = (1 - confidence) / 2
    out = {}
    for name, values in (('dice', np.concatenate(pooled)),
                         ('kaggle_dice', np.concatenate(mean))):
        values = values[~np.isnan(values)]
        out[name] = (tuple(float(q) for q in np.quantile(
            values, [tail, 1 - tail])) if values.size else nan)
    return out
