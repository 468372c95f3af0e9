"""Loading transforms for SIIM-ACR radiographs and their masks.

``LoadDicomImageFromFile`` reads the raw DICOMs (or PNG/JPEG re-releases);
``LoadRLEAnnotations`` decodes the competition's ``train-rle.csv`` rows;
``LoadBinaryMaskFromFile`` reads the 0/255 PNG masks of the re-release.
All masks are binary: 0 background, 1 pneumothorax.
"""
from __future__ import annotations

import os
from typing import Optional

import cv2
import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

from ..dicom import is_dicom, read_dicom, scale_to_uint8
from ..rle import rle_decode_union

__all__ = ['LoadDicomImageFromFile', 'LoadRLEAnnotations',
           'LoadBinaryMaskFromFile', 'read_grey_image', 'read_binary_mask']


def _imread(path: str, what: str, flag: int) -> np.ndarray:
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} file not found: {path}')
    try:
        img = mmcv.imread(path, flag=flag)
    except cv2.error:  # an empty file fails OpenCV's assertion
        img = None
    if img is None:
        raise OSError(f'Cannot decode {what.lower()} file {path} '
                      '(corrupt, empty or not an image)')
    return img


def read_grey_image(path: str) -> np.ndarray:
    """Read a PNG/JPEG radiograph as an 8-bit grey image.

    Colour images are converted to grey. 16-bit images (often 12-bit data
    in 16 bits) are scaled from their own min..max to 0..255, as
    :func:`~mmseg_ptx.datasets.dicom.read_dicom` scales deep DICOM data;
    OpenCV's plain grey conversion divides by 256, which leaves such an
    image almost black. The pixels are taken as stored: an EXIF
    orientation tag is ignored, as :func:`read_binary_mask` ignores it
    (OpenCV would rotate the image, and only the image, so it would no
    longer lie on its mask or its RLE's pixel grid).

    Args:
        path (str): The image file.

    Returns:
        np.ndarray: ``uint8`` H x W.

    Raises:
        FileNotFoundError: The file is missing.
        OSError: The file cannot be decoded.
    """
    img = _imread(
        path, 'Image', cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH
        | cv2.IMREAD_IGNORE_ORIENTATION)
    if img.dtype != np.uint8:
        img = scale_to_uint8(img)
    return img


def read_binary_mask(path: str) -> np.ndarray:
    """Read a mask image as ``uint8`` 0/1: any non-zero pixel is
    pneumothorax.

    Read as stored (8 or 16 bits, grey or colour): a grey conversion would
    scale a 16-bit 0/1 mask to 8 bits, all zeros, and could round a faint
    colour to 0. In a colour mask a non-zero value in any colour channel
    counts; alpha is ignored. Masks with one value per region (1, 2, ...)
    count every region.

    Args:
        path (str): The mask file.

    Returns:
        np.ndarray: ``uint8`` H x W, 1 = pneumothorax.

    Raises:
        FileNotFoundError: The file is missing.
        OSError: The file cannot be decoded.
    """
    mask = _imread(path, 'Mask', cv2.IMREAD_UNCHANGED)
    if mask.ndim == 3:
        mask = mask[..., :3].any(axis=2)
    return (mask != 0).astype(np.uint8)


def rle_location(info: dict) -> str:
    """``'<image file>; <CSV>, line(s) N; '`` of a data info, as far as it
    has them (the SIIM dataset's ``img_path`` and ``rle_source``)."""
    parts = [info.get('img_path'), info.get('rle_source')]
    return ''.join(f'{part}; ' for part in parts if part)


def _add_seg_field(results: dict, mask: np.ndarray) -> None:
    results['gt_seg_map'] = mask
    seg_fields = results.setdefault('seg_fields', [])
    if 'gt_seg_map' not in seg_fields:
        seg_fields.append('gt_seg_map')
    # The masks are already 0/1; reducing the zero label would turn
    # background into the ignore index.
    results.setdefault('reduce_zero_label', False)


@TRANSFORMS.register_module()
class LoadDicomImageFromFile(BaseTransform):
    """Load a chest radiograph from a DICOM, PNG or JPEG file.

    DICOM files (``.dcm`` suffix, or the ``DICM`` preamble) go through
    :func:`mmseg_ptx.datasets.dicom.read_dicom` (rescale, VOI window,
    MONOCHROME1 inversion, 8-bit scaling); other files are read with
    ``mmcv.imread`` as grayscale. The grey image is repeated to three
    channels by default so that ImageNet-pretrained backbones and MMSeg's
    ``PackSegInputs`` see the usual H x W x 3 layout.

    Required Keys:

    - img_path

    Modified Keys:

    - img
    - img_shape
    - ori_shape

    Args:
        to_float32 (bool): Convert the image to ``float32``.
            Defaults to False (``uint8``).
        color_type (str): ``'color'`` for H x W x 3 (the grey value in all
            channels) or ``'grayscale'`` for H x W. Defaults to 'color'.
    """

    def __init__(self, to_float32: bool = False,
                 color_type: str = 'color') -> None:
        if color_type not in ('color', 'grayscale'):
            raise ValueError("color_type must be 'color' or 'grayscale', "
                             f'got {color_type!r}')
        self.to_float32 = to_float32
        self.color_type = color_type

    def transform(self, results: dict) -> dict:
        """Load the image named by ``results['img_path']``.

        Args:
            results (dict): Result dict with ``img_path``.

        Returns:
            dict: The dict with ``img``, ``img_shape`` and ``ori_shape``.

        Raises:
            OSError: The file is missing or cannot be decoded (for DICOM a
                :class:`~mmseg_ptx.datasets.dicom.DicomReadError`); the
                message names the file.
        """
        path = str(results['img_path'])
        if is_dicom(path):
            img = read_dicom(path)
        else:
            img = read_grey_image(path)
        if self.color_type == 'color':
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(to_float32={self.to_float32}, '
                f"color_type='{self.color_type}')")


@TRANSFORMS.register_module()
class LoadRLEAnnotations(BaseTransform):
    """Decode the competition RLE rows of an image into a binary mask.

    ``results['rle']`` holds the image's rows of ``train-rle.csv`` (one per
    pneumothorax region; their union is the mask). An empty list or
    ``['-1']`` is an image without pneumothorax. The mask is decoded at the
    original size and orientation (``ori_shape``): in a training pipeline
    put it before any geometric transform, which then applies to image and
    mask alike; in a test or TTA pipeline it may follow the resize and flip,
    which gives MMSeg's ground truth at the original size.

    Required Keys:

    - rle
    - ori_shape (set by the image loading transform)

    Added Keys:

    - gt_seg_map (``uint8`` H x W, values 0/1)
    - seg_fields
    - reduce_zero_label (False, unless already set)
    """

    def transform(self, results: dict) -> dict:
        """Decode ``results['rle']`` into ``results['gt_seg_map']``.

        Args:
            results (dict): Result dict with ``rle`` and ``ori_shape``.

        Returns:
            dict: The dict with the mask added.

        Raises:
            ValueError: Malformed RLE (the message names the image and the
                problem), no ``ori_shape`` (image not loaded yet) or no
                ``rle`` (a PNG-layout sample, say).
        """
        name = results.get('image_id') or results.get('img_path')
        if 'ori_shape' not in results:
            raise ValueError(
                f'LoadRLEAnnotations needs the image size (ori_shape) of '
                f'{name}: put it after the image loading transform')
        if 'rle' not in results:
            hint = (' (a PNG-layout sample: use LoadBinaryMaskFromFile)'
                    if 'seg_map_path' in results else '')
            raise ValueError(
                f'LoadRLEAnnotations found no RLE for {name}: its data info '
                f'has no "rle"{hint}')
        height, width = results['ori_shape'][:2]
        rles = results['rle']
        if isinstance(rles, str):
            rles = [rles]
        try:
            mask = rle_decode_union(rles, height, width)
        except ValueError as err:
            raise ValueError(
                f'Bad RLE for image {name} ({rle_location(results)}'
                f'{height}x{width} image): {err}') from None
        _add_seg_field(results, mask)
        return results


@TRANSFORMS.register_module()
class LoadBinaryMaskFromFile(BaseTransform):
    """Load a 0/255 PNG mask (the PNG re-release) as a 0/1 mask.

    Any non-zero pixel is pneumothorax, so masks saved as 0/1 or resampled
    with soft edges also load as binary masks. Values are read as stored
    (8 or 16 bits); in a colour mask a pixel non-zero in any colour channel
    is pneumothorax (an alpha channel is ignored).

    Required Keys:

    - seg_map_path
    - ori_shape (optional; when present the mask must match it)

    Added Keys:

    - gt_seg_map (``uint8`` H x W, values 0/1)
    - seg_fields
    - reduce_zero_label (False, unless already set)
    """

    def transform(self, results: dict) -> dict:
        """Read ``results['seg_map_path']`` into ``results['gt_seg_map']``.

        Args:
            results (dict): Result dict with ``seg_map_path``.

        Returns:
            dict: The dict with the mask added.

        Raises:
            FileNotFoundError: The mask file is missing.
            OSError: The mask file cannot be decoded.
            ValueError: The mask size differs from the loaded image's.
        """
        path = str(results['seg_map_path'])
        mask = read_binary_mask(path)
        ori_shape: Optional[tuple] = results.get('ori_shape')
        if ori_shape is not None and mask.shape != tuple(ori_shape[:2]):
            raise ValueError(
                f'Mask {path} has size {mask.shape}, but the image '
                f'{results.get("img_path")} has size {tuple(ori_shape[:2])}')
        _add_seg_field(results, mask)
        return results
