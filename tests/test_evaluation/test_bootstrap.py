"""evaluation.bootstrap: intervals of the Dice scores over images."""
import math

import numpy as np
import pytest

from mmseg_ptx.evaluation import bootstrap_dice_intervals
from mmseg_ptx.evaluation.metrics import competition_dice


def image_counts(num, seed=0):
    """(inter, pred, gt) of ``num`` images: a third without pneumothorax,
    some of them with false alarms; the rest found in part."""
    rng = np.random.default_rng(seed)
    gt = np.where(rng.random(num) < 1 / 3, 0, rng.integers(200, 5000, num))
    pred = np.where(gt > 0, (gt * rng.uniform(0.3, 1.3, num)).astype(int),
                    np.where(rng.random(num) < 0.2,
                             rng.integers(1, 500, num), 0))
    inter = np.minimum(pred, (gt * rng.uniform(0, 1, num)).astype(int))
    return inter, pred, gt


def intervals(inter, pred, gt, **kwargs):
    return bootstrap_dice_intervals(inter, pred, gt,
                                    competition_dice(inter, pred, gt),
                                    **kwargs)


def test_the_intervals_hold_the_scores_and_repeat():
    inter, pred, gt = image_counts(300)
    result = intervals(inter, pred, gt)
    assert result == intervals(inter, pred, gt)  # seeded
    assert result != intervals(inter, pred, gt, seed=1)
    dice = 2 * inter.sum() / (pred.sum() + gt.sum())
    kaggle = competition_dice(inter, pred, gt).mean()
    for name, value in (('dice', dice), ('kaggle_dice', kaggle)):
        low, high = result[name]
        assert low < value < high
        assert 0 < high - low < 0.2


def test_the_mean_interval_is_the_normal_one_on_many_images():
    """For a mean over many images the percentile bootstrap agrees with
    mean +- z * sd / sqrt(n)."""
    inter, pred, gt = image_counts(2000, seed=3)
    per_image = competition_dice(inter, pred, gt)
    low, high = intervals(inter, pred, gt, num_samples=4000,
                          confidence=0.9)['kaggle_dice']
    half = 1.6449 * per_image.std() / math.sqrt(len(per_image))
    assert (low, high) == pytest.approx(
        (per_image.mean() - half, per_image.mean() + half), abs=0.003)


def test_more_images_narrow_the_interval():
    """The same images sixteen times over: about a quarter of the
    width."""
    inter, pred, gt = image_counts(200, seed=5)
    widths = [np.subtract(*reversed(intervals(
        *(np.tile(x, times) for x in (inter, pred, gt)))['dice']))
        for times in (1, 16)]
    assert widths[1] / widths[0] == pytest.approx(0.25, abs=0.05)


def test_sets_without_a_score():
    nan = intervals(np.zeros(0), np.zeros(0), np.zeros(0))
    assert all(math.isnan(v) for pair in nan.values() for v in pair)
    # Empty truth and empty prediction everywhere: no pooled Dice, and a
    # competition Dice of 1 on every image.
    empty = intervals(np.zeros(5), np.zeros(5), np.zeros(5))
    assert all(math.isnan(v) for v in empty['dice'])
    assert empty['kaggle_dice'] == (1.0, 1.0)


def test_resamples_without_a_pooled_dice_are_left_out():
    """Four images, the last alone positive (and found): a resample
    without it has no pooled Dice and is left out, not a NaN interval;
    every image is drawn."""
    result = intervals([0, 0, 0, 5], [0, 0, 0, 5], [0, 0, 0, 5])
    assert result['dice'] == (1.0, 1.0)


def test_the_number_of_resamples():
    inter, pred, gt = [3, 0, 5, 1], [4, 2, 6, 1], [5, 0, 7, 3]
    one = intervals(inter, pred, gt, num_samples=1)  # one draw: a point
    assert all(low == high for low, high in one.values())
    none = intervals(inter, pred, gt, num_samples=0)
    assert all(math.isnan(v) for pair in none.values() for v in pair)
