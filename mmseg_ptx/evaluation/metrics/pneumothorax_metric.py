"""Pneumothorax metrics: pooled and per-image Dice, a streaming PR curve.

The precision-recall curve is built from per-sample histograms of the
pneumothorax score, so evaluation memory does not grow with the pixel count.
Bins are uniform in *logit* space, where a float32 probability has roughly
uniform relative resolution at both ends of [0, 1]; see
:func:`compute_pr_curve` for the exact error bound that binning implies.
"""
from __future__ import annotations

import logging
import math
import numbers
import os
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmseg.registry import METRICS, MODELS
from mmseg_ptx.evaluation.bootstrap import bootstrap_dice_intervals
from mmseg_ptx.utils import AsyncReadback

__all__ = ['PneumothoraxMetric', 'PRCurve', 'binary_label_masks',
           'competition_dice', 'compute_pr_curve', 'logit_bin_edges']

# Probability-to-mask post-processor: (H, W) float probabilities in, an
# (H, W) binary mask (bool or 0/1, tensor or ndarray) out.
PostProcessor = Callable[[torch.Tensor], Union[torch.Tensor, np.ndarray]]


@dataclass
class PRCurve:
    """A precision-recall curve in scikit-learn's layout.

    Points are ordered by increasing threshold, as
    ``sklearn.metrics.precision_recall_curve`` returns them: ``precision``
    and ``recall`` have one more element than ``thresholds``, the final
    point being (recall 0, precision 1). A pixel is predicted positive at
    ``thresholds[i]`` when its score is ``>= thresholds[i]``.

    Attributes:
        precision (np.ndarray): Precision at each threshold, then 1.
        recall (np.ndarray): Recall at each threshold, then 0.
        thresholds (np.ndarray): Probability thresholds, increasing.
        ap (float): Average precision, sum of (R_n - R_{n-1}) P_n.
        pr_auc (float): Trapezoidal area under the curve (recall on x).
        best_f1 (float): Largest F1 over the thresholds.
        best_threshold (float): Threshold giving ``best_f1``.
        best_precision (float): Precision at ``best_threshold``.
        best_recall (float): Recall at ``best_threshold``.
        ap_error_bound (float): Upper bound on |ap - exact AP| caused by
            merging the scores of one bin into a single threshold.
        num_pos (int): Positive pixels counted.
        num_neg (int): Negative pixels counted.
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    ap: float
    pr_auc: float
    best_f1: float
    best_threshold: float
    best_precision: float
    best_recall: float
    ap_error_bound: float
    num_pos: int
    num_neg: int

    def to_dict(self, max_points: Optional[int] = None) -> dict:
        """JSON-ready dict; optionally thin the curve for plotting/storage.

        Args:
            max_points (int, optional): Keep at most about this many curve
                points (evenly spread over recall and over threshold index,
                plus both ends and the best-F1 point). The scalar fields
                always come from the full curve. Defaults to None (all).

        Returns:
            dict: Lists for the arrays, Python scalars for the rest.
        """
        keep = np.arange(len(self.thresholds))
        if max_points is not None and len(keep) > max_points:
            n = len(keep)
            half = max(max_points // 2, 2)
            by_index = np.linspace(0, n - 1, half).round().astype(np.int64)
            # recall is non-increasing along the threshold order.
            rec = self.recall[:-1]
            targets = np.linspace(rec.min(), rec.max(), half)
            by_recall = np.clip(
                n - np.searchsorted(rec[::-1], targets, side='left') - 1, 0,
                n - 1)
            best = np.flatnonzero(self.thresholds == self.best_threshold)
            keep = np.unique(np.concatenate([by_index, by_recall, best]))
        return dict(
            precision=self.precision[keep].tolist() + [1.0],
            recall=self.recall[keep].tolist() + [0.0],
            thresholds=self.thresholds[keep].tolist(),
            ap=self.ap,
            pr_auc=self.pr_auc,
            best_f1=self.best_f1,
            best_threshold=self.best_threshold,
            best_precision=self.best_precision,
            best_recall=self.best_recall,
            ap_error_bound=self.ap_error_bound,
            num_pos=self.num_pos,
            num_neg=self.num_neg)


def _label_masks(gt: torch.Tensor, ignore_index: int
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The valid, pneumothorax and invalid (neither 0, 1 nor ignored)
    pixels of a ground truth, without reading anything back."""
    valid = gt != ignore_index
    pos = gt == 1
    return valid, pos, valid & ~pos & (gt != 0)


def competition_dice(inter: Union[int, np.ndarray],
                     pred: Union[int, np.ndarray],
                     gt: Union[int, np.ndarray]) -> np.ndarray:
    """Per-image Dice with the competition's rule: an image whose ground
    truth and prediction are both empty scores 1.

    Args:
        inter (int | np.ndarray): Pixels in both masks, per image.
        pred (int | np.ndarray): Predicted pixels, per image.
        gt (int | np.ndarray): Ground-truth pixels, per image.

    Returns:
        np.ndarray: float64 Dice of each image (a 0-d array for scalars).
    """
    inter, total = np.asarray(inter), np.asarray(pred) + np.asarray(gt)
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)


def binary_label_masks(gt: torch.Tensor, ignore_index: int,
                       name: Optional[str] = None
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The valid and the pneumothorax pixels of a 0/1 ground truth.

    Args:
        gt (torch.Tensor): Labels 0, 1 or ``ignore_index``.
        ignore_index (int): The label of pixels left out.
        name (str, optional): The image, for the error message.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``gt != ignore_index`` and
        ``gt == 1``.

    Raises:
        ValueError: Another label value is found.
    """
    valid, pos, invalid = _label_masks(gt, ignore_index)
    if invalid.any():
        bad = torch.unique(gt[valid]).tolist()[:10]
        where = f'{name}: ' if name else ''
        raise ValueError(f'{where}ground truth (gt_sem_seg) values must be '
                         f'0, 1 or ignore_index={ignore_index}, found {bad}')
    return valid, pos


def logit_bin_edges(num_bins: int,
                    logit_range: Tuple[float, float]) -> np.ndarray:
    """Probability-space edges of bins that are uniform in logit space.

    Args:
        num_bins (int): Number of bins.
        logit_range (tuple[float, float]): Logits below/above this range go
            to the first/last bin.

    Returns:
        np.ndarray: ``num_bins + 1`` increasing float64 edges; bin ``k``
        holds scores in ``[edges[k], edges[k + 1])``. The outer edges are
        0 and 1 because the end bins are open-ended.
    """
    lo, hi = logit_range
    logits = np.linspace(lo, hi, num_bins + 1)
    edges = 1.0 / (1.0 + np.exp(-logits))
    edges[0], edges[-1] = 0.0, 1.0
    return edges


def compute_pr_curve(pos_hist: np.ndarray, neg_hist: np.ndarray,
                     bin_edges: np.ndarray) -> PRCurve:
    """Precision-recall curve, AP and best F1 from score histograms.

    Every bin is one threshold (its lower edge), as scikit-learn treats
    identical scores as one threshold. Within a bin the true ordering of
    positives and negatives is lost; for a bin with ``p`` positives and
    ``n`` negatives below ``T`` true and ``F`` false positives, the exact
    precision of each of its positives, the binned one and scikit-learn's
    (whatever ties it has) all lie in
    ``[(T + 1) / (T + F + 1 + n), (T + p) / (T + F + p)]``. Summing the
    width of that interval weighted by ``p / num_pos`` gives
    ``ap_error_bound``, a guaranteed bound on the AP error.

    Args:
        pos_hist (np.ndarray): Counts of positive pixels per bin.
        neg_hist (np.ndarray): Counts of negative pixels per bin.
        bin_edges (np.ndarray): ``len(pos_hist) + 1`` increasing edges in
            probability space, e.g. from :func:`logit_bin_edges`.

    Returns:
        PRCurve: The curve and its summary numbers. Without any positive
        pixel the summary numbers are NaN.
    """
    pos_hist = np.asarray(pos_hist, dtype=np.int64)
    neg_hist = np.asarray(neg_hist, dtype=np.int64)
    if pos_hist.shape != neg_hist.shape or pos_hist.ndim != 1:
        raise ValueError('pos_hist and neg_hist must be 1-D and of equal '
                         f'shape, got {pos_hist.shape} and {neg_hist.shape}')
    if len(bin_edges) != len(pos_hist) + 1:
        raise ValueError(f'Expected {len(pos_hist) + 1} bin edges, got '
                         f'{len(bin_edges)}')
    nonempty = np.flatnonzero(pos_hist + neg_hist)
    # Walk the non-empty bins from the highest score down.
    order = nonempty[::-1]
    pos, neg = pos_hist[order], neg_hist[order]
    tp = np.cumsum(pos)
    fp = np.cumsum(neg)
    num_pos, num_neg = int(pos_hist.sum()), int(neg_hist.sum())
    thresholds = np.asarray(bin_edges, dtype=np.float64)[order]

    precision = np.divide(tp, tp + fp, out=np.zeros(len(tp)),
                          where=(tp + fp) > 0)
    if num_pos == 0:
        nan = float('nan')
        recall = np.ones(len(tp))
        ap = pr_auc = best_f1 = best_thr = best_p = best_r = bound = nan
    else:
        recall = tp / num_pos
        prev_recall = np.concatenate(([0.0], recall[:-1]))
        ap = float(np.sum((recall - prev_recall) * precision))
        # Trapezoids from the (recall 0, precision 1) end point on, like
        # sklearn.metrics.auc(recall, precision).
        full_r = np.concatenate(([0.0], recall))
        full_p = np.concatenate(([1.0], precision))
        pr_auc = float(np.sum(np.diff(full_r) * (full_p[1:] + full_p[:-1]))
                       / 2)
        # 2PR / (P + R) from the counts: one rounding, so equal F1s are
        # equal floats, and the first maximum is the highest threshold of
        # those with the best F1.
        f1 = 2 * tp / (tp + fp + num_pos)
        best = int(np.argmax(f1))
        best_f1, best_thr = float(f1[best]), float(thresholds[best])
        best_p, best_r = float(precision[best]), float(recall[best])
        t_before, f_before = tp - pos, fp - neg
        upper = (t_before + pos) / np.maximum(t_before + f_before + pos, 1)
        lower = (t_before + 1) / (t_before + f_before + 1 + neg)
        bound = float(np.sum(np.where(pos > 0, pos * (upper - lower), 0.0))
                      / num_pos)
    return PRCurve(
        precision=np.concatenate((precision[::-1], [1.0])),
        recall=np.concatenate((recall[::-1], [0.0])),
        thresholds=thresholds[::-1],
        ap=ap,
        pr_auc=pr_auc,
        best_f1=best_f1,
        best_threshold=best_thr,
        best_precision=best_p,
        best_recall=best_r,
        ap_error_bound=bound,
        num_pos=num_pos,
        num_neg=num_neg)


@METRICS.register_module()
class PneumothoraxMetric(BaseMetric):
    """Pixel Dice/IoU, competition Dice and a streaming PR curve.

    Scores come from ``seg_logits`` (the segmentor's output at the original
    image size): softmax probability of channel 1 for a multi-channel head;
    for a 1-channel head, MMSeg's ``EncoderDecoder.postprocess_result``
    already applies the sigmoid, so by default the channel is read as a
    probability (``single_channel='probability'``); use ``'logit'`` for
    models that store raw logits.

    Reported keys:

    - ``dice``, ``iou``: pneumothorax Dice/IoU pooled over every pixel of the
      set, prediction = probability > ``threshold``.
    - ``kaggle_dice``: mean per-image Dice with the competition rule (empty
      ground truth and empty prediction score 1); ``kaggle_dice_pos`` /
      ``kaggle_dice_neg`` restrict the mean to images with / without
      pneumothorax.
    - ``image_sensitivity``, ``image_specificity``, ``image_accuracy``:
      image-level detection, an image being predicted positive when any of
      its pixels is.
    - ``ap``, ``pr_auc``, ``best_f1``, ``best_threshold``, ``precision``,
      ``recall``: pixel PR analysis over all evaluated pixels
      (see :func:`compute_pr_curve`); ``ap_error_bound`` bounds the binning
      error of ``ap``.
    - ``num_pixels``, ``num_pos_pixels``, ``num_neg_pixels``, ``num_images``,
      ``num_pos_images``.
    - ``dice_ci_low``, ``dice_ci_high``, ``kaggle_dice_ci_low``,
      ``kaggle_dice_ci_high``: ``confidence`` intervals of ``dice`` and
      ``kaggle_dice``, percentile bootstrap over the images
      (:func:`~mmseg_ptx.evaluation.bootstrap.bootstrap_dice_intervals`,
      ``bootstrap_samples`` resamples, seeded: the same predictions give
      the same intervals).
    - With ``postprocess``: ``dice_pp``, ``iou_pp``, ``kaggle_dice_pp``,
      ``kaggle_dice_pos_pp``, ``kaggle_dice_neg_pp``, the ``image_*_pp``
      numbers and the intervals (``dice_ci_low_pp``, ...), computed on the
      post-processed masks.

    The last curve is kept in :attr:`last_curve` (on the main process) for
    :class:`~mmseg_ptx.engine.hooks.PRCurveHook`.

    Args:
        threshold (float): Probability above which a pixel is predicted
            pneumothorax for the Dice/IoU numbers. 0.5 reproduces the argmax
            of a 2-channel head. A 1-channel (sigmoid) head predicts with
            its own ``threshold`` (mmseg's default 0.3): set this one to
            the same to score the masks the model writes. Defaults to 0.5.
        num_bins (int): Score histogram bins, uniform in logit over
            ``logit_range``. With the default 65536 bins over (-20, 20) a
            bin spans 6.1e-4 in logit, i.e. a 0.06% relative change of the
            probability (or of 1 - probability); the AP error is well under
            1e-4 on realistic scores and is bounded by ``ap_error_bound``.
            Defaults to 65536.
        logit_range (tuple[float, float]): Logit range of the bins; scores
            outside it fall into the end bins. +-20 means probabilities
            2e-9 and 1 - 2e-9; float32 probabilities already round to 1
            above a logit of 16.6. Defaults to (-20.0, 20.0).
        ignore_index (int): Ground-truth value excluded from every number.
            The post-processor still sees the whole map, as at inference,
            where nothing is ignored: its decision to empty an image counts
            ignored pixels too (as ``tools/tune_postprocess.py``'s search
            does). Defaults to 255.
        single_channel (str): How to read a 1-channel ``seg_logits``:
            ``'probability'`` (MMSeg's segmentors store the sigmoid) or
            ``'logit'``. Defaults to 'probability'.
        postprocess (dict | callable, optional): Maps an (H, W) probability
            tensor to an (H, W) binary mask; a dict is built with
            ``mmseg.registry.MODELS``. One with a ``mask_tensor`` method
            (:class:`~mmseg_ptx.models.TripletThresholdPostProcessor`) is
            asked for the mask as a tensor on the scores' device, so
            that the host need not wait for it. Defaults to None.
        collect_device (str): Device used to gather results across ranks,
            'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names, e.g. 'val'
            gives 'val/dice'. Defaults to None (plain names, so
            ``save_best='dice'`` works).
        output_dir (str, optional): If given, each evaluation writes the
            exact summed histograms to ``<output_dir>/pr_hist.npz``
            (``pos_hist``, ``neg_hist``, ``bin_edges``; feed them to
            :func:`compute_pr_curve`). Plots and per-epoch curves are
            :class:`~mmseg_ptx.engine.hooks.PRCurveHook`'s job.
            Defaults to None.
        bootstrap_samples (int): Resamples of the images for the Dice
            intervals; 0 leaves the intervals out. Defaults to 1000.
        confidence (float): The intervals' coverage. Defaults to 0.95.
    """

    def __init__(self,
                 threshold: float = 0.5,
                 num_bins: int = 65536,
                 logit_range: Tuple[float, float] = (-20.0, 20.0),
                 ignore_index: int = 255,
                 single_channel: str = 'probability',
                 postprocess: Optional[Union[dict, PostProcessor]] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 output_dir: Optional[str] = None,
                 bootstrap_samples: int = 1000,
                 confidence: float = 0.95) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if (isinstance(bootstrap_samples, bool)
                or not isinstance(bootstrap_samples, numbers.Integral)
                or bootstrap_samples < 0):
            raise ValueError('bootstrap_samples must be an integer >= 0, got '
                             f'{bootstrap_samples!r}')
        if not 0.0 < confidence < 1.0:
            raise ValueError(
                f'confidence must be in (0, 1), got {confidence}')
        if not 0.0 < threshold < 1.0:
            raise ValueError(f'threshold must be in (0, 1), got {threshold}')
        # process() builds bin codes up to 2 * num_bins in float32, exact
        # only below 2**24.
        if not 2 <= num_bins <= 2**22 or num_bins != int(num_bins):
            raise ValueError(
                f'num_bins must be an integer in [2, 2**22], got {num_bins}')
        lo, hi = logit_range
        # An infinite width would put every pixel in one bin, or give NaN
        # bin codes.
        if not (math.isfinite(hi - lo) and lo < hi):
            raise ValueError(f'logit_range must be two finite, increasing '
                             f'logits, got {logit_range}')
        if single_channel not in ('probability', 'logit'):
            raise ValueError("single_channel must be 'probability' or "
                             f"'logit', got {single_channel!r}")
        # Now, not after the first validation's predictions.
        if output_dir is not None and osp.exists(output_dir) \
                and not osp.isdir(output_dir):
            raise ValueError(f'output_dir {output_dir} is a file; give a '
                             'folder')
        if isinstance(postprocess, dict):
            postprocess = MODELS.build(postprocess)
        if postprocess is not None and not callable(postprocess):
            raise TypeError('postprocess must be a config dict or a '
                            f'callable, got {type(postprocess).__name__}')
        self.threshold = float(threshold)
        self.num_bins = int(num_bins)
        self.logit_range = (float(lo), float(hi))
        self.ignore_index = ignore_index
        self.single_channel = single_channel
        self.postprocess = postprocess
        self.output_dir = output_dir
        self.bootstrap_samples = int(bootstrap_samples)
        self.confidence = float(confidence)
        self.bin_edges = logit_bin_edges(self.num_bins, self.logit_range)
        self.last_curve: Optional[PRCurve] = None

    @property
    def results(self) -> List[dict]:
        """This rank's per-sample results (``BaseMetric.results``).

        Reading them first takes in every batch whose counts are still on
        their way from the device (see :meth:`process`), so they are
        complete whoever reads them: ``evaluate``, or a caller of
        :meth:`compute_metrics`.
        """
        self._take_arrived(keep=0)
        return self._results

    @results.setter
    def results(self, value: List[dict]) -> None:
        # New results (BaseMetric.__init__ sets them): batches still on
        # their way belong to the old ones.
        self._results = value
        self._readback = AsyncReadback()

    def __getstate__(self) -> dict:
        # A copy gets every result: AsyncReadback's copies start empty.
        self._take_arrived(keep=0)
        return self.__dict__.copy()

    def _score_logit(self, seg_logits: torch.Tensor
                     ) -> Tuple[torch.Tensor, Optional[torch.Tensor],
                                torch.Tensor]:
        """(C, H, W) head output -> (H, W) logit of the pneumothorax class;
        its (H, W) probability where the head gives one (a 1-channel
        probability; None otherwise); and the number of values outside
        [0, 1] of such a probability (0 otherwise). All on the head
        output's device.

        The probability is kept because ``logit`` and ``sigmoid`` round:
        ``sigmoid(logit(p))`` can land one float step above ``p``, and
        ``logit(p) > logit(threshold)`` can disagree with ``p >
        threshold``, so thresholds would cut otherwise than in
        TripletThresholdPostProcessor and tools/infer.py.
        """
        x = seg_logits.float()
        num_channels = x.shape[0]
        outside = x.new_zeros((), dtype=torch.long)
        if num_channels == 1:
            if self.single_channel == 'logit':
                return x[0], None, outside
            outside = ((x < 0) | (x > 1)).sum()
            return torch.logit(x[0]), x[0], outside
        if num_channels == 2:
            return x[1] - x[0], None, outside
        # softmax_1 = sigmoid(x_1 - logsumexp(others)) for any C.
        others = torch.cat((x[:1], x[2:]))
        return x[1] - torch.logsumexp(others, dim=0), None, outside

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Histogram the scores and count overlaps of each sample.

        Every sample's histogram and counts are computed on the samples'
        device and read back together, in one copy per batch, which the
        host does not wait for (:class:`~mmseg_ptx.utils.AsyncReadback`):
        on a GPU a batch's results are taken in by a later call, once its
        copy has arrived (at most two batches stay on their way), or when
        :attr:`results` is read, as ``evaluate`` does. A wait per batch
        would leave the GPU idle while the host fetches and queues the next
        one. On the CPU they are taken in at once. Invalid labels and NaN
        scores are found in that copy and reported with the sample's name,
        on a GPU in a later call. An error discards the evaluation in
        progress (the results so far and the batches on their way), so
        that the next one with this metric starts clean.

        Each sample's result holds its (2, num_bins) histogram until the
        next sample arrives, when it is folded into a running sum kept in
        this rank's first result. Padding samples that a distributed
        sampler appends are always a rank's last sample, and
        ``collect_results`` drops them by position, so the unfolded last
        histogram goes with them; memory stays at two histograms per rank.

        Args:
            data_batch (dict): A batch from the dataloader (unused).
            data_samples (Sequence[dict]): Model outputs with ``seg_logits``
                and ``gt_sem_seg``.
        """
        try:
            self._process(data_samples)
        except BaseException:
            self.results = []
            raise

    def _process(self, data_samples: Sequence[dict]) -> None:
        lo, hi = self.logit_range
        num_bins = self.num_bins
        scale = num_bins / (hi - lo)
        thr_logit = math.log(self.threshold / (1.0 - self.threshold))
        names, outputs, labels, rows = [], [], [], []
        for data_sample in data_samples:
            name = data_sample.get('img_path', 'sample')
            if 'seg_logits' not in data_sample:
                raise KeyError(
                    f'{name}: data sample has no seg_logits; '
                    'PneumothoraxMetric needs the segmentor output')
            seg_logits = data_sample['seg_logits']['data']
            gt = data_sample['gt_sem_seg']['data'].squeeze(0).to(
                seg_logits.device)
            if seg_logits.dim() != 3 or gt.shape != seg_logits.shape[1:]:
                raise ValueError(
                    f'{name}: seg_logits shape {tuple(seg_logits.shape)} '
                    f'does not match gt_sem_seg {tuple(gt.shape)}: the '
                    'predictions come back at the original size, so the '
                    'val/test pipeline must load the labels after its '
                    'Resize (as this repository\'s configs do)')
            valid, gt_pos, invalid = _label_masks(gt, self.ignore_index)
            logit, prob, outside = self._score_logit(seg_logits)
            nan = torch.isnan(logit)

            # One scatter-add (a bincount would read its maximum back),
            # no boolean indexing (slow): negatives go to [0, B), positives
            # to [B, 2B), ignored pixels (and NaN scores, reported below)
            # to 2B.
            code = ((logit - lo) * scale).floor_().clamp_(0, num_bins - 1)
            code += gt_pos * num_bins
            code.masked_fill_(~valid | nan, 2 * num_bins)
            code = code.reshape(-1).long()
            hist = torch.zeros(
                2 * num_bins + 1, dtype=torch.long,
                device=code.device).scatter_add_(0, code,
                                                 torch.ones_like(code))

            pred = (logit > thr_logit if prob is None else
                    prob > self.threshold) & valid
            counts = [invalid.sum(), outside,
                      nan.sum(), (pred & gt_pos).sum(), pred.sum()]
            if self.postprocess is not None:
                if prob is None:
                    prob = torch.sigmoid(logit)
                mask_tensor = getattr(self.postprocess, 'mask_tensor', None)
                if mask_tensor is not None:
                    mask = mask_tensor(prob)
                else:
                    mask = torch.as_tensor(self.postprocess(prob),
                                           device=prob.device)
                if mask.shape != prob.shape:
                    raise ValueError(
                        f'{name}: postprocess returned shape '
                        f'{tuple(mask.shape)}, expected {tuple(prob.shape)}')
                mask = mask.bool() & valid
                counts += [(mask & gt_pos).sum(), mask.sum()]
            rows.append(torch.cat([torch.stack(counts),
                                   hist[:2 * num_bins]]))
            names.append(name)
            outputs.append(seg_logits)
            labels.append(gt)
        if not rows:
            return
        # The batch's outputs and labels stay referenced until its counts
        # arrive: only an error message needs them.
        self._readback.push(torch.stack(rows), (names, outputs, labels))
        self._take_arrived(keep=2)

    def _take_arrived(self, keep: int) -> None:
        """Take in the batches on their way from the device: all but the
        newest ``keep``, waiting for them, then any others that have
        arrived. A batch that raises discards all results."""
        readback = self._readback
        for rows, (names, outputs, labels) in (readback.drain(keep=keep) +
                                               readback.poll()):
            try:
                self._take_batch(rows.numpy(), names, outputs, labels)
            except BaseException:
                # The evaluation in progress is void: a later one must not
                # get its results (collect_results' [:size] would hide them).
                self.results = []
                raise

    def _take_batch(self, rows: np.ndarray, names: List[str],
                    outputs: List[torch.Tensor],
                    labels: List[torch.Tensor]) -> None:
        """One batch's (samples, counts + histogram) rows, on the host:
        raise for its bad samples, else add their results."""
        num_bins = self.num_bins
        num_counts = rows.shape[1] - 2 * num_bins
        results = self._results
        for name, seg_logits, gt, row in zip(names, outputs, labels, rows):
            bad, outside, nan, inter, pred = (int(v) for v in row[:5])
            if bad:
                binary_label_masks(gt, self.ignore_index, name)  # raises
            if outside:
                low, high = float(seg_logits.min()), float(seg_logits.max())
                raise ValueError(
                    f'{name}: 1-channel seg_logits has values outside '
                    f'[0, 1] ({low:.3g}..{high:.3g}); they look like '
                    "logits: set single_channel='logit'")
            if nan:
                raise ValueError(f'{name}: seg_logits contains NaN')
            hist = row[num_counts:].reshape(2, num_bins).copy()
            num_gt = int(hist[1].sum())
            result = dict(
                stats=[inter, pred, num_gt],
                num_pixels=int(hist.sum()),
                hist=hist,
                hist_sum=None)
            if self.postprocess is not None:
                result['stats_pp'] = [int(row[5]), int(row[6]), num_gt]

            if results:
                last = results[-1]
                first = results[0]
                if first['hist_sum'] is None:
                    first['hist_sum'] = np.zeros_like(last['hist'])
                first['hist_sum'] += last['hist']
                last['hist'] = None
            results.append(result)

    def _mask_metrics(self, stats: np.ndarray,
                      suffix: str = '') -> Dict[str, float]:
        """Pooled, per-image and image-level numbers from (N, 3) counts,
        with the intervals of the Dice scores."""
        inter, pred, gt = stats[:, 0], stats[:, 1], stats[:, 2]
        nan = float('nan')
        s_inter, s_pred, s_gt = int(inter.sum()), int(pred.sum()), int(
            gt.sum())
        s_union = s_pred + s_gt - s_inter
        per_image = competition_dice(inter, pred, gt)
        pos_img, pred_img = gt > 0, pred > 0

        def mean(values: np.ndarray) -> float:
            return float(values.mean()) if values.size else nan

        out = dict(
            dice=2 * s_inter / (s_pred + s_gt) if s_pred + s_gt else nan,
            iou=s_inter / s_union if s_union else nan,
            kaggle_dice=mean(per_image),
            kaggle_dice_pos=mean(per_image[pos_img]),
            kaggle_dice_neg=mean(per_image[~pos_img]),
            image_sensitivity=mean(pred_img[pos_img].astype(np.float64)),
            image_specificity=mean(~pred_img[~pos_img]),
            image_accuracy=mean(pred_img == pos_img))
        if self.bootstrap_samples:
            intervals = bootstrap_dice_intervals(
                inter, pred, gt, per_image, self.bootstrap_samples,
                self.confidence)
            for name, (low, high) in intervals.items():
                out.update({f'{name}_ci_low': low, f'{name}_ci_high': high})
        return {k + suffix: float(v) for k, v in out.items()}

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Sum the histograms and counts and derive all numbers.

        Args:
            results (list[dict]): Per-sample results from :meth:`process`,
                gathered from all ranks.

        Returns:
            dict[str, float]: See the class docstring for the keys.
        """
        hist = np.zeros((2, self.num_bins), dtype=np.int64)
        for res in results:
            for key in ('hist', 'hist_sum'):
                if res[key] is not None:
                    hist += res[key]
        curve = compute_pr_curve(hist[1], hist[0], self.bin_edges)
        self.last_curve = curve
        if self.output_dir is not None:
            os.makedirs(self.output_dir, exist_ok=True)
            np.savez_compressed(
                osp.join(self.output_dir, 'pr_hist.npz'),
                pos_hist=hist[1], neg_hist=hist[0], bin_edges=self.bin_edges)
        if curve.num_pos == 0:
            print_log('PneumothoraxMetric: no positive pixel in the '
                      'evaluated set; PR numbers are NaN.',
                      logger='current', level=logging.WARNING)

        stats = np.array([res['stats'] for res in results],
                         dtype=np.int64).reshape(-1, 3)
        metrics = self._mask_metrics(stats)
        metrics.update(
            ap=curve.ap,
            pr_auc=curve.pr_auc,
            best_f1=curve.best_f1,
            best_threshold=curve.best_threshold,
            precision=curve.best_precision,
            recall=curve.best_recall,
            ap_error_bound=curve.ap_error_bound,
            num_pixels=int(sum(res['num_pixels'] for res in results)),
            num_pos_pixels=curve.num_pos,
            num_neg_pixels=curve.num_neg,
            num_images=len(results),
            num_pos_images=int((stats[:, 2] > 0).sum()))
        if self.postprocess is not None:
            stats_pp = np.array([res['stats_pp'] for res in results],
                                dtype=np.int64).reshape(-1, 3)
            metrics.update(self._mask_metrics(stats_pp, suffix='_pp'))
        return metrics
