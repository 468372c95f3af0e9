"""The SIIM-ACR Pneumothorax Segmentation (Kaggle 2019) dataset."""
from __future__ import annotations

import csv
import difflib
import hashlib
import inspect
import logging
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Union

from mmengine.logging import print_log
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .files import list_files
from .rle import EMPTY_RLE, rle_validate
from .split import (SPLIT_ORDERS, SplitResult, balance_and_split, count_split,
                    read_split, write_split)

__all__ = ['SIIMPneumothoraxDataset', 'read_image_ids']

# Default image directory and annotation file of each layout, relative to
# ``data_root`` (Kaggle's names).
_LAYOUT_DEFAULTS = dict(
    dicom=dict(image_dir='dicom-images-train', ann_file='train-rle.csv'),
    png=dict(image_dir='png_images', ann_file='stage_1_train_images.csv'))
_TRUE = ('1', 'true', 'yes')
_FALSE = ('0', 'false', 'no')


def _read_csv(path: str, required: Sequence[str]) -> List[Dict[str, str]]:
    """Read a CSV into dicts keyed by stripped column names.

    Stage-1 files spell columns with a leading space (`` EncodedPixels``);
    names and values are stripped, and rows are returned with their line
    number under ``'_line'`` for error messages.
    """
    # An RLE of a fragmented 1024 x 1024 mask can pass csv's default field
    # limit (128 KiB); the worst case, alternating pixels, is about 7 MB.
    limit = csv.field_size_limit(max(csv.field_size_limit(), 2**24))
    try:
        with open(path, newline='', encoding='utf-8-sig') as f:
            reader = csv.reader(f)
            try:
                return _read_rows(path, reader, required)
            except csv.Error as err:
                raise ValueError(
                    f'{path}, line {reader.line_num}: {err}') from None
    except UnicodeDecodeError as err:
        raise ValueError(f'{path} is not UTF-8 text: {err}') from None
    finally:
        csv.field_size_limit(limit)


def read_image_ids(path: str) -> Dict[str, str]:
    """The ImageId of each file a CSV names: the PNG re-release's
    ``stage_1_train_images.csv`` (or a test list with the same columns),
    whose files are named by ``new_filename``, not by their ImageId.

    Args:
        path (str): A CSV with the columns ``ImageId`` and
            ``new_filename`` (others are ignored).

    Returns:
        dict[str, str]: ``new_filename`` -> ``ImageId``.

    Raises:
        ValueError: The CSV is malformed, or names a file under two
            ImageIds or an ImageId for two files (naming the line); a
            repeated row is the same pairing and counts once.
    """
    ids: Dict[str, str] = {}
    files: Dict[str, str] = {}  # ImageId -> its new_filename
    for row in _read_csv(path, ('ImageId', 'new_filename')):
        where = f'{path}, line {row["_line"]}'
        name, image_id = row['new_filename'], row['ImageId']
        if not name or not image_id:
            raise ValueError(f'{where}: an empty ImageId or new_filename')
        if ids.setdefault(name, image_id) != image_id:
            raise ValueError(f'{where}: new_filename {name} is listed for '
                             f'ImageId {image_id} and ImageId {ids[name]}')
        if files.setdefault(image_id, name) != name:
            raise ValueError(f'{where}: ImageId {image_id} is listed for '
                             f'new_filename {name} and new_filename '
                             f'{files[image_id]}')
    return ids


def _read_rows(path: str, reader, required: Sequence[str]
               ) -> List[Dict[str, str]]:
    header = next(reader, None)
    if header is None:
        raise ValueError(f'{path} is empty, expected a header with '
                         f'columns {list(required)}')
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f'{path} lacks the column(s) {missing}; its '
                         f'header is {header}')
    index = {c: header.index(c) for c in required}
    rows = []
    for row in reader:
        if not any(v.strip() for v in row):
            continue
        # Fewer values: a truncated row; more: a comma inside a value.
        # Either way the columns cannot be trusted.
        if len(row) != len(header):
            raise ValueError(
                f'{path}, line {reader.line_num}: {len(row)} values, '
                f'expected {len(header)} (columns {header})')
        rec = {c: row[i].strip() for c, i in index.items()}
        if rec.get('ImageId') == '':
            raise ValueError(f'{path}, line {reader.line_num}: the ImageId '
                             'is empty')
        rec['_line'] = str(reader.line_num)
        rows.append(rec)
    return rows


def _examples(ids) -> str:
    ids = sorted(ids)
    more = ', ...' if len(ids) > 5 else ''
    return ', '.join(ids[:5]) + more


def _check_arguments(kwargs: dict, name: str) -> None:
    """Refuse an argument neither SIIMPneumothoraxDataset nor mmseg's
    BaseSegDataset takes, naming the class ``name`` (the class's own name)
    and the nearest argument: Python's own error names
    BaseSegDataset.__init__, where a config never mentions it."""
    own = inspect.signature(SIIMPneumothoraxDataset.__init__).parameters
    base = inspect.signature(BaseSegDataset.__init__).parameters
    if any(p.kind == p.VAR_KEYWORD for p in base.values()):
        return  # a base class that takes any name decides itself
    known = [arg for arg in [*own, *base] if arg not in ('self', 'kwargs')]
    for key in kwargs:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f'; did you mean {near[0]!r}?' if near else ''
            raise TypeError(f'{name} got an unexpected argument '
                            f'{key!r}{hint}')


@DATASETS.register_module()
class SIIMPneumothoraxDataset(BaseSegDataset):
    """SIIM-ACR Pneumothorax dataset, from the raw DICOM release or the PNG
    re-release, with a reproducible negative undersampling and train/val
    split.

    Two on-disk layouts under ``data_root``:

    .. code-block:: none

        layout='dicom'                   layout='png'
        ├── dicom-images-train/          ├── png_images/<new_filename>
        │   └── <Study>/<Series>/        ├── png_masks/<new_filename>
        │       └── <ImageId>.dcm        └── stage_1_train_images.csv
        └── train-rle.csv

    ``train-rle.csv`` has the columns ``ImageId`` and ``EncodedPixels``
    (stage 1 spells it `` EncodedPixels``), one row per pneumothorax
    region, ``-1`` for an image without one. ``stage_1_train_images.csv``
    has ``ImageId``, ``new_filename`` and ``has_pneumo`` (0/1); its masks
    are 0/255 PNGs. Column names and values may carry spaces.

    Each data info holds ``img_path``, ``image_id`` (the DICOM
    SOPInstanceUID, also for the PNG layout), ``has_pneumothorax`` (read
    by class-balanced samplers), ``seg_fields``, ``label_map``,
    ``reduce_zero_label`` and either ``rle`` (DICOM layout: the image's
    RLE strings, one per region; ``[]`` for an image without
    pneumothorax, ``-1`` rows are dropped; and ``rle_source``, the CSV and
    the lines of those strings, for error messages) or ``seg_map_path``
    (PNG layout, with ``label_map={255: 1}`` for mmseg's
    ``LoadAnnotations``).
    Label values are 0 (background) and 1 (pneumothorax).

    With ``split='train'`` or ``'val'`` the images listed in
    ``<data_root>/<split_dir>/{train,val}.txt`` are used. When these files
    do not exist they are computed with
    :func:`~mmseg_ptx.datasets.split.balance_and_split` and written with
    ``split_meta.json`` (the settings and a fingerprint of the labels), so
    a run can be repeated and inspected; files made with other settings or
    for other data are an error, never overwritten. Hand-made
    ``train.txt``/``val.txt`` without ``split_meta.json`` are used as they
    are (with a warning).

    Images only in the annotation file or only on disk are skipped with a
    warning (``strict=True``: an error).

    Args:
        data_root (str): Root of the data set, e.g. ``'data/siim'``.
        pipeline (list[dict | Callable]): Processing pipeline.
            Defaults to [].
        layout (str): ``'dicom'`` or ``'png'``. Defaults to ``'dicom'``.
        split (str, optional): ``None`` (every labelled image, neither
            balanced nor split), ``'train'`` or ``'val'``.
            Defaults to None.
        ann_file (str, optional): Annotation CSV relative to ``data_root``.
            Defaults to ``'train-rle.csv'`` (dicom) or
            ``'stage_1_train_images.csv'`` (png).
        image_dir (str, optional): Image directory relative to
            ``data_root``, searched recursively for ``*.dcm`` in the dicom
            layout. Defaults to ``'dicom-images-train'`` (dicom) or
            ``'png_images'`` (png).
        mask_dir (str): Mask directory of the png layout.
            Defaults to ``'png_masks'``.
        split_dir (str): Directory of the split files, relative to
            ``data_root``, or absolute (for a read-only data folder).
            Defaults to ``'splits'``.
        neg_keep_ratio (float): Fraction of negative images kept; 1.0
            keeps all. Defaults to 0.15.
        val_ratio (float): Fraction of each class sent to validation.
            Defaults to 0.2.
        split_seed (int): Seed of undersampling and split. Defaults to 42.
        split_order (str): ``'balance_first'`` (the reference: undersample,
            then split, so validation is balanced too) or
            ``'split_first'`` (validation keeps the natural distribution).
            Defaults to ``'balance_first'``.
        strict (bool): Raise instead of skipping images that lack a label
            or a file. Defaults to False.
        **kwargs: Further arguments of
            :class:`~mmseg.datasets.BaseSegDataset` (``test_mode``,
            ``lazy_init``, ``serialize_data``, ``indices``, ``metainfo``
            (its ``classes``, if given, must be this dataset's two in
            order), ``max_refetch``...).
    """
    METAINFO = dict(
        classes=('background', 'pneumothorax'),
        palette=[[0, 0, 0], [255, 64, 64]])

    def __init__(self,
                 data_root: str,
                 pipeline: List[Union[dict, Callable]] = [],
                 layout: str = 'dicom',
                 split: Optional[str] = None,
                 ann_file: Optional[str] = None,
                 image_dir: Optional[str] = None,
                 mask_dir: str = 'png_masks',
                 split_dir: str = 'splits',
                 neg_keep_ratio: float = 0.15,
                 val_ratio: float = 0.2,
                 split_seed: int = 42,
                 split_order: str = 'balance_first',
                 strict: bool = False,
                 **kwargs) -> None:
        if layout not in _LAYOUT_DEFAULTS:
            raise ValueError(f'layout must be one of '
                             f'{tuple(_LAYOUT_DEFAULTS)}, got {layout!r}')
        if split not in (None, 'train', 'val'):
            raise ValueError(
                f"split must be None, 'train' or 'val', got {split!r}")
        if split_order not in SPLIT_ORDERS:
            raise ValueError(f'split_order must be one of {SPLIT_ORDERS}, '
                             f'got {split_order!r}')
        _check_arguments(kwargs, type(self).__name__)
        if kwargs.pop('reduce_zero_label', False):
            raise ValueError('SIIMPneumothoraxDataset labels background as '
                             '0, reduce_zero_label must be False')
        if not data_root:
            raise ValueError('data_root is required')
        if 'data_prefix' in kwargs:
            raise ValueError(
                'SIIMPneumothoraxDataset takes its folders as image_dir '
                "(and mask_dir, layout='png'), relative to data_root, not "
                f"as data_prefix (got {kwargs['data_prefix']!r})")
        classes = (kwargs.get('metainfo') or {}).get('classes')
        label_map = self.get_label_map(classes)
        if label_map is not None:
            # The masks, the sampler's positives, the metric and the
            # post-processing all take label 1 as pneumothorax.
            raise ValueError(
                f"SIIMPneumothoraxDataset's classes are "
                f"{self.METAINFO['classes']} (labels 0 and 1); metainfo "
                f'classes {tuple(classes)} would relabel them '
                f'({label_map}), which its loaders, sampler, metric and '
                'post-processing do not follow.')
        defaults = _LAYOUT_DEFAULTS[layout]
        self.layout = layout
        self.split = split
        self.split_dir = osp.join(data_root, split_dir)
        self.neg_keep_ratio = neg_keep_ratio
        self.val_ratio = val_ratio
        self.split_seed = split_seed
        self.split_order = split_order
        self.strict = strict
        data_prefix = dict(img_path=image_dir or defaults['image_dir'])
        if layout == 'png':
            data_prefix['seg_map_path'] = mask_dir
        super().__init__(
            ann_file=ann_file or defaults['ann_file'],
            data_root=data_root,
            data_prefix=data_prefix,
            pipeline=pipeline,
            reduce_zero_label=False,
            **kwargs)

    # ------------------------------------------------------------------
    # Loading
    # ------------------------------------------------------------------
    def load_data_list(self) -> List[dict]:
        """Load the labelled images, then select ``split`` if given.

        Returns:
            list[dict]: Data infos sorted by ImageId.
        """
        if not osp.isdir(self.data_root):
            # The configs' data_root is relative: to the current folder.
            where = '' if osp.isabs(self.data_root) else (
                f' ({osp.abspath(self.data_root)}: a relative data_root is '
                f'read from the current folder; run from the one the '
                f'config was written for, or give an absolute data_root)')
            raise FileNotFoundError(
                f'data_root {self.data_root} is not a directory{where}')
        img_dir = self.data_prefix['img_path']
        if not osp.isdir(img_dir):
            raise FileNotFoundError(
                f'Image directory {img_dir} not found ({self.layout} '
                f'layout)')
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(
                f'Annotation file {self.ann_file} not found ({self.layout} '
                f'layout)')
        if self.layout == 'dicom':
            data_list = self._load_dicom_layout()
        else:
            data_list = self._load_png_layout()
        if not data_list:
            raise ValueError(
                f'No labelled image found: {self.ann_file} and {img_dir} '
                f'have no ImageId in common')
        if self.split is None:
            return data_list
        split = self.load_or_create_split(data_list)
        return self.select_split(data_list, split, self.split)

    def select_split(self, data_list: Sequence[dict], split: SplitResult,
                     which: str) -> List[dict]:
        """Pick the data infos of one side of a split.

        Args:
            data_list (Sequence[dict]): All labelled images
                (``split=None``).
            split (SplitResult): The split.
            which (str): ``'train'`` or ``'val'``.

        Returns:
            list[dict]: The infos, in the order of the split file.
        """
        wanted = split.train if which == 'train' else split.val
        by_id = {info['image_id']: info for info in data_list}
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            raise ValueError(
                f'{len(unknown)} ImageId(s) of the {which} split in '
                f'{self.split_dir} are not labelled images of '
                f'{self.data_root} (e.g. {_examples(unknown)}): the split '
                f'was made for other data. Choose another split_dir or '
                f'delete the split files.')
        if not wanted:
            hint = ('' if which == 'train' else
                    f' (val_ratio={self.val_ratio}: 0 puts every image in '
                    'training); set val_ratio > 0, or train without '
                    'validation (val_dataloader, val_cfg and val_evaluator '
                    'None)')
            raise ValueError(f'The {which} split in {self.split_dir} is '
                             f'empty{hint}')
        return [by_id[i] for i in wanted]

    def get_cat_ids(self, idx: int) -> List[int]:
        """The classes image ``idx`` shows, which mmengine's
        ``ClassBalancedDataset`` repeats rare ones by.

        Args:
            idx (int): The index in the data set.

        Returns:
            list[int]: ``[0, 1]`` with pneumothorax, ``[0]`` without
            (every radiograph has background).
        """
        return [0, 1] if self.get_data_info(idx)['has_pneumothorax'] else [0]

    def _base_info(self, image_id: str, img_path: str,
                   has_pneumothorax: bool) -> dict:
        return dict(
            img_path=img_path,
            image_id=image_id,
            has_pneumothorax=has_pneumothorax,
            label_map=self.label_map,
            reduce_zero_label=self.reduce_zero_label,
            seg_fields=[])

    def _report(self, ids, what: str) -> None:
        """Warn about (or, if strict, refuse) images that are skipped."""
        if not ids:
            return
        msg = (f'{len(ids)} image(s) {what} (e.g. {_examples(ids)})')
        if self.strict:
            raise ValueError(msg + '; strict=True')
        print_log(msg + '; skipped.', logger='current',
                  level=logging.WARNING)

    def _load_dicom_layout(self) -> List[dict]:
        img_dir = self.data_prefix['img_path']
        paths: Dict[str, str] = {}
        for rel in list_files(img_dir, '.dcm'):
            image_id = osp.splitext(osp.basename(rel))[0]
            path = osp.join(img_dir, rel)
            if image_id in paths:
                raise ValueError(
                    f'ImageId {image_id} is found twice: {paths[image_id]} '
                    f'and {path}')
            paths[image_id] = path

        rles: Dict[str, List[str]] = {}
        lines: Dict[str, List[str]] = {}  # of the mask rows
        for row in _read_csv(self.ann_file, ('ImageId', 'EncodedPixels')):
            where = (f'{self.ann_file}, line {row["_line"]}: ImageId '
                     f'{row["ImageId"]}')
            if not row['EncodedPixels']:
                # A truncated row, not a negative image: those say -1.
                raise ValueError(
                    f'{where} has an empty EncodedPixels (an image without '
                    f'pneumothorax is {EMPTY_RLE})')
            # Syntax now, with the file and line; the bounds need the image
            # and are checked when it is loaded.
            try:
                rle_validate(row['EncodedPixels'])
            except ValueError as err:
                raise ValueError(f'{where}: {err}') from None
            rles.setdefault(row['ImageId'], []).append(row['EncodedPixels'])
            if row['EncodedPixels'] != EMPTY_RLE:
                lines.setdefault(row['ImageId'], []).append(row['_line'])

        self._report(
            set(rles) - set(paths),
            f'are listed in {self.ann_file} but have no .dcm file under '
            f'{img_dir}')
        self._report(
            set(paths) - set(rles),
            f'under {img_dir} have no row in {self.ann_file}')

        data_list = []
        contradictory = []
        for image_id in sorted(set(rles) & set(paths)):
            rows = rles[image_id]
            positive = [r for r in rows if r != EMPTY_RLE]
            if positive and len(positive) < len(rows):
                contradictory.append(image_id)
            info = self._base_info(image_id, paths[image_id], bool(positive))
            info['rle'] = positive
            if positive:
                numbers = lines[image_id]
                info['rle_source'] = (
                    f'{self.ann_file}, line{"s" * (len(numbers) > 1)} '
                    f'{", ".join(numbers)}')
            data_list.append(info)
        if contradictory:
            print_log(
                f'{len(contradictory)} image(s) have both -1 and mask rows '
                f'in {self.ann_file} (e.g. {_examples(contradictory)}); '
                f'their mask rows are used.',
                logger='current',
                level=logging.WARNING)
        return data_list

    def _load_png_layout(self) -> List[dict]:
        img_dir = self.data_prefix['img_path']
        mask_dir = self.data_prefix['seg_map_path']
        if not osp.isdir(mask_dir):
            raise FileNotFoundError(
                f'Mask directory {mask_dir} not found (png layout)')
        images = set(list_files(img_dir, '.png'))
        masks = set(list_files(mask_dir, '.png'))

        rows: Dict[str, dict] = {}
        owners: Dict[str, str] = {}  # new_filename -> its ImageId
        for row in _read_csv(self.ann_file,
                             ('ImageId', 'new_filename', 'has_pneumo')):
            where = f'{self.ann_file}, line {row["_line"]}'
            if row['ImageId'] in rows:
                raise ValueError(
                    f'{where}: ImageId {row["ImageId"]} is listed twice')
            # One file under two ImageIds would be two samples, possibly
            # one in training and one in validation.
            owner = owners.setdefault(row['new_filename'], row['ImageId'])
            if owner != row['ImageId']:
                raise ValueError(
                    f'{where}: new_filename {row["new_filename"]} is listed '
                    f'for ImageId {row["ImageId"]} and ImageId {owner}')
            flag = row['has_pneumo'].lower()
            if flag not in _TRUE + _FALSE:
                raise ValueError(f'{where}: has_pneumo must be 0 or 1, got '
                                 f'{row["has_pneumo"]!r}')
            rows[row['ImageId']] = dict(
                filename=row['new_filename'], positive=flag in _TRUE)

        listed = {r['filename'] for r in rows.values()}
        self._report(
            {i for i, r in rows.items() if r['filename'] not in images},
            f'are listed in {self.ann_file} but their image is missing '
            f'from {img_dir}')
        self._report(
            {i for i, r in rows.items()
             if r['filename'] in images and r['filename'] not in masks},
            f'are listed in {self.ann_file} but their mask is missing '
            f'from {mask_dir}')
        self._report(images - listed,
                     f'in {img_dir} are not listed in {self.ann_file}')

        data_list = []
        for image_id in sorted(rows):
            row = rows[image_id]
            if row['filename'] not in images or row['filename'] not in masks:
                continue
            info = self._base_info(image_id,
                                   osp.join(img_dir, row['filename']),
                                   row['positive'])
            info['seg_map_path'] = osp.join(mask_dir, row['filename'])
            # The masks are 0/255. LoadBinaryMaskFromFile reads any
            # non-zero pixel as 1; mmseg's own LoadAnnotations, which a
            # user's pipeline may hold instead, would keep 255, its ignore
            # index, and train and score no pneumothorax at all.
            info['label_map'] = {255: 1}
            data_list.append(info)
        return data_list

    # ------------------------------------------------------------------
    # Split
    # ------------------------------------------------------------------
    def split_settings(self, data_list: Sequence[dict]) -> dict:
        """Settings recorded in ``split_meta.json``.

        Besides the balancing options they fingerprint the labelled images
        (``labels_sha256`` over the sorted ``ImageId`` and label pairs) so
        that split files made for other data are detected.

        Args:
            data_list (Sequence[dict]): All labelled images
                (``split=None``).

        Returns:
            dict: JSON-serialisable settings.
        """
        labels = sorted(
            (i['image_id'], int(i['has_pneumothorax'])) for i in data_list)
        digest = hashlib.sha256(''.join(
            f'{i}\t{p}\n' for i, p in labels).encode('utf-8')).hexdigest()
        return dict(
            neg_keep_ratio=self.neg_keep_ratio,
            val_ratio=self.val_ratio,
            seed=self.split_seed,
            order=self.split_order,
            num_images=len(labels),
            num_positive=sum(p for _, p in labels),
            labels_sha256=digest)

    def load_or_create_split(self, data_list: Sequence[dict]) -> SplitResult:
        """Read the split files of ``split_dir``, or compute and write them.

        Args:
            data_list (Sequence[dict]): All labelled images
                (``split=None``).

        Returns:
            SplitResult: The split, with counts.
        """
        ids = [i['image_id'] for i in data_list]
        labels = {i['image_id']: bool(i['has_pneumothorax'])
                  for i in data_list}

        def compute() -> SplitResult:
            return balance_and_split(
                ids, [labels[i] for i in ids],
                neg_keep_ratio=self.neg_keep_ratio,
                val_ratio=self.val_ratio,
                seed=self.split_seed,
                order=self.split_order)

        has_lists = all(
            osp.isfile(osp.join(self.split_dir, n))
            for n in ('train.txt', 'val.txt'))
        has_meta = osp.isfile(osp.join(self.split_dir, 'split_meta.json'))
        if has_lists and not has_meta:
            existing = read_split(self.split_dir)
            try:
                computed = compute()
            except ValueError:
                # The settings give no split of this data (too few images
                # for val_ratio, say), so the lists are not one of ours.
                computed = None
            # Identical lists are another DDP rank's half-written split.
            if computed is None or (existing.train, existing.val) != (
                    computed.train, computed.val):
                print_log(
                    f'Using the hand-made split in {self.split_dir} (no '
                    f'split_meta.json): neg_keep_ratio, val_ratio, '
                    f'split_seed and split_order are ignored.',
                    logger='current',
                    level=logging.WARNING)
                # Unknown ids are reported by select_split.
                if all(i in labels for i in existing.train + existing.val):
                    existing.counts = count_split(existing.train,
                                                  existing.val, labels)
                return existing
        else:
            computed = compute()
        # Raises if the files hold a split made with other settings or
        # data, or edited lists; otherwise they equal ``computed``.
        write_split(self.split_dir, computed,
                    self.split_settings(data_list))
        return computed
