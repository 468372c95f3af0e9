"""PERFORMANCE_SUMMARY.md from a work dir: numbers, curves and pictures.

Reads what a training run leaves in its work dir -- the dumped config,
``metrics_history.json`` and ``pr_curves/`` (PRCurveHook), the best
checkpoint -- plus the dataset's ``split_meta.json`` and the statistics JSON
of ``tools/dataset_stats.py``, and writes the reference report's sections.
Every number states its protocol. Nothing from DICOM headers is used.
"""
from __future__ import annotations

import copy
import glob
import logging
import math
import os
import os.path as osp
import re
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.config import Config
from mmengine.logging import print_log

from ..apis.cli import config_entries, config_type_name, loader_dataset
from .figures import plot_detailed_metrics, save_prediction_panel
from .history import (PROGRESS_UNITS, curve_tag, progress_key,
                      train_head_key)
from .json_io import read_json
from .plots import plot_pr_curve

__all__ = [
    'write_performance_summary', 'render_predictions', 'NoValidationRecords',
    'InvalidMetricsHistory', 'REFERENCE_RESULTS'
]

#: The run this project reproduces (docs/reference_run.md).
REFERENCE_RESULTS = dict(dice=0.6095, iou=0.4648, ap=0.7030)
#: Its split (split_meta.json's names): 15 % of the negatives kept, then
#: a fifth of each class to validation.
REFERENCE_SPLIT = dict(neg_keep_ratio=0.15, val_ratio=0.2,
                       order='balance_first')


def _newest(paths: Sequence[str]) -> Optional[str]:
    """The last modified of ``paths``; None for none."""
    return max(paths, key=osp.getmtime) if paths else None


def _training_log(work_dir: str) -> Optional[str]:
    """The newest run log of a training run in ``work_dir``.

    ``tools/test.py`` writes its own logs (and config) into the training's
    work dir by default; only training logs hold ``Epoch(train)`` or
    ``Iter(train)`` lines.
    """
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.log')),
                  key=osp.getmtime, reverse=True)
    for log in logs:
        with open(log, errors='replace') as f:
            if any('Epoch(train)' in line or 'Iter(train)' in line
                   for line in f):
                return log
    return None


#: The name tools/test.py's runs dump their configs under.
_TIMESTAMP_PY = re.compile(r'\d{8}_\d{6}\.py')


def _find_config(work_dir: str, log: Optional[str]) -> Optional[str]:
    """The training run's config: the copy its visualizer saved beside its
    log (``<timestamp>/vis_data/config.py``), else the newest config
    mmengine dumped as ``<work_dir>/<name>.py`` (not a ``tools/test.py``
    run's ``<timestamp>.py``)."""
    if log is not None:
        saved = osp.join(osp.dirname(log), 'vis_data', 'config.py')
        if osp.isfile(saved):
            return saved
    return _newest([
        path for path in glob.glob(osp.join(work_dir, '*.py'))
        if not _TIMESTAMP_PY.fullmatch(osp.basename(path))
    ])


def _history_dir(cfg: Optional[Config], work_dir: str) -> str:
    """Where the run's PRCurveHook wrote ``metrics_history.json`` and
    ``pr_curves/``: the ``out_dir`` its config gives it, else
    ``work_dir``. A relative ``out_dir`` is relative to the training's
    working directory: where the config's ``work_dir`` is relative too,
    that directory is ``work_dir`` less the config's, so the report finds
    it from any directory."""
    for hook in (cfg.get('custom_hooks') if cfg is not None else None) or []:
        if config_type_name(hook) == 'PRCurveHook' and hook.get('out_dir'):
            out_dir = hook['out_dir']
            run_dir = cfg.get('work_dir')
            if (osp.isabs(out_dir) or osp.isdir(out_dir) or not run_dir
                    or osp.isabs(run_dir)):
                return out_dir
            here, rel = osp.abspath(work_dir), osp.normpath(run_dir)
            if here.endswith(os.sep + rel):
                return osp.join(here[:-len(rel)], out_dir)
            return out_dir
    return work_dir


def _find_best_checkpoint(work_dir: str, best: dict,
                          key: str) -> Optional[str]:
    """The checkpoint of the best validation: the one CheckpointHook kept
    for it (``best_<metric>_<epoch|iter>_<N>.pth``), else the regular
    checkpoint of that step (``<epoch|iter>_<N>.pth``, a run without
    ``save_best``); failing both, with a warning, the newest best one (a
    resumed run may have left one of its earlier attempt), else the last
    checkpoint. Files that cannot be checkpoints (a save cut short by a
    killed job, say) are passed over, with a warning."""
    step = f'{key}_{best[key]}.pth'
    exact = (glob.glob(osp.join(work_dir, f'best_*_{step}')) +
             glob.glob(osp.join(work_dir, step)))
    readable = [c for c in exact if _readable(c)]
    if readable:
        return readable[0]
    bests = sorted(glob.glob(osp.join(work_dir, 'best_*.pth')),
                   key=osp.getmtime, reverse=True)
    fallback = next((c for c in bests + [_last_checkpoint(work_dir)]
                     if c is not None and c not in exact and _readable(c)),
                    None)
    if fallback is not None:
        print_log(
            f'No checkpoint of the best validation ({key} {best[key]}) in '
            f'{work_dir}; pictures from '
            f'{_checkpoint_name(fallback, work_dir)}',
            logger='current', level=logging.WARNING)
    return fallback


def _checkpoint_name(checkpoint: str, work_dir: str) -> str:
    """How the report names a checkpoint: its file name in ``work_dir``,
    else its whole path (another run's folder may hold another model)."""
    inside = osp.dirname(osp.realpath(checkpoint)) == osp.realpath(work_dir)
    return osp.basename(checkpoint) if inside else checkpoint


def _readable(checkpoint: str) -> bool:
    """Whether ``checkpoint`` can be a checkpoint by its first and last
    bytes (:func:`~mmseg_ptx.models.utils.check_checkpoint_file`); if
    not, a warning says why."""
    from ..models.utils import CheckpointError, check_checkpoint_file
    try:
        check_checkpoint_file(checkpoint)
    except CheckpointError as err:
        print_log(f'{err}; not used for the pictures', logger='current',
                  level=logging.WARNING)
        return False
    return True


def _last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint mmengine's ``last_checkpoint`` file names: the file
    of that name in ``work_dir`` where there is one (the path written
    there is the training's: relative to its working directory, or in a
    folder the work dir was copied from), else that path (a
    ``CheckpointHook`` with an ``out_dir``)."""
    last = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(last):
        return None
    with open(last) as f:
        path = f.read().strip()
    for candidate in (osp.join(work_dir, osp.basename(path)), path):
        if path and osp.isfile(candidate):
            return candidate
    return None


#: How the report names PneumothoraxMetric's keys.
_METRIC_NAMES = {
    'dice': 'pooled Dice',
    'iou': 'pooled IoU',
    'kaggle_dice': 'competition Dice',
    'ap': 'pixel AP',
    'dice_pp': 'post-processed pooled Dice',
    'iou_pp': 'post-processed pooled IoU',
    'kaggle_dice_pp': 'post-processed competition Dice',
}


def _best_metric_rule(cfg: Optional[Config]) -> Tuple[str, str]:
    """The metric and rule the run's ``CheckpointHook`` kept its best
    checkpoint by (``save_best``; the first of a list): the report's best
    validation is that one, so that its numbers and pictures are of one
    epoch. Pooled ``'dice'``, greater, where none is set (``'auto'`` is
    PneumothoraxMetric's first key, ``'dice'``)."""
    hooks = cfg.get('default_hooks') if cfg is not None else None
    hook = (hooks or {}).get('checkpoint') or {}
    metric, rule = hook.get('save_best'), hook.get('rule')
    if isinstance(metric, (list, tuple)):
        metric = metric[0] if metric else None
        rule = rule[0] if isinstance(rule, (list, tuple)) and rule else rule
    if not isinstance(metric, str) or metric == 'auto':
        return 'dice', 'greater'
    if rule not in ('greater', 'less'):
        # Inferred from the name by mmengine's own rules.
        from mmengine.hooks import CheckpointHook
        try:
            rule = CheckpointHook(
                save_best=metric, greater_keys=hook.get('greater_keys'),
                less_keys=hook.get('less_keys')).rules[0]
        except ValueError:  # mmengine refuses such a name; a score, then
            rule = 'greater'
    return metric, rule


def _best_validation(val: List[dict], metric: str,
                     rule: str) -> Tuple[dict, str]:
    """The validation record best by ``metric`` (the first of ties, as
    mmengine's CheckpointHook keeps the first), and the metric; by pooled
    Dice where no record has ``metric`` (a prefixed name, say)."""
    ranked = [h for h in val if isinstance(h.get(metric), (int, float))
              and math.isfinite(h[metric])]
    if not ranked:
        print_log(
            f'No validation record has the metric {metric!r} that '
            "save_best names: the best validation is the one of the best "
            "pooled 'dice'", logger='current', level=logging.WARNING)
        metric, rule, ranked = 'dice', 'greater', val
    sign = -1 if rule == 'less' else 1
    return max(ranked, key=lambda h: sign * h[metric]), metric


def _world_size(log: Optional[str]) -> Optional[int]:
    """GPU/process count from the training log (mmengine's env dump)."""
    if log is None:
        return None
    with open(log, errors='replace') as f:
        head = f.read(200_000)
    match = re.search(r'GPU number:\s*(\d+)', head)
    if match:
        return int(match.group(1))
    match = re.search(r'Distributed training:\s*(True|False)', head)
    return 1 if match and match.group(1) == 'False' else None


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return 'n/a'
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f'{int(value):,}'
    if isinstance(value, float):
        return f'{value:.{digits}f}'
    return str(value)


def _table(rows: List[tuple], header=('Parameter', 'Value')) -> str:
    lines = [f'| {header[0]} | {header[1]} |', '|---|---|']
    lines += [f'| {k} | {_fmt(v)} |' for k, v in rows]
    return '\n'.join(lines)


def _split_dir(cfg: Optional[Config], key: str) -> Optional[str]:
    """``<data_root>/<split_dir>`` of the dataset of the loader ``key``;
    None where it names no data root."""
    ds = loader_dataset(cfg, key)
    if not ds.get('data_root'):
        return None
    return osp.join(ds['data_root'], ds.get('split_dir', 'splits'))


def _split_meta(cfg: Optional[Config]) -> dict:
    split_dir = _split_dir(cfg, 'val_dataloader')
    if split_dir is None:
        return {}
    path = osp.join(split_dir, 'split_meta.json')
    return read_json(path) if osp.isfile(path) else {}


#: Split settings that must agree between the run and a statistics file:
#: (name in tools/dataset_stats.py's JSON, in split_meta.json).
_SPLIT_SETTINGS = (('neg_keep_ratio', 'neg_keep_ratio'),
                   ('val_ratio', 'val_ratio'), ('seed', 'seed'),
                   ('split_order', 'order'))


def _configured_split_settings(cfg: Optional[Config]) -> dict:
    """The training set's split settings as in split_meta.json, from the
    config and the dataset's defaults (for a split without that file)."""
    import inspect

    from mmseg_ptx.datasets import SIIMPneumothoraxDataset
    ds = loader_dataset(cfg, 'train_dataloader')
    if config_type_name(ds, '') != 'SIIMPneumothoraxDataset':
        return {}
    params = inspect.signature(SIIMPneumothoraxDataset).parameters

    def value(name: str) -> Any:
        return ds.get(name, params[name].default)

    return dict(neg_keep_ratio=value('neg_keep_ratio'),
                val_ratio=value('val_ratio'), seed=value('split_seed'),
                order=value('split_order'))


def _stats(cfg: Optional[Config], stats_path: Optional[str],
           split: dict) -> dict:
    """tools/dataset_stats.py's JSON: explicit, else where the tool writes
    it by default (<data_root>/<split_dir>/stats.json), else
    <data_root>/stats.json. A file made for other split settings than the
    run's is left out, with a warning: its pixel counts are of another
    training split."""
    found = stats_path is None
    if found:
        from mmseg_ptx.datasets.split import STATS_FILE
        root = loader_dataset(cfg, 'train_dataloader').get('data_root')
        candidates = [
            osp.join(_split_dir(cfg, 'train_dataloader'), STATS_FILE),
            osp.join(root, STATS_FILE)
        ] if root else []
        stats_path = next((c for c in candidates if osp.isfile(c)), None)
    if not stats_path:
        return {}
    try:
        stats = read_json(stats_path)
    except ValueError as err:
        if not found:
            raise
        # Optional, unlike a file the user named: a broken one (written
        # by an interrupted older dataset_stats.py) costs the report only
        # its statistics.
        print_log(f'{err}: left out of the report (run '
                  'tools/dataset_stats.py again)', logger='current',
                  level=logging.WARNING)
        return {}
    if not isinstance(stats, dict):
        raise ValueError(
            f'{stats_path} is not the statistics JSON tools/dataset_stats.py '
            f'writes (an object): it holds a {type(stats).__name__}')
    theirs = stats.get('settings')
    if not isinstance(theirs, dict):
        print_log(
            f'{stats_path} does not say the split settings it was computed '
            'for (no "settings" object, which tools/dataset_stats.py '
            'writes): left out of the report', logger='current',
            level=logging.WARNING)
        return {}
    trained = _train_ids_sha256(cfg)
    if theirs.get('train_ids_sha256') and trained:
        if theirs['train_ids_sha256'] == trained:
            return stats
        print_log(
            f'{stats_path} was computed for other training images than '
            'the run\'s train.txt (images or split changed since): left '
            'out of the report', logger='current', level=logging.WARNING)
        return {}
    ours = split.get('settings') or _configured_split_settings(cfg)
    differ = [(name, theirs[name], ours[split_name])
              for name, split_name in _SPLIT_SETTINGS
              if name in theirs and split_name in ours
              and theirs[name] != ours[split_name]]
    if differ:
        print_log(
            f'{stats_path} was computed for other split settings than the '
            'run\'s (' + ', '.join(f'{n} {a} vs {b}' for n, a, b in differ)
            + '): left out of the report', logger='current',
            level=logging.WARNING)
        return {}
    return stats


def _train_ids_sha256(cfg: Optional[Config]) -> Optional[str]:
    """The fingerprint (:func:`~mmseg_ptx.datasets.split.ids_sha256`)
    of the run's training split file, where it can be read."""
    from mmseg_ptx.datasets.split import ids_sha256, read_split
    split_dir = _split_dir(cfg, 'train_dataloader')
    if split_dir is None:
        return None
    try:
        split = read_split(split_dir)
    except (OSError, ValueError):
        return None
    return ids_sha256(split.train)


def _is_synthetic(cfg: Optional[Config]) -> bool:
    """Whether the run validated on ``tools/make_demo_data.py``'s
    synthetic images (its marker file in the data root)."""
    from mmseg_ptx.datasets.synthetic import SYNTHETIC_MARKER
    root = loader_dataset(cfg, 'val_dataloader').get('data_root')
    return bool(root) and osp.isfile(osp.join(root, SYNTHETIC_MARKER))


def _split_like_reference(split: dict, cfg: Optional[Config]) -> bool:
    """Whether the run's split is made as the reference run's
    (:data:`REFERENCE_SPLIT`; its seed aside, which no one knows): by
    split_meta.json's settings, else (no split file found: the data moved,
    say) by the config's. Hand-made lists without split_meta.json are no
    split the settings made."""
    settings = split.get('settings')
    if not settings:
        split_dir = _split_dir(cfg, 'val_dataloader')
        if split_dir and osp.isfile(osp.join(split_dir, 'val.txt')):
            return False
        settings = _configured_split_settings(cfg)
    return all(settings.get(name) == value
               for name, value in REFERENCE_SPLIT.items())


def _val_set_description(split: dict, best: dict,
                         synthetic: bool = False) -> str:
    """The validation set: its size, how it was drawn and its share of
    positives, from the split file, else (the data gone, say) from the
    best validation record's counts."""
    counts = split.get('counts') or {}
    settings = split.get('settings') or {}
    images = 'synthetic images' if synthetic else 'images'
    n_val, n_pos = counts.get('val'), counts.get('val_positive')
    if not n_val:
        n_val, n_pos = best.get('num_images'), best.get('num_pos_images')
        if not n_val:
            return f'validation split{" (synthetic)" if synthetic else ""}'
        share = f', {100 * n_pos / n_val:.0f}% positive' if n_pos else ''
        return f'validation split of {n_val:,} {images}{share}'
    order = settings.get('split_order') or settings.get('order')
    # balance_first with every negative kept undersamples nothing.
    undersampled = (order == 'balance_first'
                    and settings.get('neg_keep_ratio', 0) < 1)
    kind = ('negatives undersampled before the split, as in the reference'
            if undersampled else 'natural class distribution')
    share = f', {100 * n_pos / n_val:.0f}% positive' if n_pos else ''
    return f'validation split of {n_val:,} {images} ({kind}{share})'


def render_predictions(cfg: Config,
                       checkpoint: str,
                       out_dir: str,
                       num_pos: int = 5,
                       num_neg: int = 2,
                       max_images: Optional[int] = None,
                       device: Optional[str] = None) -> List[dict]:
    """Predict the validation set and save side-by-side pictures.

    The ``num_pos`` positive images with the best per-image Dice and the
    first ``num_neg`` negative images (in split order) are drawn as
    ``prediction_XX_*.png`` (positives from 01, negatives from 11, as in the
    reference report).

    Args:
        cfg (Config): The run's config; its ``val_dataloader`` dataset is
            predicted.
        checkpoint (str): The checkpoint, loaded strictly.
        out_dir (str): Folder of the pictures; an earlier report's
            pictures in it are removed.
        num_pos (int): Positive images drawn. Defaults to 5.
        num_neg (int): Negative images drawn. Defaults to 2.
        max_images (int, optional): Predict only the first so many
            validation images. Defaults to None (all).
        device (str, optional): Defaults to None (the first GPU, else the
            CPU).

    Returns:
        list[dict]: One record per picture: ``file``, ``kind``, ``dice``,
        ``gt_pixels``, ``pred_pixels``.
    """
    import torch
    from mmengine.dataset import pseudo_collate
    from tqdm import tqdm
    from mmseg.registry import DATASETS

    from ..apis import default_device
    from ..evaluation.metrics import competition_dice
    from ..models.utils import init_model_strict

    device = device or default_device()
    cfg = copy.deepcopy(cfg)  # init_model edits the model config
    cfg.model = _segmentor_cfg(cfg.model)  # the checkpoint's segmentor
    # Strictly: init_model would draw from random weights where the
    # checkpoint does not fit.
    model = init_model_strict(cfg, checkpoint, device)
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    scored = []
    # tqdm, as the tools' bars: on stderr, at most 10 updates a second, a
    # line of its own (mmengine's ProgressBar wrote one update per image
    # to stdout without ending its line), TQDM_DISABLE honoured.
    for idx in tqdm(range(n), desc='report pictures', unit='img'):
        with torch.no_grad():
            sample = model.test_step(pseudo_collate([dataset[idx]]))[0]
        gt = sample.gt_sem_seg.data[0].cpu().numpy() == 1
        pred = sample.pred_sem_seg.data[0].cpu().numpy() == 1
        dice = competition_dice(np.logical_and(gt, pred).sum(), pred.sum(),
                                gt.sum())
        scored.append((idx, bool(gt.any()), float(dice)))
    positives = sorted((s for s in scored if s[1]), key=lambda s: -s[2])
    negatives = [s for s in scored if not s[1]]
    chosen = [('pos', i + 1, s) for i, s in enumerate(positives[:num_pos])]
    chosen += [('neg', i + 11, s) for i, s in enumerate(negatives[:num_neg])]

    os.makedirs(out_dir, exist_ok=True)
    # An earlier report's pictures (their names carry their Dice, so the
    # new ones do not replace them) would sit beside the new ones.
    for old in os.listdir(out_dir):
        if _PICTURE_NAME.fullmatch(old):
            os.remove(osp.join(out_dir, old))
    records = []
    for kind, number, (idx, _, dice) in chosen:
        data = dataset[idx]
        with torch.no_grad():
            sample = model.test_step(pseudo_collate([data]))[0]
        # Drawn at the network's input size (the packed, resized image);
        # pixels counted at the original resolution, as the metrics count.
        image = data['inputs'].numpy().transpose(1, 2, 0)[..., 0]
        size = image.shape[:2]
        gt = sample.gt_sem_seg.data[0].cpu().numpy() == 1
        pred = sample.pred_sem_seg.data[0].cpu().numpy() == 1
        pixels = (int(gt.sum()), int(pred.sum()))
        label = 'positive' if kind == 'pos' else 'negative'
        name = f'prediction_{number:02d}_{label}_dice{dice:.3f}.png'
        save_prediction_panel(
            image.astype(np.uint8), _resize_mask(gt, size),
            _resize_mask(pred, size), osp.join(out_dir, name),
            title=f'{label} validation case, per-image Dice {dice:.3f}',
            pixels=pixels)
        records.append(dict(file=name, kind=label, dice=dice,
                            gt_pixels=pixels[0], pred_pixels=pixels[1]))
    return records


#: The names render_predictions gives its pictures.
_PICTURE_NAME = re.compile(
    r'prediction_\d{2,}_(positive|negative)_dice\d+\.\d{3}\.png')


def _resize_mask(mask: np.ndarray, size) -> np.ndarray:
    import cv2
    return cv2.resize(mask.astype(np.uint8), (size[1], size[0]),
                      interpolation=cv2.INTER_NEAREST).astype(bool)


def _progression(val: List[dict], key: str) -> List[tuple]:
    """Best Dice per range of 10 epochs, or per tenth of the validations
    of an iteration-based run (``key`` 'epoch' or 'iter')."""
    val = sorted((h for h in val if h.get('dice') is not None),
                 key=lambda h: h[key])
    if key == 'epoch':
        last = max((h['epoch'] for h in val), default=0)
        chunks = [(f'{start}-{min(start + 9, last)}',
                   [h for h in val if start <= h['epoch'] <= start + 9])
                  for start in range(1, last + 1, 10)]
    else:
        size = max(1, -(-len(val) // 10))
        chunks = [(f'{c[0]["iter"]}-{c[-1]["iter"]}' if len(c) > 1 else
                   str(c[0]['iter']), c)
                  for c in (val[i:i + size]
                            for i in range(0, len(val), size))]
    rows = []
    for label, chunk in chunks:
        if chunk:
            best = max(chunk, key=lambda h: h['dice'])
            rows.append((label, best['dice'], best[key]))
    return rows


def _findings(best: dict, val_desc: str, stats: dict, key: str,
              class_weight: Optional[List[float]], threshold: float = 0.5,
              train_window: str = '',
              weighted_terms: str = 'cross-entropy',
              reference: str = 'same_split',
              best_metric: str = 'dice',
              confidence: float = 0.95) -> List[str]:
    """The report's findings.

    Args:
        reference (str): How the run's data compare with the reference
            run's: ``'same_split'`` (the SIIM data split as the reference
            split it: the difference is given), ``'other_split'`` (the
            data or split differ) or ``'synthetic'`` (demo images).
        best_metric (str): The validation metric that chose the best
            record.
        confidence (float): The coverage of the record's intervals.
    """
    out = []
    dice, iou = best.get('dice'), best.get('iou')
    ref = REFERENCE_RESULTS
    unit = PROGRESS_UNITS[key]
    if dice is not None:
        if reference == 'synthetic':
            against = (f'the reference reported {ref["dice"]:.4f} on the '
                       'SIIM radiographs, which these synthetic images are '
                       'not: the two are not comparable.')
        else:
            if reference == 'same_split':
                delta = dice - ref['dice']
                against = (f'the reference reported {ref["dice"]:.4f} '
                           f'({"+" if delta >= 0 else ""}{delta:.4f}). The '
                           'two are comparable only on the same data and '
                           'split, and not one to one even there')
            else:
                against = (f'the reference reported {ref["dice"]:.4f} on a '
                           'split of its own (15 % of the negatives kept, '
                           'then a fifth of each class to validation), '
                           'which this run\'s is not, so no difference is '
                           'given; the two would be comparable only on the '
                           'same data and split, and not one to one even '
                           'there')
            against += (
                ': the reference pooled each batch and averaged over '
                f'batches (its IoU {ref["iou"]:.4f} is not D/(2-D) = '
                f'{ref["dice"] / (2 - ref["dice"]):.4f}, as it would be '
                'pooled over the set).')
        interval = ''
        if best.get('dice_ci_low') is not None:
            ci = _ci_text(best['dice_ci_low'], best['dice_ci_high'],
                          confidence)
            interval = (f' ({ci}: a percentile bootstrap over the '
                        'validation images, how far it could move on '
                        'another draw of as many images)')
        out.append(f'**Pooled validation Dice {dice:.4f}**{interval} at '
                   f'{unit} {best[key]} on the {val_desc}; {against}')
        name = _METRIC_NAMES.get(best_metric, best_metric)
        out.append(
            f'**Selection**: the best {unit} was chosen by validation '
            f'{name} on these same images, so its validation figures '
            'are optimistic for images the run has not seen; so are '
            '`tools/test.py`\'s on this split, and post-processed '
            'figures whose setting was tuned on it (`tools/'
            'tune_postprocess.py` gives a cross-validated estimate). Only '
            'images outside training and validation give a held-out '
            'score.')
    if best.get('kaggle_dice') is not None:
        out.append(
            f'**Per-image (competition) Dice {best["kaggle_dice"]:.4f}**: '
            'the mean over images with empty ground truth and empty '
            'prediction scoring 1; it rewards correct empty predictions, '
            'which pooled Dice ignores.')
    if dice is not None and iou is not None:
        out.append(
            f'**Dice vs IoU**: {dice:.4f} vs {iou:.4f}; for one pooled '
            f'confusion matrix IoU = D/(2-D) = {dice / (2 - dice):.4f}, '
            'so the gap is arithmetic, not a second finding.')
    if best.get('best_f1') is not None:
        out.append(
            f'**Precision-recall**: best pixel F1 {best["best_f1"]:.4f} at '
            f'probability threshold {best["best_threshold"]:.4f} (precision '
            f'{best["precision"]:.4f}, recall {best["recall"]:.4f}); AP '
            f'{best["ap"]:.4f}. The metric\'s threshold {threshold} '
            + ('is close to' if abs(best['best_threshold'] - threshold) < 0.1
               else 'differs from') + ' the F1-optimal one.')
    train_dice = best.get(train_head_key([best], 'dice_seg'))
    if train_dice is not None and dice is not None:
        gap = train_dice - dice
        # No verdict on over-fitting: the two are not measured alike
        # (rank 0's augmented crops, a batch empty in label and prediction
        # scoring 1, against whole images pooled over the set).
        out.append(
            f'**Train vs validation**: training Dice {train_dice:.4f} '
            f'({train_window}batch-pooled on rank 0, augmented crops) vs '
            f'validation {dice:.4f} (pooled over whole images): a gap of '
            f'{gap:.4f} between two differently measured numbers; the '
            'validation curve\'s trend is what shows over-fitting.')
    if stats.get('imbalance_ratio'):
        answer = ('answered by class weights '
                  f'{[round(w, 4) for w in class_weight]} in the loss\'s '
                  f'{weighted_terms} term'
                  + ('s' if ' and ' in weighted_terms else '')
                  if class_weight else
                  'with no class weights in the loss')
        out.append(
            f'**Class imbalance**: {stats["imbalance_ratio"]:.1f}:1 '
            'background:pneumothorax pixels in the training split, '
            f'{answer}.')
    return out


def _class_weighted_loss(cfg: Optional[Config]) -> dict:
    """The decode head's loss (of its list, the first) that has a
    ``class_weight``; ``{}`` where none has (or there is no config)."""
    if cfg is None:
        return {}
    loss = _decode_head(_segmentor_cfg(cfg.model)).get('loss_decode', {})
    losses = loss if isinstance(loss, (list, tuple)) else [loss]
    return next((item for item in losses
                 if item.get('class_weight') is not None), {})


def _class_weighted_terms(cfg: Optional[Config]) -> str:
    """The decode head loss's terms its class weights weigh: DiceCELoss's
    cross-entropy and focal terms, those it has."""
    weighted = _class_weighted_loss(cfg)
    if 'type' not in weighted or config_type_name(weighted) != 'DiceCELoss':
        return 'cross-entropy'  # mmseg's CrossEntropyLoss, say
    terms = [name for name, key, default in (
        ('cross-entropy', 'ce_weight', 0.5), ('focal', 'focal_weight', 0.0))
             if weighted.get(key, default) > 0]
    return ' and '.join(terms) or 'cross-entropy'


def _configured_class_weight(cfg: Optional[Config]) -> Any:
    """The decode head loss's ``class_weight`` setting as configured: two
    numbers, a statistics JSON path, or None."""
    return _class_weighted_loss(cfg).get('class_weight')


def _loss_class_weight(cfg: Optional[Config]) -> Optional[List[float]]:
    """The decode head's class weights as the run's loss used them (a
    statistics JSON path read as DiceCELoss reads it)."""
    weight = _configured_class_weight(cfg)
    if weight is None:
        return None
    if isinstance(weight, str):
        from mmseg_ptx.models.losses import load_class_weight
        try:
            return load_class_weight(weight)
        except (OSError, ValueError, KeyError) as err:
            print_log(f'Class weights not reported: {err}',
                      logger='current', level=logging.WARNING)
            return None
    return [float(w) for w in weight]


class NoValidationRecords(FileNotFoundError):
    """The work dir has no validation record to report on."""


class InvalidMetricsHistory(ValueError):
    """The work dir's ``metrics_history.json`` is not PRCurveHook's."""


def write_performance_summary(work_dir: str,
                              config: Optional[Union[str, Config]] = None,
                              checkpoint: Optional[str] = None,
                              stats: Optional[str] = None,
                              images: bool = True,
                              num_pos: int = 5,
                              num_neg: int = 2,
                              max_images: Optional[int] = None,
                              device: Optional[str] = None,
                              world_size: Optional[int] = None) -> str:
    """Write ``PERFORMANCE_SUMMARY.md`` and its pictures into ``work_dir``.

    The run's ``metrics_history.json`` and ``pr_curves/`` are read from
    the ``out_dir`` of the config's ``PRCurveHook`` where it sets one, else
    from ``work_dir``.

    Args:
        work_dir (str): A training run's work dir.
        config (str | Config, optional): Config file (or the config);
            defaults to the training run's, as its visualizer saved it
            beside its log, else the one mmengine dumped into
            ``work_dir``.
        checkpoint (str, optional): Checkpoint for the prediction pictures;
            defaults to the best validation's ``best_*.pth``, else the
            newest ``best_*.pth``, else the last checkpoint.
        stats (str, optional): ``tools/dataset_stats.py`` JSON; defaults to
            ``<data_root>/<split_dir>/stats.json``, else
            ``<data_root>/stats.json``, when present. Left out when it was
            made for other split settings than the run's.
        images (bool): Render prediction pictures. Defaults to True.
        num_pos (int): Positive cases drawn. Defaults to 5.
        num_neg (int): Negative cases drawn. Defaults to 2.
        max_images (int, optional): Validation images scanned for the
            pictures. Defaults to all.
        device (str, optional): Device for the pictures' inference.
        world_size (int, optional): Processes (GPUs) of the run; defaults
            to what the run log says.

    Returns:
        str: Path of the written report.
    """
    # Scanned once, and only for what the caller did not give.
    log = None if config and world_size else _training_log(work_dir)
    cfg = config or _find_config(work_dir, log)
    if isinstance(cfg, (str, os.PathLike)):
        cfg = Config.fromfile(cfg)
    history_dir = _history_dir(cfg, work_dir)
    history_path = osp.join(history_dir, 'metrics_history.json')
    if not osp.isfile(history_path):
        raise NoValidationRecords(
            f'{history_path} not found: the report needs a run that '
            'validated, with PRCurveHook in custom_hooks (configs/ here '
            'have it)')
    try:
        history = read_json(history_path)
    except ValueError as err:  # not JSON
        raise InvalidMetricsHistory(str(err)) from None
    if not isinstance(history, list) or not all(
            isinstance(h, dict) for h in history):
        raise InvalidMetricsHistory(
            f'{history_path} is not a metrics history (a list of records '
            f'as PRCurveHook writes it), got a {type(history).__name__}')
    val = [h for h in history if h.get('mode') == 'val'
           and h.get('dice') is not None and h.get('epoch') is not None]
    key = progress_key(val)
    val = [h for h in val if h.get(key)]
    if not val:
        raise NoValidationRecords(
            f'{history_path} has no validation record with a pooled Dice '
            "(key 'dice' of PneumothoraxMetric without a prefix)")

    best, best_metric = _best_validation(val, *_best_metric_rule(cfg))
    # The training scalars recorded with the best validation: compared
    # with it, they are of the same model.
    train_window = _train_window(val, best, key)
    checkpoint = checkpoint or _find_best_checkpoint(work_dir, best, key)
    split = _split_meta(cfg)
    stats_data = _stats(cfg, stats, split)
    synthetic = _is_synthetic(cfg)
    val_desc = _val_set_description(split, best, synthetic)
    world_size = world_size or _world_size(log)

    # PRCurveHook's name for the best validation's curve; the latest
    # curve stands in only if it is that validation's.
    curve_path = osp.join(history_dir, 'pr_curves',
                          f'val_{curve_tag(best["epoch"], best["iter"])}.json')
    if not osp.isfile(curve_path) and best is max(val, key=lambda h: h[key]):
        curve_path = osp.join(history_dir, 'pr_curves', 'val_latest.json')
    pr_png = None
    if osp.isfile(curve_path):
        pr_png = plot_pr_curve(
            read_json(curve_path),
            osp.join(work_dir, 'precision_recall_curve.png'),
            title=('Pixel PR curve, validation, '
                   f'{PROGRESS_UNITS[key]} {best[key]}'))
    else:
        print_log(f'No PR curve of the best validation ({curve_path}): '
                  'report without precision_recall_curve.png',
                  logger='current')
        # An earlier report's, of another validation perhaps.
        stale = osp.join(work_dir, 'precision_recall_curve.png')
        if osp.isfile(stale):
            os.remove(stale)
    metrics_png = plot_detailed_metrics(
        history, osp.join(work_dir, 'detailed_metrics.png'), best=best[key])

    from ..models.utils import CheckpointError
    if cfg is None:
        print_log(f'No config found in {work_dir}: the report has no model '
                  'or training configuration (pass the config)',
                  logger='current', level=logging.WARNING)
    pictures: List[dict] = []
    if images and cfg is not None and checkpoint:
        try:
            pictures = render_predictions(cfg, checkpoint,
                                          osp.join(work_dir, 'images'),
                                          num_pos, num_neg, max_images,
                                          device)
        except CheckpointError:
            raise  # a --checkpoint that is none: the caller's mistake
        except (OSError, ValueError) as err:
            # The data moved, say: the numbers come from the history
            # alone, and are still worth writing.
            print_log(f'Prediction pictures not drawn: {err}. The report '
                      'is written without them.',
                      logger='current', level=logging.WARNING)
    elif images:
        print_log('No config or checkpoint found: report without '
                  'prediction pictures.', logger='current')

    drawn_from = (_checkpoint_name(checkpoint, work_dir) if pictures
                  else None)
    has_curves = osp.isdir(osp.join(history_dir, 'pr_curves'))
    text = _render_markdown(cfg, best, train_window, val,
                            split, stats_data, val_desc, world_size,
                            drawn_from, pr_png, has_curves, metrics_png,
                            pictures, key, best_metric, synthetic)
    out = osp.join(work_dir, 'PERFORMANCE_SUMMARY.md')
    with open(out, 'w') as f:
        f.write(text)
    return out


def _train_window(val: List[dict], record: dict, key: str) -> str:
    """``'mean over epochs 6-10, '`` (iterations, for an iteration-based
    run): the window whose training scalars the validation ``record``
    holds, PRCurveHook's mean since the previous validation or since
    training (re)started, as the record says (``train_from_<key>``;
    histories written before it was recorded: from the previous record
    in ``val``); ``''`` where unknown."""
    end = record.get(key)
    if not end:
        return ''
    start = record.get(f'train_from_{key}')
    if not isinstance(start, int):
        start = max((h[key] for h in val if h[key] < end), default=0) + 1
    unit = PROGRESS_UNITS[key]
    span = f'{unit} {end}' if start == end else f'{unit}s {start}-{end}'
    return f'mean over {span}, '


def _metric_threshold(cfg: Optional[Config]) -> float:
    """The probability threshold of the run's PneumothoraxMetric."""
    return _metric_setting(cfg, 'threshold', 0.5)


def _metric_setting(cfg: Optional[Config], name: str, default: Any) -> Any:
    """An argument of the run's PneumothoraxMetric, as configured."""
    for evaluator in config_entries(cfg, 'val_evaluator'):
        if config_type_name(evaluator, '') == 'PneumothoraxMetric':
            return evaluator.get(name, default)
    return default


def _with_interval(record: dict, key: str, confidence: float) -> Any:
    """``record[key]``, with its bootstrap interval where the record has
    one (``'0.8540 (95% CI 0.8312-0.8751)'``)."""
    value = record.get(key)
    name, suffix = (key[:-3], '_pp') if key.endswith('_pp') else (key, '')
    low = record.get(f'{name}_ci_low{suffix}')
    high = record.get(f'{name}_ci_high{suffix}')
    # None also where PRCurveHook wrote a NaN interval as null.
    if value is None or low is None or high is None:
        return value
    return f'{value:.4f} ({_ci_text(low, high, confidence)})'


def _ci_text(low: float, high: float, confidence: float) -> str:
    """``'95% CI 0.8312-0.8751'``."""
    return f'{100 * confidence:g}% CI {low:.4f}-{high:.4f}'


def _postprocessing(cfg: Optional[Config]) -> Optional[str]:
    """The post-processing of the run's validation metric, with every
    argument (``TripletThresholdPostProcessor(top_threshold=0.75, ...)``);
    None without a config or one."""
    from mmseg_ptx.apis.inference import evaluator_postprocess
    postprocess = evaluator_postprocess(cfg) if cfg is not None else None
    if postprocess is None:
        return None
    from mmseg.registry import MODELS
    try:
        return repr(MODELS.build(postprocess))
    except (KeyError, TypeError, ValueError):
        # A type this process has not registered: as configured.
        return ', '.join(f'{k}={v}' for k, v in postprocess.items())


def _segmentor_cfg(model: dict) -> dict:
    """The (first) segmentor inside test-time wrappers.

    tools/test.py --tta / --extra-model dump their wrapped model config
    over the training run's.
    """
    while True:
        if model.get('module') is not None:  # SegTTAModel and subclasses
            model = model['module']
        elif model.get('models'):  # EnsembleSegmentor
            model = model['models'][0]
        else:
            return model


def _val_resize(cfg: Config) -> Optional[Tuple[tuple, bool]]:
    """The ``scale`` and ``keep_ratio`` of the validation pipeline's
    ``Resize``, if it has one with a size."""
    pipeline = loader_dataset(cfg, 'val_dataloader').get('pipeline') or []
    for step in pipeline:
        if isinstance(step, dict) and config_type_name(step, '') == 'Resize':
            scale = step.get('scale')
            if isinstance(scale, (list, tuple)):
                return tuple(scale), bool(step.get('keep_ratio'))
    return None


def _input_size(train: Optional[Sequence[int]],
                val: Optional[Tuple[tuple, bool]]) -> str:
    """``'512 x 512'``, or the training crop and the validation size where
    they differ."""
    def text(size) -> str:
        return f'{size[0]} x {size[1]}'

    if not train:
        return 'n/a'
    if not val or val[0] == tuple(train):
        return text(train)
    scale, keep_ratio = val
    how = (f'to fit {text(scale)} (aspect kept)' if keep_ratio else
           f'to {text(scale)}')
    return f'{text(train)} training crops; validation images resized {how}'


def _backbone_desc(bb: dict) -> str:
    """The backbone's type and those of its Swin sizes it sets."""
    sizes = [(name, bb.get(key)) for name, key in (
        ('embed_dims', 'embed_dims'), ('depths', 'depths'),
        ('window', 'window_size'))]
    given = ', '.join(f'{name} {value}' for name, value in sizes
                      if value is not None)
    name = config_type_name(bb)
    return f'{name} ({given})' if given else name


def _architecture(cfg: Optional[Config]) -> str:
    """What the title calls the model: UPerNet for mmseg's UPerHead, else
    the decode head's type; 'Segmentation model' without a config."""
    if cfg is None:
        return 'Segmentation model'
    head = config_type_name(_decode_head(_segmentor_cfg(cfg.model)))
    return 'UPerNet' if head == 'UPerHead' else head


def _decode_head(model: dict) -> dict:
    """The decode head's config; a cascade's (OCRNet's) last."""
    head = model.decode_head
    return head[-1] if isinstance(head, (list, tuple)) else head


def _loss_desc(loss: Union[dict, Sequence[dict]]) -> str:
    """A head's loss in words: DiceCELoss's terms with their weights (those
    of weight 0 left out), another loss's type; a ``loss_weight`` other
    than 1 as a factor in front."""
    if not isinstance(loss, dict):
        return ', '.join(_loss_desc(item) for item in loss)
    if 'type' not in loss:
        return 'n/a'
    factor = loss.get('loss_weight', 1.0)
    if config_type_name(loss) != 'DiceCELoss':
        return (config_type_name(loss) if factor == 1 else
                f'{factor} x {config_type_name(loss)}')
    # The class weights weigh the CE and the focal term's pixels.
    weighted = loss.get('class_weight') is not None
    per_image = (', one per image' if loss.get('dice_mode') == 'image'
                 else '')
    gamma = loss.get('focal_gamma', 2.0)
    terms = [(loss.get('ce_weight', 0.5),
              'CE (class-weighted)' if weighted else 'CE'),
             (loss.get('dice_weight', 0.5), f'soft Dice{per_image}'),
             (loss.get('focal_weight', 0.0),
              f'focal (gamma {gamma}{", class-weighted" * weighted})')]
    summed = ' + '.join(
        f'{weight} x {term}' for weight, term in terms if weight)
    return 'DiceCELoss: ' + (summed if factor == 1 else
                             f'{factor} x ({summed})')


def _model_rows(cfg: Optional[Config]) -> List[tuple]:
    if cfg is None:
        return []
    model = _segmentor_cfg(cfg.model)
    bb, head = model.backbone, _decode_head(model)
    size = model.get('data_preprocessor', {}).get('size')
    opt = cfg.optim_wrapper.optimizer
    aux = model.get('auxiliary_head')
    if isinstance(aux, (list, tuple)):
        aux = aux[0] if len(aux) == 1 else None
    return [
        ('Architecture',
         f'{config_type_name(model)} + {config_type_name(head)}'),
        ('Backbone', _backbone_desc(bb)),
        ('Decode head channels', head.get('channels')),
        ('Input size', _input_size(size, _val_resize(cfg))),
        ('Number of classes', f'{head.num_classes} (background, '
         'pneumothorax)'),
        ('Loss function', _loss_desc(head.get('loss_decode', {}))),
    ] + ([(f'Auxiliary head loss ({config_type_name(aux)})',
           _loss_desc(aux.get('loss_decode', {})))] if aux else []) + [
        ('Optimizer', f'{config_type_name(opt)}, lr {opt.lr}, weight decay '
         f'{opt.get("weight_decay")}'),
        ('Mixed precision', cfg.optim_wrapper.get('dtype', 'fp16')
         if config_type_name(cfg.optim_wrapper, 'OptimWrapper')
         == 'AmpOptimWrapper' else 'off (fp32)'),
    ]


def _segmentation_rows(cfg: Optional[Config], best: dict, best_metric: str,
                       train_window: str, unit: str,
                       confidence: float) -> List[tuple]:
    """The rows of the best validation, raw and (where the metric
    post-processed) post-processed, with the intervals at ``confidence``,
    then the training scores recorded with it."""
    rows = []
    if best_metric != 'dice':
        name = _METRIC_NAMES.get(best_metric, best_metric)
        rows.append((f'Validation {name} (selects the best {unit})',
                     best.get(best_metric)))
    dice_name = ('Best validation Dice' if best_metric == 'dice' else
                 f'Validation Dice at the best {unit}')
    rows += [
        (f'{dice_name} (pooled over all pixels, raw: probability > '
         f'{_metric_threshold(cfg)})',
         _with_interval(best, 'dice', confidence)),
        (f'Validation IoU at that {unit} (pooled, raw)', best.get('iou')),
        ('Validation competition Dice (per-image mean, empty = 1, raw)',
         _with_interval(best, 'kaggle_dice', confidence)),
    ]
    if best.get('dice_pp') is not None:
        rows += [
            ('Post-processing of the rows below (the validation metric\'s)',
             _postprocessing(cfg)),
            ('Validation Dice, post-processed (pooled)',
             _with_interval(best, 'dice_pp', confidence)),
            ('Validation IoU, post-processed (pooled)', best.get('iou_pp')),
            ('Validation competition Dice, post-processed (per-image mean, '
             'empty = 1)', _with_interval(best, 'kaggle_dice_pp',
                                          confidence)),
        ]
    rows += [
        (f'Training Dice at that {unit} ({train_window}batch-pooled on '
         'rank 0, augmented)', best.get(train_head_key([best], 'dice_seg'))),
        (f'Training IoU at that {unit} ({train_window}batch-pooled on '
         'rank 0, augmented)', best.get(train_head_key([best], 'iou_seg'))),
    ]
    return rows


def _render_markdown(cfg, best, train_window, val, split,
                     stats, val_desc, world_size, drawn_from, pr_png,
                     has_curves, metrics_png, pictures, key,
                     best_metric, synthetic=False) -> str:
    unit = PROGRESS_UNITS[key]
    class_weight = _loss_class_weight(cfg)
    # The coverage of the record's intervals, as the metric was configured.
    confidence = _metric_setting(cfg, 'confidence', 0.95)
    lines = [f'# {_architecture(cfg)} Pneumothorax Segmentation - '
             'Performance Summary', '',
             '*Generated by `tools/summarize.py` (mmseg_ptx) from the work '
             'dir of the run; every number below comes from that run.*', '']
    if synthetic:
        lines += ['**Synthetic demo data** (`tools/make_demo_data.py`): '
                  'these figures check the pipeline end to end; they say '
                  'nothing of pneumothorax segmentation on real '
                  'radiographs.', '']
    lines += ['## Model Configuration', '', _table(_model_rows(cfg)), '']

    batch = cfg.train_dataloader.batch_size if cfg else None
    train_rows = [
        ('Processes (GPUs)', world_size),
        ('Batch size per process', batch),
        ('Total batch size', batch * world_size
         if batch and world_size else None),
        (f'{unit.capitalize()}s run (to the last validation)',
         max(h[key] for h in val)),
        (f'{unit.capitalize()}s configured',
         cfg.train_cfg.get(f'max_{key}s') if cfg else None),
        (f'Best {unit} (by val '
         f'{_METRIC_NAMES.get(best_metric, best_metric)})', best[key]),
    ]
    if drawn_from:
        train_rows.append(('Checkpoint used for pictures', drawn_from))
    lines += ['## Training Configuration', '', _table(train_rows), '']

    settings = split.get('settings') or {}
    train_ds = loader_dataset(cfg, 'train_dataloader')
    sampler = cfg.train_dataloader.get('sampler', {}) if cfg else {}
    lines += ['### Class Balancing Strategy', '']
    keep = settings.get('neg_keep_ratio', train_ds.get('neg_keep_ratio'))
    # split_meta.json's names, else the dataset config's.
    order = settings.get('order', train_ds.get('split_order'))
    if keep is not None:
        seed = settings.get('seed', train_ds.get('split_seed'))
        lines.append(f'- **Negative undersampling**: keep ratio {keep} '
                     f'({order or "balance_first"}; seed {seed})')
    if config_type_name(sampler, '') == 'ClassBalancedSampler':
        lines.append(f'- **Positive oversampling**: ClassBalancedSampler, '
                     f'weight {sampler.get("pos_weight", 1.5)}x per positive '
                     'image, sharded over the DDP ranks')
    if class_weight:
        source = _configured_class_weight(cfg)
        weights = [round(w, 4) for w in class_weight]  # as in the findings
        lines.append(f'- **Class weights** ({_class_weighted_terms(cfg)}): '
                     f'{weights}'
                     + (f' (from {source})' if isinstance(source, str)
                        else ''))
    lines.append('')

    # The split file's counts are the run's; the statistics file only
    # fills in what it lacks.
    counts = dict(split.get('counts') or {})
    for name, value in (stats.get('num_images') or {}).items():
        counts.setdefault(name, value)
    from mmseg_ptx.datasets.split import kept_images_label
    kept = kept_images_label(order)
    ds_rows = [
        ('Original positive images', counts.get('original_positive')),
        ('Original negative images', counts.get('original_negative')),
        (f'{kept} - positive', counts.get('balanced_positive')),
        (f'{kept} - negative', counts.get('balanced_negative')),
        ('Training images', counts.get('train')),
        ('Validation images', counts.get('val')),
        ('Validation positives', counts.get('val_positive')),
        ('Class imbalance, training pixels (background:pneumothorax)',
         f'{stats["imbalance_ratio"]:.2f}:1'
         if stats.get('imbalance_ratio') else None),
    ]
    lines += ['## Dataset Statistics', '', _table(ds_rows, ('Metric',
                                                            'Value')), '']

    lines += ['## Performance Metrics', '',
              f'### Segmentation Metrics ({val_desc})', '',
              _table(_segmentation_rows(cfg, best, best_metric,
                                        train_window, unit, confidence),
                     ('Metric', 'Value')), '']
    n_images = best.get('num_images')
    lines += [f'### Precision-Recall Analysis (pixel level, {n_images} '
              'validation images at their original resolution, '
              f'{unit} {best[key]})', '',
              _table([
                  ('Average Precision (AP, step-wise as scikit-learn)',
                   best.get('ap')),
                  ('PR-AUC (trapezoidal)', best.get('pr_auc')),
                  ('Optimal F1-score', best.get('best_f1')),
                  ('Precision (at optimal threshold)', best.get('precision')),
                  ('Recall (at optimal threshold)', best.get('recall')),
                  ('Optimal decision threshold', best.get('best_threshold')),
              ], ('Metric', 'Value')), '']
    total, pos, neg = (best.get('num_pixels'), best.get('num_pos_pixels'),
                       best.get('num_neg_pixels'))
    lines += ['### Pixel-Level Statistics (Validation)', '']
    if total:
        lines += [f'- Total pixels analyzed: {total:,}',
                  f'- Pneumothorax pixels: {pos:,} ({100 * pos / total:.2f}%)',
                  f'- Background pixels: {neg:,} ({100 * neg / total:.2f}%)',
                  '']
    lines += ['## Training Progression', '',
              f'| {unit.capitalize()} Range | Best Val Dice (pooled) | '
              f'At {unit.capitalize()} |', '|---|---|---|']
    lines += [
        f'| {r} | {d:.4f} | {e} |' for r, d, e in _progression(val, key)
    ]
    lines += ['', '## Files in This Results Folder', '', '```',
              'PERFORMANCE_SUMMARY.md      # this file',
              'metrics_history.json        # metrics per validation '
              '(PRCurveHook)']
    if has_curves:
        lines.append('pr_curves/                  # PR curve plot + data '
                     'per validation')
    if pr_png:
        lines.append(
            f'precision_recall_curve.png  # PR curve of the best {unit}')
    lines.append('detailed_metrics.png        # loss, Dice, IoU, AP over '
                 f'{unit}s')
    if pictures:
        lines.append('images/                     # input | ground truth | '
                     'prediction')
        lines += [f'    {p["file"]}' for p in pictures]
    lines += ['```', '']
    if pictures:
        lines += ['### Sample predictions', '',
                  'Left: input; centre: ground truth (red); right: '
                  'the raw prediction (blue: the model\'s argmax, without '
                  'post-processing). Positives are the best by per-image '
                  'Dice, negatives the first in split order.', '']
        lines += [f'![{p["kind"]}](images/{p["file"]})' for p in pictures]
        lines.append('')
    lines += ['## Key Findings', '']
    lines += [f'{i}. {t}' for i, t in enumerate(
        _findings(best, val_desc, stats, key, class_weight,
                  _metric_threshold(cfg), train_window,
                  _class_weighted_terms(cfg),
                  'synthetic' if synthetic else
                  'same_split' if _split_like_reference(split, cfg) else
                  'other_split', best_metric, confidence), 1)]
    lines.append('')
    return '\n'.join(lines)
