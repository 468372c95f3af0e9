"""Resize whose label maps stay aligned with the image."""
from __future__ import annotations

import cv2
import numpy as np
from mmseg.datasets.transforms import Resize
from mmseg.registry import TRANSFORMS

# The dtypes cv2.resize takes with INTER_NEAREST_EXACT.
_EXACT_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32,
                 np.float32, np.float64)


@TRANSFORMS.register_module()
class AlignedResize(Resize):
    """MMSeg's :class:`~mmseg.datasets.transforms.Resize` with the label
    maps resampled at pixel centres, as the image is.

    MMSeg resizes the maps in ``seg_fields`` (with its default ``cv2``
    backend) with OpenCV's ``INTER_NEAREST``, which takes each output
    pixel from the input pixel under its corner, while the bilinear image
    resize samples at pixel centres: at the recipe's scales (1024 px to
    410-640) a label lands on average half a pixel below and to the right
    of the image (up to one).
    ``INTER_NEAREST_EXACT`` samples at the centres, so labels and image
    stay aligned; the maps take the image's new size. Everything else is
    MMSeg's ``Resize`` (whose resize it falls back on without an image, or
    for a map of a dtype OpenCV cannot resize so; with the ``pillow``
    backend MMSeg's is already centred, and this one gives the same).

    Use it in place of ``Resize``, or as ``RandomResize``'s
    ``resize_type='mmseg.AlignedResize'`` (mmcv builds that one from its
    own registry, which finds this class by its scope).

    Args:
        See :class:`mmseg.datasets.transforms.Resize`.
    """

    def _resize_seg(self, results: dict) -> None:
        maps = [key for key in results.get('seg_fields', [])
                if results.get(key) is not None]
        if results.get('img') is None or any(
                results[key].dtype.type not in _EXACT_DTYPES
                for key in maps):
            super()._resize_seg(results)
            return
        height, width = results['img_shape'][:2]
        for key in maps:
            results[key] = cv2.resize(results[key], (width, height),
                                      interpolation=cv2.INTER_NEAREST_EXACT)
