"""Image and pixel statistics of SIIM-ACR: counts, imbalance, class weights.

Used by ``tools/dataset_stats.py``; its JSON output is read by configs
(``class_weights``) and by the report.
"""
from __future__ import annotations

import logging
import multiprocessing
import os.path as osp
from typing import Iterator, List, Tuple

import numpy as np
from mmengine.logging import print_log
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .rle import rle_decode_union
from .siim import SIIMPneumothoraxDataset
from .split import ids_sha256, kept_images_label
from .transforms.loading import rle_location, read_binary_mask

__all__ = [
    'count_foreground_pixels', 'compute_dataset_statistics',
    'format_statistics'
]


def count_foreground_pixels(data_info: dict) -> Tuple[int, int]:
    """Count the pneumothorax pixels and all pixels of one image.

    DICOM-layout infos (with ``'rle'``) are sized from the DICOM header
    only; PNG-layout infos (with ``'seg_map_path'``) read the mask, and
    the image's header for its size: a mask of another size than its
    image is refused, as training refuses it.

    Args:
        data_info (dict): A :class:`SIIMPneumothoraxDataset` data info.

    Returns:
        tuple[int, int]: (pneumothorax pixels, total pixels).

    Raises:
        ValueError: A malformed RLE, or a mask whose size is not its
            image's.
        OSError: An image or mask that cannot be read.
    """
    if 'rle' in data_info:
        # Imported here: only the DICOM layout needs pydicom.
        from .dicom import read_dicom_shape
        rows, cols = read_dicom_shape(data_info['img_path'])
        try:
            mask = rle_decode_union(data_info['rle'], rows, cols)
        except ValueError as err:
            raise ValueError(
                f'Bad RLE for image {data_info["image_id"]} '
                f'({rle_location(data_info)}{rows}x{cols} image): {err}'
            ) from None
    else:
        mask = read_binary_mask(data_info['seg_map_path'])
        image_shape = _image_shape(data_info['img_path'])
        if mask.shape != image_shape:
            raise ValueError(
                f'Mask {data_info["seg_map_path"]} has size {mask.shape}, '
                f'but the image {data_info["img_path"]} has size '
                f'{image_shape}')
    return int(np.count_nonzero(mask)), int(mask.size)


def _image_shape(path: str) -> Tuple[int, int]:
    """(height, width) of an image from its header, without decoding."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except FileNotFoundError:
        raise FileNotFoundError(f'Image file not found: {path}') from None
    except (UnidentifiedImageError, OSError) as err:
        raise OSError(f'Cannot read the size of image file {path} '
                      f'(corrupt, empty or not an image): {err}') from None
    return height, width


def _count(data_info: dict) -> Tuple[str, bool, int, int]:
    fg, total = count_foreground_pixels(data_info)
    return (data_info['image_id'], data_info['has_pneumothorax'], fg, total)


def _iter_counts(infos: List[dict],
                 workers: int) -> Iterator[Tuple[str, bool, int, int]]:
    if workers <= 1:
        yield from map(_count, infos)
        return
    # Small chunks keep the progress bar moving; the pool is closed even
    # when the caller stops early.
    chunksize = max(1, len(infos) // (workers * 32))
    with multiprocessing.Pool(workers) as pool:
        yield from pool.imap(_count, infos, chunksize=chunksize)


def compute_dataset_statistics(data_root: str,
                               layout: str = 'dicom',
                               split_dir: str = 'splits',
                               neg_keep_ratio: float = 0.15,
                               val_ratio: float = 0.2,
                               seed: int = 42,
                               split_order: str = 'balance_first',
                               workers: int = 1,
                               progress: bool = True,
                               **dataset_kwargs) -> dict:
    """Image counts, train/val split and pixel statistics of SIIM-ACR.

    The split is the one :class:`SIIMPneumothoraxDataset` uses with the
    same settings (read from ``split_dir``, or computed and written
    there). Pixels are counted over the WHOLE training split.

    Class weights follow the reference: ``total / (2 * count_c)``, so a
    balanced data set gets weights 1 and the reference's 107.45:1
    imbalance gives [0.5047, 54.2225].

    Args:
        data_root (str): Root of the data set.
        layout (str): ``'dicom'`` or ``'png'``. Defaults to ``'dicom'``.
        split_dir (str): Split directory relative to ``data_root``, or
            absolute. Defaults to ``'splits'``.
        neg_keep_ratio (float): See :class:`SIIMPneumothoraxDataset`.
            Defaults to 0.15.
        val_ratio (float): Defaults to 0.2.
        seed (int): ``split_seed``. Defaults to 42.
        split_order (str): Defaults to ``'balance_first'``.
        workers (int): Processes counting pixels; 1 counts in this process.
            Defaults to 1.
        progress (bool): Show a progress bar. Defaults to True.
        **dataset_kwargs: Further :class:`SIIMPneumothoraxDataset`
            arguments (``image_dir``, ``ann_file``, ``mask_dir``,
            ``strict``).

    Returns:
        dict: With the keys ``classes``, ``class_weights`` (2 floats),
        ``pixel_counts`` (2 ints: background, pneumothorax),
        ``pixel_fractions``, ``imbalance_ratio`` (background pixels per
        pneumothorax pixel), ``num_images`` (``original_positive``,
        ``original_negative``, ``original_total``, ``balanced_positive``,
        ``balanced_negative``, ``train``, ``val``, ``train_positive``,
        ``train_negative``, ``val_positive``, ``val_negative``),
        ``label_mismatches`` (training images whose label disagrees with
        their mask) and ``settings``.
    """
    dataset = SIIMPneumothoraxDataset(
        data_root=data_root,
        layout=layout,
        split=None,
        split_dir=split_dir,
        neg_keep_ratio=neg_keep_ratio,
        val_ratio=val_ratio,
        split_seed=seed,
        split_order=split_order,
        serialize_data=False,
        **dataset_kwargs)
    all_infos = dataset.data_list
    split = dataset.load_or_create_split(all_infos)
    train_infos = dataset.select_split(all_infos, split, 'train')
    if split.val:
        # Only the training pixels are counted, but ids of a hand-made
        # val.txt that are no labelled image must be named here too (an
        # empty validation split, val_ratio=0, is allowed).
        dataset.select_split(all_infos, split, 'val')

    fg_total, px_total = 0, 0
    mismatched = []
    # disable= only to switch the bar off: given, it overrides tqdm's
    # TQDM_DISABLE, which the other tools' bars obey.
    for image_id, positive, fg, total in tqdm(
            _iter_counts(train_infos, workers),
            total=len(train_infos),
            desc='Counting training pixels',
            **({} if progress else dict(disable=True))):
        fg_total += fg
        px_total += total
        if positive != (fg > 0):
            mismatched.append(image_id)
    if mismatched:
        print_log(
            f'{len(mismatched)} training image(s) are labelled '
            f'has_pneumothorax but have an empty mask or vice versa '
            f'(e.g. {sorted(mismatched)[:5]})',
            logger='current',
            level=logging.WARNING)

    bg_total = px_total - fg_total
    if fg_total == 0 or bg_total == 0:
        raise ValueError(
            f'The training split ({len(train_infos)} images) has '
            f'{fg_total} pneumothorax and {bg_total} background pixels: '
            f'class weights are undefined')
    counts = [bg_total, fg_total]
    num_images = dict(split.counts)
    num_images['original_total'] = len(all_infos)
    return dict(
        classes=list(dataset.metainfo['classes']),
        class_weights=[px_total / (2 * c) for c in counts],
        pixel_counts=counts,
        pixel_fractions=[c / px_total for c in counts],
        imbalance_ratio=bg_total / fg_total,
        num_images=num_images,
        label_mismatches=len(mismatched),
        settings=dict(
            data_root=data_root,
            layout=layout,
            split_dir=split_dir,
            neg_keep_ratio=neg_keep_ratio,
            val_ratio=val_ratio,
            seed=seed,
            split_order=split_order,
            pixel_split='train',
            # The training images counted: a report checks its run's
            # train.txt against it (a hand-made split ignores the
            # settings above; images may be added or removed under a
            # kept stats.json). Their ids, not their pixels or masks.
            train_ids_sha256=ids_sha256(split.train)))


def format_statistics(stats: dict) -> str:
    """Format :func:`compute_dataset_statistics` output as Markdown tables.

    Args:
        stats (dict): The statistics.

    Returns:
        str: Markdown, laid out like the reference report.
    """
    n = stats['num_images']
    bg, fg = stats['pixel_counts']
    s = stats['settings']
    kept = kept_images_label(s['split_order']).title()
    lines = [
        '## Dataset Statistics', '', '| Metric | Value |',
        '|--------|-------|',
        f'| **Original Positive Samples** | {n["original_positive"]:,} |',
        f'| **Original Negative Samples** | {n["original_negative"]:,} |',
        f'| **{kept} - Positive** | {n["balanced_positive"]:,} |',
        f'| **{kept} - Negative** | {n["balanced_negative"]:,} |',
        f'| **Training Images** | {n["train"]:,} |',
        f'| **Validation Images** | {n["val"]:,} |',
        f'| **Class Imbalance (Pixel-level)** | '
        f'{stats["imbalance_ratio"]:.2f}:1 (Background:Pneumothorax) |', '',
        '## Split', '', '| Split | Images | Positive | Negative |',
        '|-------|--------|----------|----------|'
    ]
    for name in ('train', 'val'):
        lines.append(f'| {name} | {n[name]:,} | {n[name + "_positive"]:,} '
                     f'| {n[name + "_negative"]:,} |')
    lines += [
        '', f'## Pixel Statistics (whole training split, {n["train"]:,} '
        'images)', '', '| Class | Pixels | Fraction | Class Weight |',
        '|-------|--------|----------|--------------|'
    ]
    for name, count, frac, weight in zip(stats['classes'], (bg, fg),
                                         stats['pixel_fractions'],
                                         stats['class_weights']):
        lines.append(f'| {name} | {count:,} | {frac:.2%} | {weight:.4f} |')
    lines += [
        '', f'Split: order={s["split_order"]}, '
        f'neg_keep_ratio={s["neg_keep_ratio"]}, '
        f'val_ratio={s["val_ratio"]}, seed={s["seed"]} '
        f'({osp.join(s["data_root"], s["split_dir"])}).'
    ]
    return '\n'.join(lines)
