"""The triplet grid search against the post-processor and the metric,
and its cross-validation."""
import random

import numpy as np
import pytest
import torch

from mmseg_ptx.evaluation import (PneumothoraxMetric, TripletImageStats,
                                  cross_validate_triplet, search_triplet,
                                  triplet_folds, triplet_image_stats)
from mmseg_ptx.models import TripletThresholdPostProcessor

TOPS, BOTTOMS, AREAS = [0.5, 0.75], [0.3, 0.5], [0, 5, 20, 10**6]


def random_images(num=12, ignore=False, ties=True, seed=0):
    """Small maps of varied sizes, empty and non-empty ground truths and,
    with ``ties``, probabilities exactly at the thresholds."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(num):
        h, w = rng.integers(3, 12, 2)
        prob = rng.random((h, w)).astype(np.float32)
        if ties:
            prob[rng.random((h, w)) < 0.2] = rng.choice([0.3, 0.5, 0.75])
        gt = (rng.random((h, w)) < (0.4 if i % 3 else 0)).astype(np.int64)
        if ignore:
            gt[rng.random((h, w)) < 0.3] = 255
        images.append((prob, gt))
    return images


def competition_dice(pred, gt):
    pred, gt = pred.astype(bool), gt == 1
    total = pred.sum() + gt.sum()
    return 1.0 if total == 0 else 2 * (pred & gt).sum() / total


def test_search_equals_post_processor_dice():
    images = random_images()
    stats = [triplet_image_stats(p, g, TOPS, BOTTOMS) for p, g in images]
    rows = search_triplet(stats, TOPS, AREAS, BOTTOMS)
    assert len(rows) == len(TOPS) * len(AREAS) * len(BOTTOMS)
    assert [r['kaggle_dice'] for r in rows] == sorted(
        (r['kaggle_dice'] for r in rows), reverse=True)
    for row in rows:
        pp = TripletThresholdPostProcessor(row['top_threshold'],
                                           row['min_area'],
                                           row['bottom_threshold'])
        direct = np.mean([competition_dice(pp(p), g) for p, g in images])
        assert row['kaggle_dice'] == pytest.approx(direct, abs=1e-12)
        empty = sum(int(pp(p).sum() == 0) for p, _ in images)
        assert row['num_empty'] == empty


def test_image_with_nothing_above_the_bottom_is_predicted_empty():
    """num_empty counts images whose mask is empty, also where min_area
    (0 here) keeps the image but no pixel is above the bottom."""
    low = np.full((4, 4), 0.1, np.float32)
    high = np.full((4, 4), 0.9, np.float32)
    gt = np.zeros((4, 4), np.int64)
    stats = [triplet_image_stats(p, gt, [0.75], [0.3]) for p in (low, high)]
    row, = search_triplet(stats, [0.75], [0], [0.3])
    assert row['num_empty'] == 1
    assert row['kaggle_dice'] == 0.5


def test_search_agrees_with_metric_on_ignored_pixels():
    # Ignored pixels leave the scores but not the decision to empty an
    # image, in both the search and PneumothoraxMetric's post-processing.
    # No ties: the metric gets logits, whose sigmoid is not exactly the
    # probability the search saw.
    images = random_images(ignore=True, ties=False, seed=1)
    stats = [triplet_image_stats(p, g, TOPS, BOTTOMS) for p, g in images]
    for row in search_triplet(stats, TOPS, AREAS, BOTTOMS):
        pp = TripletThresholdPostProcessor(row['top_threshold'],
                                           row['min_area'],
                                           row['bottom_threshold'])
        metric = PneumothoraxMetric(postprocess=pp)
        samples = []
        for i, (prob, gt) in enumerate(images):
            logit = torch.logit(torch.as_tensor(prob).double()).float()
            samples.append(dict(
                img_path=f'img_{i}.png',
                seg_logits=dict(data=torch.stack(
                    [torch.zeros_like(logit), logit])),
                gt_sem_seg=dict(data=torch.as_tensor(gt)[None])))
        metric.process({}, samples)
        res = metric.evaluate(len(samples))
        assert row['kaggle_dice'] == pytest.approx(res['kaggle_dice_pp'],
                                                   abs=1e-6)


def test_stats_errors_name_the_image():
    prob = np.full((4, 4), 0.9, np.float32)
    with pytest.raises(ValueError, match='a.dcm: probability map'):
        triplet_image_stats(prob, np.zeros((2, 2)), TOPS, BOTTOMS,
                            name='a.dcm')
    gt = np.zeros((4, 4), np.int64)
    gt[0, 0] = 2
    with pytest.raises(ValueError, match=r'b.dcm: ground truth .*\[0, 2\]'):
        triplet_image_stats(prob, gt, TOPS, BOTTOMS, name='b.dcm')
    # Below every threshold, NaN would score as no pneumothorax.
    prob[1, 1] = np.nan
    with pytest.raises(ValueError, match='c.dcm: the probability map '
                       'contains NaN'):
        triplet_image_stats(prob, np.zeros((4, 4)), TOPS, BOTTOMS,
                            name='c.dcm')


def image_counts(count_top, pred, inter, gt):
    """Stats of one image for a grid of one top and one bottom threshold."""
    return TripletImageStats(np.array([count_top]), np.array([pred]),
                             np.array([inter]), gt)


def test_folds_partition_stratified_deterministic():
    # Positives 1, 4, 6 and negatives 0, 2, 3, 5, 7, 8, dealt round robin,
    # positives first: order 1 4 6 0 2 3 5 7 8, fold f takes positions
    # f, f + 4, ...
    positive = {1, 4, 6}
    stats = [image_counts(0, 0, 0, 9 if i in positive else 0)
             for i in range(9)]
    folds = triplet_folds(stats, 4)
    assert folds == [[1, 2, 8], [3, 4], [5, 6], [0, 7]]
    # No random number is drawn: other global seeds give the same folds.
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    assert triplet_folds(stats, 4) == folds

    rng = np.random.default_rng(0)
    stats = [image_counts(0, 0, 0, int(rng.integers(0, 3)) * 5)
             for _ in range(23)]
    for num_folds in (2, 5, 23):
        folds = triplet_folds(stats, num_folds)
        assert sorted(i for f in folds for i in f) == list(range(23))
        for count in (len, lambda f: sum(stats[i].gt > 0 for i in f)):
            sizes = [count(f) for f in folds]
            assert max(sizes) - min(sizes) <= 1
    for num_folds in (1, 24):
        with pytest.raises(ValueError, match='from 2 to the number'):
            triplet_folds(stats, num_folds)


def test_cross_validation_by_hand():
    # One top (0.5) and bottom (0.5); min_area 0 (A) keeps every
    # prediction, 10 (B) empties the images with fewer than 10 pixels
    # above the top. Per-image competition Dice with A / with B:
    stats = [
        image_counts(5, 10, 10, 10),  # 0 positive: 1 / 0
        image_counts(5, 5, 0, 0),  # 1 negative: 0 / 1
        image_counts(5, 10, 5, 10),  # 2 positive: 0.5 / 0
        image_counts(3, 3, 0, 0),  # 3 negative: 0 / 1
        image_counts(4, 4, 4, 4),  # 4 positive: 1 / 0
        image_counts(0, 0, 0, 0),  # 5 negative: 1 / 1
    ]
    folds = triplet_folds(stats, 2)
    assert folds == [[0, 3, 4], [1, 2, 5]]
    result = cross_validate_triplet(stats, [0.5], [0, 10], [0.5], folds)
    # All images: A 3.5 / 6, B 3 / 6, so A is chosen, in-sample 0.583.
    assert search_triplet(stats, [0.5], [0, 10], [0.5])[0]['min_area'] == 0
    # Fold 0 is chosen on images 1, 2, 5: A 1.5 / 3, B 2 / 3, so B, which
    # scores 1 / 3 on images 0, 3, 4. Fold 1, on images 0, 3, 4: A 2 / 3,
    # B 1 / 3, so A, which scores 1.5 / 3 on images 1, 2, 5.
    fold0, fold1 = result['folds']
    assert fold0['min_area'] == 10 and fold1['min_area'] == 0
    assert fold0['num_images'] == fold1['num_images'] == 3
    assert fold0['in_sample']['kaggle_dice'] == pytest.approx(2 / 3)
    assert fold0['held_out']['kaggle_dice'] == pytest.approx(1 / 3)
    assert fold1['in_sample']['kaggle_dice'] == pytest.approx(2 / 3)
    assert fold1['held_out']['kaggle_dice'] == pytest.approx(1 / 2)
    # Held out: 0, 1, 0 (B) on images 0, 3, 4; 0, 0.5, 1 (A) on 1, 2, 5.
    assert result['num_folds'] == 2
    assert result['kaggle_dice'] == pytest.approx(2.5 / 6)
    assert result['kaggle_dice_pos'] == pytest.approx(0.5 / 3)
    assert result['kaggle_dice_neg'] == pytest.approx(2 / 3)
    # B empties images 0, 3 and 4; A predicts no pixel on image 5.
    assert result['num_empty'] == 4
    assert result['num_same_as_all'] == 1


def test_cross_validation_chooses_as_the_search():
    images = random_images(num=17, seed=2)
    stats = [triplet_image_stats(p, g, TOPS, BOTTOMS) for p, g in images]
    folds = triplet_folds(stats, 3)
    result = cross_validate_triplet(stats, TOPS, AREAS, BOTTOMS, folds)
    keys = ('top_threshold', 'min_area', 'bottom_threshold')
    held_dice = 0.0
    for fold, found in zip(folds, result['folds']):
        rest = [s for i, s in enumerate(stats) if i not in fold]
        chosen = search_triplet(rest, TOPS, AREAS, BOTTOMS)[0]
        setting = {k: chosen[k] for k in keys}
        assert {k: found[k] for k in keys} == setting
        assert found['in_sample'] == {
            k: v for k, v in chosen.items() if k not in keys}
        held = [r for r in search_triplet([stats[i] for i in fold], TOPS,
                                          AREAS, BOTTOMS)
                if {k: r[k] for k in keys} == setting]
        assert found['held_out'] == {
            k: v for k, v in held[0].items() if k not in keys}
        held_dice += len(fold) * held[0]['kaggle_dice']
    assert result['kaggle_dice'] == pytest.approx(held_dice / len(stats))
    with pytest.raises(ValueError, match='each image in exactly one'):
        cross_validate_triplet(stats, TOPS, AREAS, BOTTOMS,
                               [folds[0], folds[0] + folds[1]])


def test_positive_share_reweights_the_ranking():
    """On a positive-heavy set the plain mean keeps every prediction; at a
    test set's share of positives, emptying small predictions wins."""
    # min_area 0 (A) keeps each prediction, 10 (B) empties images with
    # fewer than 10 pixels above the top. Dice with A / with B:
    stats = ([image_counts(5, 10, 5, 10)] * 6 +  # positive: 0.5 / 0
             [image_counts(5, 5, 0, 0)] * 2)  # negative: 0 / 1
    plain = search_triplet(stats, [0.5], [0, 10], [0.5])
    assert plain[0]['min_area'] == 0 and 'kaggle_dice_reweighted' not in \
        plain[0]
    rows = search_triplet(stats, [0.5], [0, 10], [0.5], positive_share=0.25)
    assert rows[0]['min_area'] == 10
    # B: 0.25 x 0 + 0.75 x 1; A: 0.25 x 0.5 + 0.75 x 0.
    assert rows[0]['kaggle_dice_reweighted'] == pytest.approx(0.75)
    assert rows[1]['kaggle_dice_reweighted'] == pytest.approx(0.125)
    assert rows[0]['kaggle_dice'] == pytest.approx(0.25)  # still the mean
    assert plain[0]['kaggle_dice'] == pytest.approx(0.375)
    # The share of the set itself ranks as the plain mean.
    same = search_triplet(stats, [0.5], [0, 10], [0.5], positive_share=0.75)
    assert [r['kaggle_dice_reweighted'] for r in same] == pytest.approx(
        [r['kaggle_dice'] for r in plain])
    held = cross_validate_triplet(stats, [0.5], [0, 10], [0.5],
                                  [[0, 1, 2, 6], [3, 4, 5, 7]],
                                  positive_share=0.25)
    assert [fold['min_area'] for fold in held['folds']] == [10, 10]
    assert 'kaggle_dice_reweighted' in held['folds'][1]['held_out']


@pytest.mark.parametrize('share, stats, message', [
    (1.5, [image_counts(0, 0, 0, 0)], r'must be in \[0, 1\], got 1.5'),
    (0.2, [image_counts(0, 0, 0, 0)], 'have only negative ones'),
    (0.2, [image_counts(4, 4, 4, 4)], 'have only positive ones'),
])
def test_positive_share_needs_both_classes(share, stats, message):
    with pytest.raises(ValueError, match=message):
        search_triplet(stats, [0.5], [0], [0.5], positive_share=share)


def test_positive_share_needs_both_classes_outside_every_fold():
    stats = [image_counts(4, 4, 4, 4), image_counts(0, 0, 0, 0),
             image_counts(0, 0, 0, 0)]
    with pytest.raises(ValueError, match='images outside a fold have only '
                       'negative ones'):
        cross_validate_triplet(stats, [0.5], [0], [0.5], [[0, 1], [2]],
                               positive_share=0.2)


@pytest.mark.parametrize('share, gt', [(0.0, 0), (1.0, 4)])
def test_a_share_of_0_or_1_weighs_one_class(share, gt):
    """A share of 0 (1) on images of negatives (positives) only is their
    plain mean, not NaN (which would rank the settings at random)."""
    stats = [image_counts(4, 4, 4 if gt else 0, gt)] * 2 + [
        image_counts(20, 20, 20 if gt else 0, gt)]
    rows = search_triplet(stats, [0.5], [0, 10], [0.5],
                          positive_share=share)
    for row in rows:
        assert row['kaggle_dice_reweighted'] == row['kaggle_dice']
    assert rows[0]['kaggle_dice'] == max(r['kaggle_dice'] for r in rows)
