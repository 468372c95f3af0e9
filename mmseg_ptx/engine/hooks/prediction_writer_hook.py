"""Save test predictions: mask files and side-by-side pictures."""
from __future__ import annotations

import os
import os.path as osp
from typing import Dict, Optional, Sequence, Set, Tuple

import cv2
import numpy as np
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from mmseg_ptx.datasets.transforms import LoadDicomImageFromFile
from mmseg_ptx.reporting.figures import save_prediction_panel


def _output_path(folder: str, stem: str, sample) -> str:
    """``folder/<stem>.png``, unless that is the sample's own image or
    ground-truth mask (``--out`` given the data set's mask folder of the
    PNG layout, whose masks are named like their images): those are the
    user's data, never written over."""
    path = osp.join(folder, f'{stem}.png')
    own = [sample.metainfo.get(key) for key in ('img_path', 'seg_map_path')]
    if any(p and osp.realpath(p) == osp.realpath(path) for p in own):
        raise OSError(f'{path} is a file of the test set itself; write the '
                      'predictions to another folder')
    return path


#: Written into each folder the hook writes to. A later run may write
#: over the predictions in a folder that has it; a folder without it that
#: holds files is someone else's, and refused.
MARKER = 'PREDICTIONS_BY_MMSEG_PTX.txt'


def check_prediction_folder(folder: str,
                            ignore: Sequence[str] = ()) -> None:
    """Refuse a folder for predictions that holds files this hook did not
    write (ground-truth masks named by ImageId, another model's
    predictions): they would be written over.

    Args:
        folder (str): A ``mask_dir`` or ``panel_dir``.
        ignore (Sequence[str]): Names in it that do not count: this run's
            own (its log folder and config, where the folder is the work
            dir). Defaults to ().

    Raises:
        FileExistsError: Naming the folder and some of its files.
    """
    if not osp.isdir(folder):
        return
    entries = sorted(set(os.listdir(folder)) - set(ignore))
    if entries and MARKER not in entries:
        more = ', ...' if len(entries) > 3 else ''
        raise FileExistsError(
            f'{folder} holds files that are not predictions of an earlier '
            f'test run ({", ".join(entries[:3])}{more}); the predictions, '
            'named <ImageId>.png, would mix with them and replace any of '
            'the same name: write them to a new or empty folder')


def _test_set_files(dataset) -> Tuple[Dict[str, str], Set[str]]:
    """``img_path`` -> ImageId of the data infos that name one, and the
    folders of the test set's images and ground-truth masks.

    SIIMPneumothoraxDataset's ``image_id``: in the PNG layout the file is
    named by the re-release's ``new_filename``, not by its ImageId.
    """
    get_info = getattr(dataset, 'get_data_info', None)
    if get_info is None:
        return {}, set()
    ids, folders = {}, set()
    for i in range(len(dataset)):
        info = get_info(i)
        if info.get('image_id'):
            ids[info['img_path']] = info['image_id']
        for key in ('img_path', 'seg_map_path'):
            if info.get(key):
                folders.add(osp.realpath(osp.dirname(info[key])))
    return ids, folders


@HOOKS.register_module()
class PredictionWriterHook(Hook):
    """Write each test prediction as a mask and/or a picture.

    MMSeg's ``SegVisualizationHook`` reads images with mmcv, which cannot
    open DICOM files; this hook reads them with :func:`read_dicom`.
    ``tools/test.py`` adds it for ``--out`` (masks) and ``--show-dir``
    (pictures). Files are named ``<ImageId>.png`` by the test set's data
    infos (``image_id``), else by the image's file stem; every rank
    writes its own images, but not the copies a distributed sampler adds
    to even out the ranks' shares (which another rank writes too, at the
    same time): for a sampler that deals the positions out in turn, as
    mmengine's do (and its ``collect_results`` assumes). Nothing is
    written into a folder of the test set's images or ground-truth masks,
    and a file of the test set itself is never written over; a folder that
    holds files is used only if an earlier run of the hook wrote there
    (:data:`MARKER`, which every rank writes into each folder before its
    first prediction).

    Args:
        mask_dir (str, optional): Folder for 0/255 mask PNGs at the
            original resolution.
        panel_dir (str, optional): Folder for input | ground truth |
            prediction pictures.
    """

    priority = 'LOW'

    def __init__(self,
                 mask_dir: Optional[str] = None,
                 panel_dir: Optional[str] = None) -> None:
        if mask_dir is None and panel_dir is None:
            raise ValueError('PredictionWriterHook needs mask_dir or '
                             'panel_dir')
        # Both are named <ImageId>.png: the pictures would replace the masks.
        if (mask_dir is not None and panel_dir is not None
                and osp.realpath(mask_dir) == osp.realpath(panel_dir)):
            raise ValueError(
                f'PredictionWriterHook: mask_dir and panel_dir (--out and '
                f'--show-dir) are the same folder, {mask_dir}; the pictures '
                'would replace the masks, which have the same names')
        self.mask_dir = mask_dir
        self.panel_dir = panel_dir
        self._names: Dict[str, str] = {}
        # Where this rank's samples sit in the sampler's padded order.
        self._seen = 0
        self._num_images = 0
        # The dataset's own loader: DICOM or PNG/JPEG, as grey.
        self._load_image = LoadDicomImageFromFile(color_type='grayscale')

    def before_test(self, runner) -> None:
        dataset = runner.test_dataloader.dataset
        self._names, data_folders = _test_set_files(dataset)
        self._seen, self._num_images = 0, len(dataset)
        for flag, folder in (('mask_dir (--out)', self.mask_dir),
                             ('panel_dir (--show-dir)', self.panel_dir)):
            if folder is not None and osp.realpath(folder) in data_folders:
                raise OSError(
                    f'PredictionWriterHook: {flag} {folder} holds the test '
                    'set\'s own images or masks; write the predictions to '
                    'another folder')
        folders = [f for f in (self.mask_dir, self.panel_dir)
                   if f is not None]
        # What mmengine made for this run where a folder is the work dir.
        timestamp = getattr(runner, 'timestamp', None)
        own = (timestamp, f'{timestamp}.py') if timestamp else ()
        # Both checked before either is made: one may hold the other.
        for folder in folders:
            check_prediction_folder(folder, ignore=own)
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            # By every rank (every node's disk), before its first
            # prediction: another rank sees an empty folder or the marker.
            with open(osp.join(folder, MARKER), 'w') as f:
                f.write('Predictions written by mmseg_ptx '
                        '(PredictionWriterHook, tools/test.py): files here '
                        'may be replaced by a later test run.\n')

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        rank, world_size = get_dist_info()
        for sample in outputs or []:
            # mmengine's samplers deal the padded index list out in turn,
            # rank r taking positions r, r + world_size, ... (the order
            # collect_results undoes): positions past the data set are
            # the padding.
            position = self._seen * world_size + rank
            self._seen += 1
            if world_size > 1 and position >= self._num_images:
                continue
            stem = self._names.get(sample.img_path) or osp.splitext(
                osp.basename(sample.img_path))[0]
            pred = sample.pred_sem_seg.data[0].cpu().numpy() == 1
            if self.mask_dir is not None:
                path = _output_path(self.mask_dir, stem, sample)
                if not cv2.imwrite(path, pred.astype(np.uint8) * 255):
                    raise OSError(f'Could not write the mask {path}')
            if self.panel_dir is not None:
                gt = (sample.gt_sem_seg.data[0].cpu().numpy() == 1
                      if 'gt_sem_seg' in sample else None)
                image = self._load_image(dict(img_path=sample.img_path))
                save_prediction_panel(
                    image['img'], gt, pred,
                    _output_path(self.panel_dir, stem, sample))
