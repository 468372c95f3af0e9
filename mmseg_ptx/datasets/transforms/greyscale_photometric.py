"""mmseg's photometric jitter, run on the 256 grey levels of a radiograph."""
from __future__ import annotations

import cv2
import numpy as np
from mmseg.datasets.transforms import PhotoMetricDistortion
from mmseg.registry import TRANSFORMS

__all__ = ['GreyscalePhotoMetricDistortion']

#: The 256 grey levels as a 1x256 BGR image (read-only: shared by calls).
_GREY_LEVELS = np.repeat(
    np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
_GREY_LEVELS.setflags(write=False)


def is_grey_bgr(img: np.ndarray) -> bool:
    """Whether ``img`` is an 8-bit, 3-channel image with equal channels.

    Args:
        img (np.ndarray): An image, (H, W) or (H, W, C).

    Returns:
        bool: Whether it is grey in BGR (one lookup table serves all three
        channels).
    """
    return (img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
            and np.array_equal(img[..., 0], img[..., 1])
            and np.array_equal(img[..., 0], img[..., 2]))


@TRANSFORMS.register_module()
class GreyscalePhotoMetricDistortion(PhotoMetricDistortion):
    """:class:`~mmseg.datasets.transforms.PhotoMetricDistortion` through a
    lookup table on grey images: same output, a fraction of the time.

    Every step of mmseg's transform (brightness, contrast, saturation, hue)
    maps a pixel to a value that depends on that pixel alone, so on a grey
    image (three equal 8-bit channels, as
    :class:`LoadDicomImageFromFile` gives) the result is fixed by what the
    transform does to the 256 grey levels. This class runs mmseg's own
    transform on a 1x256 image of those levels, drawing the same random
    numbers in the same order, and looks every pixel up in the result
    (``cv2.LUT``). The output is bit for bit mmseg's for the same random
    state, while mmseg converts the whole image to float32 once or twice and
    to HSV and back up to twice (3.9 of 14.0 ms per image in this project's
    training pipeline, 2.9 with this class; docs/data_preparation.md).

    Single-channel 8-bit images (``LoadDicomImageFromFile(color_type=
    'grayscale')``, before :class:`GreyToBGR`) are looked up the same way:
    the result is one channel of what mmseg gives for the image repeated to
    BGR (mmseg's own transform needs three channels). Other 3-channel
    images (colour, or not 8-bit) go through mmseg's transform unchanged;
    a single-channel image must be 8-bit.

    Args:
        brightness_delta (int): Delta of brightness. Default: 32.
        contrast_range (Sequence[float]): Range of contrast.
            Default: (0.5, 1.5).
        saturation_range (Sequence[float]): Range of saturation.
            Default: (0.5, 1.5).
        hue_delta (int): Delta of hue. Default: 18.
    """

    def transform(self, results: dict) -> dict:
        """Distort ``results['img']`` as mmseg's transform would.

        Args:
            results (dict): Result dict from the loading pipeline.

        Returns:
            dict: Result dict with the image distorted.

        Raises:
            ValueError: For a single-channel image that is not uint8.
        """
        img = results['img']
        if img.ndim == 2:
            if img.dtype != np.uint8:
                raise ValueError(
                    'GreyscalePhotoMetricDistortion takes a single-channel '
                    f'image only as uint8, got {img.dtype} for '
                    f'{results.get("img_path", "the image")}')
        elif not is_grey_bgr(img):
            return super().transform(results)
        table = super().transform({'img': _GREY_LEVELS})['img']
        if img.ndim == 2:
            # Grey levels stay grey (saturation and hue act on colour
            # only), so any channel of the table is the grey mapping.
            table = table[..., 0]
        results['img'] = cv2.LUT(img, table)
        return results
