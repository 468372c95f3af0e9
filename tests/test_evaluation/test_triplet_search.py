"""The triplet grid search against the post-processor and the metric."""
import numpy as np
import pytest
import torch

from mmseg_ptx.evaluation import (PneumothoraxMetric, search_triplet,
                                  triplet_image_stats)
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
