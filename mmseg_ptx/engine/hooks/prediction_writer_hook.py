"""Save test predictions: mask files and side-by-side pictures."""
from __future__ import annotations

import os
import os.path as osp
from typing import Optional, Sequence

import cv2
import numpy as np
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from mmseg_ptx.datasets.transforms import LoadDicomImageFromFile
from mmseg_ptx.reporting.figures import save_prediction_panel


@HOOKS.register_module()
class PredictionWriterHook(Hook):
    """Write each test prediction as a mask and/or a picture.

    MMSeg's ``SegVisualizationHook`` reads images with mmcv, which cannot
    open DICOM files; this hook reads them with :func:`read_dicom`.
    ``tools/test.py`` adds it for ``--out`` (masks) and ``--show-dir``
    (pictures). Files are named by the image's file stem; every rank
    writes its own images.

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
        # The dataset's own loader: DICOM or PNG/JPEG, as grey.
        self._load_image = LoadDicomImageFromFile(color_type='grayscale')

    def before_test(self, runner) -> None:
        for folder in (self.mask_dir, self.panel_dir):
            if folder is not None:
                os.makedirs(folder, exist_ok=True)

    def after_test_iter(self,
                        runner,
                        batch_idx: int,
                        data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        for sample in outputs or []:
            stem = osp.splitext(osp.basename(sample.img_path))[0]
            pred = sample.pred_sem_seg.data[0].cpu().numpy() == 1
            if self.mask_dir is not None:
                path = osp.join(self.mask_dir, f'{stem}.png')
                if not cv2.imwrite(path, pred.astype(np.uint8) * 255):
                    raise OSError(f'Could not write the mask {path}')
            if self.panel_dir is not None:
                gt = (sample.gt_sem_seg.data[0].cpu().numpy() == 1
                      if 'gt_sem_seg' in sample else None)
                image = self._load_image(dict(img_path=sample.img_path))
                save_prediction_panel(
                    image['img'], gt, pred,
                    osp.join(self.panel_dir, f'{stem}.png'))
