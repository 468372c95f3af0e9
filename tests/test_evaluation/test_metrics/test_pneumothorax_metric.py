import copy
import math
import pickle

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import free_port, write_tiny_run_config
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from sklearn.metrics import (auc, average_precision_score, f1_score,
                             precision_recall_curve)

import mmseg_ptx  # noqa: F401  (registers the metric)
from mmseg.registry import METRICS, MODELS
from mmseg_ptx.evaluation import (PneumothoraxMetric, compute_pr_curve,
                                  logit_bin_edges)
from mmseg_ptx.models.postprocessors import TripletThresholdPostProcessor
from mmseg_ptx.utils import AsyncReadback, HostSyncRecorder


def make_sample(gt, seg_logits, name='img.png'):
    gt = torch.as_tensor(gt).long()
    seg_logits = torch.as_tensor(seg_logits).float()
    return dict(
        img_path=name,
        seg_logits=dict(data=seg_logits),
        gt_sem_seg=dict(data=gt[None]),
        pred_sem_seg=dict(data=seg_logits.argmax(0, keepdim=True)))


def two_channel(logit):
    """2-channel head output whose softmax channel 1 is sigmoid(logit)."""
    logit = torch.as_tensor(logit, dtype=torch.float32)
    return torch.stack([torch.zeros_like(logit), logit])


def realistic_samples(num=6, size=64, seed=0):
    """Blobs of ~2% foreground; detected, missed and false-alarm pixels."""
    g = torch.Generator().manual_seed(seed)
    samples, labels, scores = [], [], []
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size),
                            indexing='ij')
    for i in range(num):
        gt = torch.zeros(size, size, dtype=torch.long)
        if i % 3:  # one image in three has no pneumothorax
            cy, cx = torch.randint(8, size - 8, (2, ), generator=g)
            gt[(yy - cy)**2 + (xx - cx)**2 < 30] = 1
        noise = torch.randn(size, size, generator=g)
        missed = torch.rand(size, size, generator=g) < 0.25
        logit = torch.where(gt.bool() & ~missed, 1.5 + 2.5 * noise,
                            -7 + 3.5 * noise)
        seg_logits = two_channel(logit)
        samples.append(make_sample(gt, seg_logits, f'img_{i}.png'))
        labels.append(gt.flatten().numpy())
        scores.append(torch.softmax(seg_logits.double(), 0)[1].flatten()
                      .numpy())
    return samples, np.concatenate(labels), np.concatenate(scores)


def evaluate(samples, size=None, **kwargs):
    metric = PneumothoraxMetric(**kwargs)
    metric.process({}, samples)
    return metric, metric.evaluate(len(samples) if size is None else size)


def test_competition_dice_rule():
    """Both masks empty: 1; an empty truth with any prediction, or the
    reverse: 0; otherwise 2|A & B| / (|A| + |B|), per image."""
    from mmseg_ptx.evaluation.metrics import competition_dice
    np.testing.assert_array_equal(
        competition_dice(np.array([0, 0, 0, 3]), np.array([0, 5, 0, 4]),
                         np.array([0, 0, 7, 6])),
        [1.0, 0.0, 0.0, 0.6])
    assert float(competition_dice(0, 0, 0)) == 1.0


def test_pr_numbers_match_sklearn():
    samples, y, p = realistic_samples()
    metric, res = evaluate(samples)
    ref_ap = average_precision_score(y, p)
    assert abs(res['ap'] - ref_ap) < 1e-3
    assert abs(res['ap'] - ref_ap) <= res['ap_error_bound'] + 1e-12
    prec, rec, thr = precision_recall_curve(y, p)
    assert abs(res['pr_auc'] - auc(rec, prec)) < 2e-3
    ref_f1 = np.max(2 * prec * rec / np.maximum(prec + rec, 1e-12))
    assert abs(res['best_f1'] - ref_f1) < 2e-3
    # best_f1 must be what thresholding at best_threshold gives.
    pred = p >= res['best_threshold']
    assert abs(f1_score(y, pred) - res['best_f1']) < 1e-3
    tp = (pred & (y == 1)).sum()
    assert abs(res['precision'] - tp / pred.sum()) < 1e-3
    assert abs(res['recall'] - tp / y.sum()) < 1e-3
    assert metric.last_curve.ap == res['ap']


def test_float32_probabilities_tie_a_confident_models_pixels():
    """docs/evaluation.md: scikit-learn on float32 probabilities (a
    softmax's) scores a confident model's AP lower than here, because
    float32 rounds every probability above a logit of about 16.6 to
    exactly 1, one tied threshold for positives and negatives; the metric
    bins logits up to 20 and agrees with scikit-learn on float64."""
    g = torch.Generator().manual_seed(0)
    size = 64
    gt = torch.zeros(4, size, size, dtype=torch.long)
    gt[:, 16:40, 16:40] = 1  # 576 positive pixels per image
    uniform = torch.rand(4, size, size, generator=g)
    # Positives at logits 17.5-19.9; a sixth of the negatives are
    # confident false alarms at 16.7-18, the rest far below.
    logit = torch.where(gt.bool(), 17.5 + 2.4 * uniform,
                        torch.where(uniform < 1 / 6, 16.7 + 7.8 * uniform,
                                    -8 + 4 * uniform))
    samples = [make_sample(gt[i], two_channel(logit[i]), f'img_{i}.png')
               for i in range(4)]
    _, res = evaluate(samples)
    y = gt.flatten().numpy()
    float64 = average_precision_score(
        y, 1 / (1 + np.exp(-logit.double().flatten().numpy())))
    float32 = average_precision_score(
        y, torch.softmax(two_channel(logit.flatten()), 0)[1].numpy())
    assert abs(res['ap'] - float64) <= res['ap_error_bound'] + 1e-12
    assert float32 < float64 - 0.2


def test_compute_pr_curve_exact_on_bin_centres():
    # Scores at distinct bin centres: binning loses nothing, so AP, the
    # curve and the error bound must be exact.
    edges = logit_bin_edges(64, (-4.0, 4.0))
    rng = np.random.default_rng(1)
    bins = rng.integers(0, 64, size=300)
    y = rng.random(300) < 0.3
    pos = np.bincount(bins[y], minlength=64)
    neg = np.bincount(bins[~y], minlength=64)
    centres = (edges[:-1] + edges[1:]) / 2
    curve = compute_pr_curve(pos, neg, edges)
    assert curve.ap == pytest.approx(
        average_precision_score(y, centres[bins]), abs=1e-12)
    prec, rec, _ = precision_recall_curve(y, centres[bins])
    np.testing.assert_allclose(curve.precision, prec, atol=1e-12)
    np.testing.assert_allclose(curve.recall, rec, atol=1e-12)
    np.testing.assert_allclose(curve.thresholds, edges[np.unique(bins)])
    assert curve.pr_auc == pytest.approx(auc(rec, prec), abs=1e-12)
    assert 0 < curve.ap_error_bound < 1


def test_ap_error_bound_is_the_widest_error_within_bins():
    """Two bins: [0.5, 1) holds a positive and a negative, [0, 0.5) a
    positive. The first bin's positive has an exact precision of 1 or
    1/2, whichever way the two are ordered in it: the bound is that width
    times its share of the positives, (1 - 1/2) / 2, and the ordering
    with the positive first attains it."""
    curve = compute_pr_curve(np.array([1, 1]), np.array([0, 1]),
                             np.array([0.0, 0.5, 1.0]))
    assert curve.ap == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert curve.ap_error_bound == pytest.approx(0.25)
    exact = [
        average_precision_score([1, 0, 1], scores)
        for scores in ([0.9, 0.8, 0.1], [0.8, 0.9, 0.1])
    ]
    assert exact == pytest.approx([(1 + 2 / 3) / 2, curve.ap])
    assert max(abs(a - curve.ap) for a in exact) == pytest.approx(
        curve.ap_error_bound)


def test_best_f1_tie_takes_the_highest_threshold():
    """[0.5, 1) holds a positive, [0, 0.5) a positive and two negatives:
    F1 is 2/3 at either threshold (precision 1 and recall 1/2, or 1/2 and
    1); the documented choice is the higher threshold."""
    curve = compute_pr_curve(np.array([1, 1]), np.array([2, 0]),
                             np.array([0.0, 0.5, 1.0]))
    assert curve.best_f1 == pytest.approx(2 / 3)
    assert (curve.best_threshold, curve.best_precision,
            curve.best_recall) == (0.5, 1.0, 0.5)
    # F1 = 1/3 at both (1/4 and 1/2, or 1/5 and 1): from precision and
    # recall the two round apart, and the lower threshold won.
    curve = compute_pr_curve(np.array([1, 1]), np.array([5, 3]),
                             np.array([0.0, 0.5, 1.0]))
    assert curve.best_f1 == pytest.approx(1 / 3)
    assert curve.best_threshold == 0.5


def test_compute_pr_curve_without_positives_is_nan():
    edges = logit_bin_edges(8, (-1.0, 1.0))
    curve = compute_pr_curve(np.zeros(8), np.ones(8), edges)
    assert np.isnan(curve.ap) and np.isnan(curve.best_f1)
    with pytest.raises(ValueError, match='bin edges'):
        compute_pr_curve(np.zeros(8), np.ones(8), edges[:-1])


def test_pooled_dice_iou_against_hand_computation():
    samples, y, p = realistic_samples(seed=3)
    for threshold in (0.5, 0.3):
        _, res = evaluate(samples, threshold=threshold)
        pred = p > threshold
        inter = (pred & (y == 1)).sum()
        assert res['dice'] == pytest.approx(
            2 * inter / (pred.sum() + y.sum()))
        assert res['iou'] == pytest.approx(
            inter / (pred.sum() + y.sum() - inter))
    assert res['num_pixels'] == y.size
    assert res['num_pos_pixels'] == y.sum()
    assert res['num_neg_pixels'] == y.size - y.sum()
    assert res['num_images'] == len(samples)
    assert res['num_pos_images'] == 4


def test_per_image_competition_rule():
    gt_empty = np.zeros((4, 4))
    gt_obj = np.zeros((4, 4))
    gt_obj[:2, :2] = 1  # 4 pixels
    nothing = np.full((4, 4), -5.0)
    some = nothing.copy()
    some[3, 3] = 5.0
    half = nothing.copy()
    half[0, :2] = 5.0  # 2 of the 4 object pixels
    samples = [
        make_sample(gt_empty, two_channel(nothing)),  # 1
        make_sample(gt_empty, two_channel(some)),  # 0
        make_sample(gt_obj, two_channel(half)),  # 2*2/(2+4)
        make_sample(gt_obj, two_channel(nothing)),  # 0
    ]
    _, res = evaluate(samples)
    assert res['kaggle_dice'] == pytest.approx((1 + 0 + 2 / 3 + 0) / 4)
    assert res['kaggle_dice_neg'] == pytest.approx(0.5)
    assert res['kaggle_dice_pos'] == pytest.approx(1 / 3)
    assert res['image_sensitivity'] == pytest.approx(0.5)
    assert res['image_specificity'] == pytest.approx(0.5)
    assert res['image_accuracy'] == pytest.approx(0.5)
    # Pooled: intersection 2, predicted 1 + 2, ground truth 8.
    assert res['dice'] == pytest.approx(4 / 11)
    assert res['iou'] == pytest.approx(2 / 9)
    assert res['num_pos_images'] == 2
    # Unequal groups: specificity is over the negative images only (the
    # four above give 1/2 for either group), sensitivity over the positive.
    _, res = evaluate(samples[:2] + [samples[0]] + samples[2:3])
    assert res['image_specificity'] == pytest.approx(2 / 3)
    assert res['image_sensitivity'] == pytest.approx(1.0)


def test_ignore_index_pixels_are_excluded():
    samples, _, _ = realistic_samples(num=3, seed=5)
    _, base = evaluate(samples)
    # Ignored pixels carry confident false positives; they must not count.
    ignored = []
    for s in samples:
        gt = s['gt_sem_seg']['data'].clone()
        logits = s['seg_logits']['data'].clone()
        gt[:, :2, :] = 255
        logits[1, :2, :] = 10.0
        ignored.append(make_sample(gt[0], logits))
    kept = [
        make_sample(s['gt_sem_seg']['data'][0, 2:],
                    s['seg_logits']['data'][:, 2:]) for s in samples
    ]
    _, res_ign = evaluate(ignored)
    _, res_kept = evaluate(kept)
    assert res_ign == res_kept
    assert res_ign['num_pixels'] == base['num_pixels'] - 3 * 2 * 64
    # The post-processed (_pp) numbers too, where the post-processing does
    # not empty images (it sees the whole map, ignored pixels included,
    # as at inference).
    postprocess = TripletThresholdPostProcessor(0.5, 1, 0.5)
    _, res_ign = evaluate(ignored, postprocess=postprocess)
    _, res_kept = evaluate(kept, postprocess=postprocess)
    assert res_ign['kaggle_dice_pp'] == res_kept['kaggle_dice_pp']
    assert res_ign == res_kept


def test_more_channels_score_class_1_against_all_others():
    """A head with more classes: the pneumothorax score is class 1's
    softmax over all channels. Channel 0 of the 2-channel samples is split
    in two, 0 and 2, whose softmax mass is the same (log u and
    log(1 - u))."""
    samples, _, _ = realistic_samples(num=3, seed=7)
    _, ref = evaluate(samples)
    g = torch.Generator().manual_seed(0)
    three = []
    for s in samples:
        logits = s['seg_logits']['data']
        u = torch.rand(logits.shape[1:], generator=g) * 0.8 + 0.1
        three.append(make_sample(
            s['gt_sem_seg']['data'][0],
            torch.stack([u.log(), logits[1], (1 - u).log()])))
    _, res = evaluate(three)
    for key in ('dice', 'kaggle_dice', 'num_pixels', 'ap', 'best_f1'):
        assert res[key] == pytest.approx(ref[key], abs=1e-4), key


def test_single_channel_inputs():
    samples, _, _ = realistic_samples(num=3, seed=7)
    _, ref = evaluate(samples)
    logit_only = [
        make_sample(s['gt_sem_seg']['data'][0],
                    s['seg_logits']['data'][1:]) for s in samples
    ]
    _, res_logit = evaluate(logit_only, single_channel='logit')
    probs = [
        make_sample(s['gt_sem_seg']['data'][0],
                    torch.sigmoid(s['seg_logits']['data'][1:].double()))
        for s in samples
    ]
    _, res_prob = evaluate(probs)
    for key in ('dice', 'kaggle_dice', 'num_pixels', 'best_threshold'):
        assert res_logit[key] == ref[key]
        assert res_prob[key] == pytest.approx(ref[key])
    assert res_prob['ap'] == pytest.approx(ref['ap'], abs=1e-4)
    with pytest.raises(ValueError, match="single_channel='logit'"):
        evaluate(logit_only)


@pytest.mark.parametrize('prob', [0.35, 0.75])
def test_single_channel_probability_cut_as_the_post_processor_cuts(prob):
    """A probability exactly at a threshold is not above it: neither the
    plain threshold nor the post-processing decides through the logit,
    which rounds (sigmoid(logit(0.75)) > 0.75 in float32)."""
    gt = torch.tensor([[1, 1, 0, 0]])
    probs = torch.tensor([[prob, prob, 0.2, 0.2]])[None]
    _, res = evaluate([make_sample(gt, probs)], threshold=prob)
    assert res['dice'] == 0 and res['kaggle_dice'] == 0
    postprocess = TripletThresholdPostProcessor(
        top_threshold=prob, min_area=2, bottom_threshold=0.1)
    assert not postprocess(probs[0]).any()
    _, res = evaluate([make_sample(gt, probs)], postprocess=postprocess)
    assert res['kaggle_dice_pp'] == 0


def test_an_output_dir_that_is_a_file_is_refused_at_once(tmp_path):
    afile = tmp_path / 'a_file'
    afile.write_text('mine')
    with pytest.raises(ValueError, match=f'output_dir {afile} is a file'):
        PneumothoraxMetric(output_dir=str(afile))
    PneumothoraxMetric(output_dir=str(tmp_path / 'new'))  # made later


def test_bad_inputs_raise_with_the_image_name():
    bad_gt = make_sample(np.full((4, 4), 2), two_channel(np.zeros((4, 4))),
                         name='case_17.png')
    with pytest.raises(ValueError, match='case_17.png.*0, 1 or'):
        evaluate([bad_gt])
    bad_shape = make_sample(np.zeros((4, 4)), two_channel(np.zeros((4, 5))),
                            name='case_3.png')
    with pytest.raises(ValueError, match='case_3.png.*does not match.*'
                       'labels after its Resize'):
        evaluate([bad_shape])
    with pytest.raises(ValueError, match='threshold'):
        PneumothoraxMetric(threshold=1.0)
    # An infinite end gives every pixel one bin (or NaN bin codes).
    for logit_range in ((-20, math.inf), (-math.inf, 20), (5, 5),
                        (-1e308, 1e308), (math.nan, 1)):
        with pytest.raises(ValueError, match='two finite, increasing'):
            PneumothoraxMetric(logit_range=logit_range)
    for num_bins in (65536.5, math.inf, math.nan, 1):
        with pytest.raises(ValueError, match='an integer in'):
            PneumothoraxMetric(num_bins=num_bins)
    # Found in the batch's one read-back, named by their own sample.
    good = make_sample(np.zeros((4, 4)), two_channel(np.zeros((4, 4))))
    nan = make_sample(np.zeros((4, 4)),
                      two_channel(np.full((4, 4), np.nan)), name='case_5.png')
    with pytest.raises(ValueError, match='case_5.png: seg_logits contains'):
        evaluate([good, nan])
    with pytest.raises(ValueError, match='case_17.png.*0, 1 or'):
        evaluate([good, bad_gt, nan])
    no_logits = dict(img_path='case_8.png',
                     gt_sem_seg=dict(data=torch.zeros(1, 4, 4)))
    with pytest.raises(KeyError, match='case_8.png: data sample has no '
                       'seg_logits'):
        evaluate([no_logits])
    with pytest.raises(ValueError, match='case_9.png: postprocess returned '
                       'shape \\(3, 3\\), expected \\(4, 4\\)'):
        evaluate([make_sample(np.zeros((4, 4)), two_channel(np.zeros((4, 4))),
                              name='case_9.png')],
                 postprocess=lambda prob: np.zeros((3, 3), np.uint8))
    with pytest.raises(TypeError, match='postprocess must be a config dict '
                       'or a callable, got int'):
        PneumothoraxMetric(postprocess=3)
    with pytest.raises(ValueError, match="single_channel must be "
                       "'probability' or 'logit', got 'sigmoid'"):
        PneumothoraxMetric(single_channel='sigmoid')


def test_dice_intervals_over_the_images():
    """dice_ci_* and kaggle_dice_ci_* (and with post-processing, *_pp)
    from bootstrap_dice_intervals on the images' counts; none with
    bootstrap_samples=0."""
    from mmseg_ptx.evaluation import bootstrap_dice_intervals
    from mmseg_ptx.evaluation.metrics import competition_dice
    samples, _, _ = realistic_samples(num=9)
    postprocess = TripletThresholdPostProcessor(0.6, 5, 0.3)
    metric = PneumothoraxMetric(postprocess=postprocess,
                                bootstrap_samples=500, confidence=0.8)
    metric.process({}, samples)
    results = list(metric.results)
    res = metric.evaluate(len(samples))
    for suffix, key in (('', 'stats'), ('_pp', 'stats_pp')):
        inter, pred, gt = np.array([r[key] for r in results]).T
        expected = bootstrap_dice_intervals(
            inter, pred, gt, competition_dice(inter, pred, gt), 500, 0.8)
        for name in ('dice', 'kaggle_dice'):
            assert (res[f'{name}_ci_low{suffix}'],
                    res[f'{name}_ci_high{suffix}']) == expected[name]
            assert res[f'{name}_ci_low{suffix}'] <= res[name + suffix] <= \
                res[f'{name}_ci_high{suffix}']
    _, plain = evaluate(samples, bootstrap_samples=0)
    assert not [key for key in plain if '_ci_' in key]
    for samples_arg in (-1, 2.5, None, True):
        with pytest.raises(ValueError, match='bootstrap_samples must be an '
                           'integer >= 0'):
            PneumothoraxMetric(bootstrap_samples=samples_arg)
    for confidence in (0.0, 1.0):
        with pytest.raises(ValueError, match='confidence must be in'):
            PneumothoraxMetric(confidence=confidence)


def test_an_empty_batch_adds_nothing():
    metric = PneumothoraxMetric()
    metric.process({}, [])
    assert metric.results == []


def test_output_dir_keeps_the_pixel_histograms(tmp_path):
    """pr_hist.npz: the summed histograms the curve was computed from,
    which give back its AP and count every pixel."""
    samples, _, _ = realistic_samples()
    metric, res = evaluate(samples, output_dir=str(tmp_path / 'out'))
    saved = np.load(tmp_path / 'out' / 'pr_hist.npz')
    np.testing.assert_array_equal(saved['bin_edges'], metric.bin_edges)
    assert int(saved['pos_hist'].sum() + saved['neg_hist'].sum()) == \
        res['num_pixels']
    assert int(saved['pos_hist'].sum()) == res['num_pos_pixels']
    assert compute_pr_curve(saved['pos_hist'], saved['neg_hist'],
                            saved['bin_edges']).ap == res['ap']


@pytest.mark.parametrize('single_channel', [None, 'probability', 'logit'])
def test_process_makes_the_host_wait_for_nothing(single_channel):
    """Every count is read back in one copy per batch (AsyncReadback's,
    whose host copy the recorder does not count); before, five reads per
    sample."""
    samples, _, _ = realistic_samples(num=4, seed=3)
    kwargs = {}
    if single_channel is not None:
        kwargs['single_channel'] = single_channel
        for sample in samples:
            logit = sample['seg_logits']['data'][1:]
            sample['seg_logits']['data'] = (
                logit if single_channel == 'logit' else torch.sigmoid(logit))
    metric = PneumothoraxMetric(**kwargs)
    with HostSyncRecorder() as syncs:
        metric.process({}, samples)
    assert syncs.total == 0, syncs.report()
    assert len(metric.results) == 4


def test_triplet_post_processing_makes_the_host_wait_for_nothing():
    samples, _, _ = realistic_samples(num=4, seed=3)
    triplet = dict(type='TripletThresholdPostProcessor', top_threshold=0.75,
                   min_area=20, bottom_threshold=0.3)
    metric = PneumothoraxMetric(postprocess=triplet)
    with HostSyncRecorder() as syncs:
        metric.process({}, samples)
    assert syncs.total == 0, syncs.report()
    # The masks are those of the post-processor's host path.
    _, ref = evaluate(samples, postprocess=lambda prob: metric.postprocess(
        prob.numpy()))
    np.testing.assert_equal(metric.evaluate(4), ref)


class _LaggingReadback(AsyncReadback):
    """A device whose copies arrive only when waited for: on a GPU that
    is still busy with later batches, ``poll`` finds nothing."""

    def poll(self):
        return []


def test_results_arrive_late_in_order_and_complete():
    samples, _, _ = realistic_samples(num=8, seed=5)
    batches = [samples[i:i + 2] for i in range(0, 8, 2)]
    lagging = PneumothoraxMetric()
    lagging._readback = _LaggingReadback()
    lagging.process({}, batches[0])
    lagging.process({}, batches[1])
    assert lagging._results == []  # both batches still on their way
    lagging.process({}, batches[2])
    # At most two batches wait: the host takes in the oldest.
    assert len(lagging._results) == 2 and len(lagging._readback) == 2
    lagging.process({}, batches[3])
    assert len(lagging.results) == 8  # reading them takes in the rest
    assert len(lagging._readback) == 0
    # evaluate() takes in what is still on its way: the same numbers.
    fresh = PneumothoraxMetric()
    fresh._readback = _LaggingReadback()
    for batch in batches:
        fresh.process({}, batch)
    assert len(fresh._readback) == 2
    assert fresh.evaluate(8) == evaluate(samples)[1]


def test_late_results_still_raise_naming_the_image():
    good = make_sample(np.zeros((4, 4)), two_channel(np.zeros((4, 4))))
    bad_gt = make_sample(np.full((4, 4), 2), two_channel(np.zeros((4, 4))),
                         name='case_17.png')
    metric = PneumothoraxMetric()
    metric._readback = _LaggingReadback()
    metric.process({}, [good, bad_gt])  # not read yet: no error
    with pytest.raises(ValueError, match='case_17.png.*0, 1 or'):
        metric.evaluate(2)


def test_an_error_discards_the_evaluation_in_progress():
    """A bad label voids the evaluation: neither the samples before it nor
    the batches still on their way may reach a later evaluation with the
    same metric (collect_results' [:size] would hide the extra ones)."""
    good = make_sample(np.zeros((4, 4)), two_channel(np.zeros((4, 4))),
                       name='good.png')
    bad = make_sample(np.full((4, 4), 2), two_channel(np.zeros((4, 4))),
                      name='case_17.png')
    metric = PneumothoraxMetric()
    metric._readback = _LaggingReadback()
    metric.process({}, [good])
    metric.process({}, [bad])
    metric.process({}, [good])  # all three still on their way
    with pytest.raises(ValueError, match='case_17.png'):
        metric.results  # takes in the batches up to the bad one
    assert metric.results == [] and len(metric._readback) == 0
    metric.process({}, [good])
    assert metric.evaluate(1)['num_images'] == 1
    # On the CPU the batch raises at once; the good sample before it in
    # the same batch is dropped as well.
    metric = PneumothoraxMetric()
    with pytest.raises(ValueError, match='case_17.png'):
        metric.process({}, [good, bad])
    assert metric.results == []


def test_new_results_and_copies():
    samples, _, _ = realistic_samples(num=4, seed=5)
    metric = PneumothoraxMetric()
    metric._readback = _LaggingReadback()
    metric.process({}, samples[:2])
    metric.process({}, samples[2:])
    # A copy holds every result: the batches on their way are taken in.
    clone = copy.deepcopy(metric)
    assert len(clone.results) == len(metric._results) == 4
    # New results drop the old ones' batches still on their way.
    metric._readback = _LaggingReadback()
    metric.process({}, samples[:2])
    metric.results = []
    assert metric.results == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('postprocess', [
    None,  # the configs' triplet, computed on the device (mask_tensor)
    dict(type='TripletThresholdPostProcessor', top_threshold=0.75,
         min_area=20, bottom_threshold=0.3)
])
def test_cuda_process_does_not_wait(postprocess):
    samples, _, _ = realistic_samples(num=4, seed=3)
    _, ref = evaluate(samples, postprocess=postprocess)
    for sample in samples:
        for key in ('seg_logits', 'gt_sem_seg'):
            sample[key]['data'] = sample[key]['data'].cuda()
    metric = PneumothoraxMetric(postprocess=postprocess)
    with HostSyncRecorder(cpu_as_device=False) as syncs:
        metric.process({}, samples[:2])
        metric.process({}, samples[2:])
    assert syncs.total == 0, syncs.report()
    np.testing.assert_equal(metric.evaluate(4), ref)


@MODELS.register_module(name='_TestKeepAbovePP', force=True)
class _KeepAbove:

    def __init__(self, thr):
        self.thr = thr

    def __call__(self, prob):
        return (prob > self.thr).cpu().numpy()


def test_build_from_registry_with_postprocess_and_prefix():
    samples, _, _ = realistic_samples(num=4, seed=9)
    metric = METRICS.build(
        dict(
            type='PneumothoraxMetric',
            postprocess=dict(type='_TestKeepAbovePP', thr=0.3),
            prefix='val'))
    metric.process({}, samples)
    res = metric.evaluate(len(samples))
    _, plain = evaluate(samples, threshold=0.3)
    assert res['val/dice_pp'] == pytest.approx(plain['dice'])
    assert res['val/kaggle_dice_pp'] == pytest.approx(plain['kaggle_dice'])
    assert 'val/dice' in res and 'dice' not in res
    # Without a prefix the keys are plain, as CheckpointHook(save_best=...)
    # expects.
    _, res = evaluate(samples, postprocess=lambda prob: prob > 0.3)
    assert res['dice_pp'] == pytest.approx(plain['dice'])
    assert all(isinstance(v, (int, float)) for v in res.values())


def test_padding_sample_is_dropped_and_memory_is_folded():
    samples, _, _ = realistic_samples(num=5, seed=11)
    metric = PneumothoraxMetric()
    metric.process({}, samples)
    # Only two histograms are kept however many samples were processed.
    assert sum(r['hist'] is not None for r in metric.results) == 1
    assert sum(r['hist_sum'] is not None for r in metric.results) == 1
    res = metric.evaluate(4)  # the 5th is padding, as a sampler adds it
    _, ref = evaluate(samples[:4])
    assert res == ref


def _dist_worker(rank, world_size, port, out_path):
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=world_size)
    try:
        samples, _, _ = realistic_samples(num=5, seed=13)
        # DefaultSampler without shuffle: pad to 6 with sample 0, then
        # rank r takes every world_size-th index starting at r.
        indices = (list(range(5)) + [0])[rank::world_size]
        metric = PneumothoraxMetric()
        for i in indices:  # batches of one
            metric.process({}, [samples[i]])
        res = metric.evaluate(5)
        if rank == 0:
            with open(out_path, 'wb') as f:
                pickle.dump(res, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(240, method='thread')
def test_two_process_gather_equals_single_process(tmp_path):
    out_path = str(tmp_path / 'rank0.pkl')
    # spawn, not fork: forked children can deadlock in torch's thread pool.
    mp.spawn(_dist_worker, args=(2, free_port(), out_path), nprocs=2)
    with open(out_path, 'rb') as f:
        res = pickle.load(f)
    samples, _, _ = realistic_samples(num=5, seed=13)
    _, ref = evaluate(samples)
    assert res == ref


class _RecordValIterations(Hook):
    """Records host syncs during each validation iteration (the model's
    predict step and the metric's process), not the evaluation after."""

    def __init__(self, recorder):
        self.recorder = recorder

    def before_val_iter(self, runner, batch_idx, data_batch=None):
        self.recorder.__enter__()

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        self.recorder.__exit__(None, None, None)


@pytest.mark.usefixtures('own_process_state')
def test_validation_iterations_wait_for_nothing(tmp_path, demo_root):
    """The demo config's validation: predict, then the metric with its
    triplet post-processor, without a read of the device per iteration."""
    config = write_tiny_run_config(tmp_path / 'val.py', demo_root)
    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(tmp_path / 'work')
    assert cfg.val_evaluator.postprocess  # the triplet, on the device
    runner = Runner.from_cfg(cfg)
    syncs = HostSyncRecorder()
    runner.register_hook(_RecordValIterations(syncs), priority='LOWEST')
    metrics = runner.val()
    assert syncs.total == 0, syncs.report()
    assert metrics['num_images'] > 0 and 'dice_pp' in metrics
