"""Reproducible negative undersampling and train/val split of SIIM-ACR.

Pure functions over image ids and labels (no image is read), plus the
``train.txt`` / ``val.txt`` / ``split_meta.json`` files that let a run be
repeated and inspected.

Randomness: every random choice ranks the ids by
``sha256(f'{seed}:{stage}:{image_id}')``. That is a seeded pseudo-random
permutation which, unlike ``numpy.random`` or ``random.shuffle``, is the
same on every platform and every numpy/Python version, and does not depend
on the order in which the ids are given, so a split file can always be
regenerated from its settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

from mmseg_ptx.utils.atomic_write import write_atomically

__all__ = [
    'SplitResult', 'balance_and_split', 'count_split', 'write_split',
    'read_split', 'ids_sha256', 'kept_images_label', 'SPLIT_ORDERS',
    'SPLIT_FILES', 'STATS_FILE'
]

#: Accepted values of ``order`` in :func:`balance_and_split`.
SPLIT_ORDERS = ('balance_first', 'split_first')
#: Files written by :func:`write_split`, in the order they are written; the
#: meta file goes last so that its presence means the split is complete.
SPLIT_FILES = ('train.txt', 'val.txt', 'split_meta.json')
#: The statistics tools/dataset_stats.py writes beside them by default (the
#: report looks for it there).
STATS_FILE = 'stats.json'


@dataclass
class SplitResult:
    """A train/val split of image ids.

    Args:
        train (list[str]): Training ImageIds, sorted.
        val (list[str]): Validation ImageIds, sorted.
        counts (dict): Image counts with the keys ``original_positive``,
            ``original_negative``, ``balanced_positive``,
            ``balanced_negative``, ``train``, ``val``, ``train_positive``,
            ``train_negative``, ``val_positive``, ``val_negative``
            (``balanced_*`` = what remains in train + val after
            undersampling). Empty when unknown, e.g. for hand-made split
            files read by :func:`read_split`.
    """
    train: List[str]
    val: List[str]
    counts: Dict[str, int] = field(default_factory=dict)


def ids_sha256(ids: Sequence[str]) -> str:
    """A fingerprint of a set of ImageIds (a split's ``train.txt``, say),
    independent of their order.

    Args:
        ids (Sequence[str]): ImageIds.

    Returns:
        str: The sha256 hex digest of the sorted ids, one per line.
    """
    return hashlib.sha256(_ids_text(sorted(ids)).encode('utf-8')).hexdigest()


def _rank(ids: Sequence[str], seed: int, stage: str) -> List[str]:
    """Return ``ids`` in a seeded pseudo-random order (see module doc)."""
    return sorted(
        ids,
        key=lambda i: hashlib.sha256(
            f'{seed}:{stage}:{i}'.encode('utf-8')).hexdigest())


def _split_group(ids: Sequence[str], val_ratio: float, seed: int,
                 stage: str) -> tuple[List[str], List[str]]:
    """Split one class group; round() per group keeps the class ratio."""
    ranked = _rank(ids, seed, stage)
    num_val = round(val_ratio * len(ranked))
    return ranked[num_val:], ranked[:num_val]


def _undersample(negatives: Sequence[str], neg_keep_ratio: float,
                 seed: int) -> List[str]:
    num_keep = round(neg_keep_ratio * len(negatives))
    return _rank(negatives, seed, 'negatives')[:num_keep]


def balance_and_split(image_ids: Sequence[str],
                      is_positive: Sequence[bool],
                      neg_keep_ratio: float = 0.15,
                      val_ratio: float = 0.2,
                      seed: int = 42,
                      order: str = 'balance_first') -> SplitResult:
    """Undersample negative images and split train/val, stratified by label.

    ``order='balance_first'`` reproduces the reference run: keep
    ``round(neg_keep_ratio * #negatives)`` negatives, then split the kept
    images ``val_ratio`` to validation within positives and within
    negatives (so validation has the balanced, positive-heavy ratio; on
    2,379 positives + 8,296 negatives: 2,379 + 1,244 -> 2,898 train / 725
    val). ``order='split_first'`` sends ``val_ratio`` of all images of
    each class to validation first, so validation keeps the natural
    distribution, then undersamples the training negatives only. Counts
    are rounded to the nearest integer per group. The two orders, with
    the same settings, nest: positives are split alike, and
    ``split_first``'s validation negatives are ``balance_first``'s plus
    some of those it left out, so neither order's training images are in
    the other's validation set.

    Args:
        image_ids (Sequence[str]): ImageIds, unique. Their order is
            irrelevant.
        is_positive (Sequence[bool]): Whether each image has pneumothorax.
        neg_keep_ratio (float): Fraction of negatives kept, in [0, 1];
            1.0 means no undersampling. Defaults to 0.15.
        val_ratio (float): Fraction of each class group sent to validation,
            in [0, 1). Defaults to 0.2.
        seed (int): Seed of every random choice. Defaults to 42.
        order (str): ``'balance_first'`` or ``'split_first'``.
            Defaults to ``'balance_first'``.

    Returns:
        SplitResult: Sorted train and val ids, and their counts.
    """
    if len(image_ids) != len(is_positive):
        raise ValueError(f'{len(image_ids)} image ids but '
                         f'{len(is_positive)} labels')
    if len(set(image_ids)) != len(image_ids):
        raise ValueError('image_ids contains duplicates')
    if not 0.0 <= neg_keep_ratio <= 1.0:
        raise ValueError(
            f'neg_keep_ratio must be in [0, 1], got {neg_keep_ratio}')
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f'val_ratio must be in [0, 1), got {val_ratio}')
    if order not in SPLIT_ORDERS:
        raise ValueError(
            f'order must be one of {SPLIT_ORDERS}, got {order!r}')

    positives = sorted(i for i, p in zip(image_ids, is_positive) if p)
    negatives = sorted(i for i, p in zip(image_ids, is_positive) if not p)

    # Positives are never undersampled, so both orders split them alike.
    train_pos, val_pos = _split_group(positives, val_ratio, seed,
                                      'val_positive')
    kept_neg = _undersample(negatives, neg_keep_ratio, seed)
    train_neg, val_neg = _split_group(kept_neg, val_ratio, seed,
                                      'val_negative')
    if order == 'split_first':
        # The natural validation set is balance_first's validation
        # negatives plus negatives balance_first left out, never one it
        # trains on (and split_first trains on none of balance_first's
        # validation): a model trained on either split can be validated,
        # or have its post-processing tuned, on the other's validation.
        kept = set(kept_neg)
        left_out = [i for i in negatives if i not in kept]
        num_val = round(val_ratio * len(negatives))
        val_neg = val_neg + _rank(left_out, seed,
                                  'val_negative')[:num_val - len(val_neg)]
        in_val = set(val_neg)
        train_neg = _undersample([i for i in negatives if i not in in_val],
                                 neg_keep_ratio, seed)

    train = sorted(train_pos + train_neg)
    val = sorted(val_pos + val_neg)
    labels = dict(zip(image_ids, map(bool, is_positive)))
    if not train:
        raise ValueError(
            f'The training split is empty ({len(image_ids)} images, '
            f'val_ratio={val_ratio}, neg_keep_ratio={neg_keep_ratio})')
    if val_ratio > 0 and not val:
        raise ValueError(
            f'The validation split is empty: {len(image_ids)} images are '
            f'too few for val_ratio={val_ratio}')
    counts = count_split(train, val, labels)
    return SplitResult(train=train, val=val, counts=counts)


def count_split(train: Sequence[str], val: Sequence[str],
                labels: Dict[str, bool]) -> Dict[str, int]:
    """Count images per class in a split (see :class:`SplitResult`).

    Args:
        train (Sequence[str]): Training ImageIds.
        val (Sequence[str]): Validation ImageIds.
        labels (dict[str, bool]): ``is_positive`` of every labelled image
            (the original, unbalanced set).

    Returns:
        dict[str, int]: The ``counts`` of :class:`SplitResult`.
    """
    train_pos = sum(labels[i] for i in train)
    val_pos = sum(labels[i] for i in val)
    num_pos = sum(labels.values())
    return dict(
        original_positive=num_pos,
        original_negative=len(labels) - num_pos,
        balanced_positive=train_pos + val_pos,
        balanced_negative=len(train) + len(val) - train_pos - val_pos,
        train=len(train),
        val=len(val),
        train_positive=train_pos,
        train_negative=len(train) - train_pos,
        val_positive=val_pos,
        val_negative=len(val) - val_pos)


def kept_images_label(order: str) -> str:
    """How a table names the ``balanced_*`` counts of a split made in
    ``order``: the reference's "After balancing" where both subsets were
    undersampled (``balance_first``); with ``split_first`` they add the
    undersampled training subset's images to the natural validation set's.

    Args:
        order (str): One of :data:`SPLIT_ORDERS`.

    Returns:
        str: The label, without the class.
    """
    if order == 'split_first':
        return 'Kept (training subset undersampled)'
    return 'After balancing'


def _normalise(meta: dict) -> dict:
    # Compare settings the way they look after a JSON round trip
    # (tuples become lists, keys strings).
    return json.loads(json.dumps(meta, sort_keys=True))


def _ids_text(ids: Sequence[str]) -> str:
    return ''.join(f'{i}\n' for i in ids)


def _read_text(path: str) -> str:
    with open(path, encoding='utf-8') as f:
        return f.read()


def write_split(split_dir: str, result: SplitResult, meta: dict) -> None:
    """Write ``train.txt``, ``val.txt`` and ``split_meta.json``.

    Existing files are never overwritten with different content: if
    ``split_meta.json`` exists with other settings, or ``train.txt`` /
    ``val.txt`` exist with other ids (e.g. a hand-made split), a
    ``FileExistsError`` asks to choose another ``split_dir`` or delete
    them; one list alone with other ids, without ``split_meta.json``, is
    half a hand-made split: a ``FileNotFoundError`` names the other.
    Writing the identical split again (several DDP ranks, a rerun) is a
    no-op. Each file is written atomically.

    Args:
        split_dir (str): Directory of the split files; created if needed.
        result (SplitResult): The split.
        meta (dict): JSON-serialisable settings that produced the split
            (stored under ``'settings'``, beside ``result.counts``).
    """
    try:
        os.makedirs(split_dir, exist_ok=True)
    except OSError as err:
        raise _unwritable(split_dir, err) from None
    meta = _normalise(meta)
    meta_path = osp.join(split_dir, 'split_meta.json')
    hint = ('Choose another split_dir or delete the existing split files '
            'to create a new split.')
    if osp.isfile(meta_path):
        stored = _read_meta(meta_path).get('settings') or {}
        if stored != meta:
            diff = sorted(k for k in set(meta) | set(stored)
                          if stored.get(k) != meta.get(k))
            was = {k: stored.get(k) for k in diff}
            now = {k: meta.get(k) for k in diff}
            raise FileExistsError(
                f'{meta_path} was written with other settings '
                f'(stored: {was}, requested: {now}). {hint}')
    texts = {
        'train.txt': _ids_text(result.train),
        'val.txt': _ids_text(result.val),
    }
    for name, text in texts.items():
        path = osp.join(split_dir, name)
        if osp.isfile(path) and _read_text(path) != text:
            other = 'val.txt' if name == 'train.txt' else 'train.txt'
            if not (osp.isfile(meta_path)
                    or osp.isfile(osp.join(split_dir, other))):
                # Not a split of ours (no split_meta.json): one half of a
                # hand-made one.
                raise FileNotFoundError(
                    f'{path} exists without {other} (and without '
                    f'split_meta.json): a hand-made split needs both lists, '
                    f'train.txt and val.txt, in {split_dir}. Add {other}, '
                    f'or move {name} away to have a split made.')
            # The same settings, other ids: edited lists, or a split_first
            # split of a version that drew it apart from balance_first's.
            older = (' (split_first splits written before 2026-11-28 drew '
                     'their validation set apart from balance_first\'s; '
                     'see docs/data_preparation.md)'
                     if meta.get('order') == 'split_first' else '')
            raise FileExistsError(
                f'{path} exists and holds a different split than the one '
                f'requested{older}. {hint}')
    texts['split_meta.json'] = json.dumps(
        dict(settings=meta, counts=result.counts), indent=2,
        sort_keys=True) + '\n'
    for name, text in texts.items():
        path = osp.join(split_dir, name)
        if osp.isfile(path):
            continue
        try:
            write_atomically(path, text.encode('utf-8'))
        except OSError as err:
            raise _unwritable(split_dir, err) from None


def _unwritable(split_dir: str, err: OSError) -> OSError:
    """The error of split files that cannot be written (a read-only data
    folder, say), with the way out."""
    message = (
        f'Cannot write the split files in {split_dir} '
        f'({err.strerror or err}): give the data sets a split_dir you can '
        f'write to, an absolute path (train_dataloader.dataset.split_dir '
        f'and its val and test siblings; tools/dataset_stats.py '
        f'--split-dir)')
    # OSError(errno, ...) is the errno's subclass (PermissionError, ...).
    return OSError(message) if err.errno is None else OSError(
        err.errno, message)


def _read_meta(path: str) -> dict:
    try:
        meta = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f'{path} is not valid JSON: {err}') from None
    if not isinstance(meta, dict):
        raise ValueError(f'{path} must hold a JSON object')
    return meta


def _read_ids(path: str) -> List[str]:
    lines: Dict[str, List[int]] = {}
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if line.strip():
            lines.setdefault(line.strip(), []).append(number)
    repeated = [(i, n) for i, n in lines.items() if len(n) > 1]
    if repeated:
        shown = '; '.join(
            f'{i} on lines {", ".join(map(str, n))}' for i, n in repeated[:5])
        raise ValueError(f'{path} lists {len(repeated)} ImageId(s) more than '
                         f'once: {shown}')
    return list(lines)


def read_split(split_dir: str) -> SplitResult:
    """Read a split written by :func:`write_split` (or by hand).

    Args:
        split_dir (str): Directory holding ``train.txt`` and ``val.txt``
            (one ImageId per line) and optionally ``split_meta.json``.

    Returns:
        SplitResult: The ids in file order; ``counts`` from
        ``split_meta.json`` when present, else empty.
    """
    paths = [osp.join(split_dir, n) for n in ('train.txt', 'val.txt')]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        raise FileNotFoundError(f'Split file(s) not found: {missing}')
    train, val = (_read_ids(p) for p in paths)
    overlap = set(train) & set(val)
    if overlap:
        raise ValueError(
            f'{len(overlap)} ImageId(s) are in both {paths[0]} and '
            f'{paths[1]}, e.g. {sorted(overlap)[:5]}')
    meta_path = osp.join(split_dir, 'split_meta.json')
    counts = {}
    if osp.isfile(meta_path):
        counts = _read_meta(meta_path).get('counts', {})
    return SplitResult(train=train, val=val, counts=counts)
