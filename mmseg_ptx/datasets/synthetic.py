"""Synthetic chest radiographs with pneumothorax, in the SIIM-ACR layouts.

The real data cannot be redistributed, so tests, the demo and benchmarks
use images drawn here. They imitate what matters for the task: dark lung
fields with branching vessel markings and fine texture, ribs and clavicles
crossing them, a bright mediastinum/spine/heart, the soft-tissue outline,
smooth exposure gradients and noise. A pneumothorax is a crescent along a
lung's lateral or apical edge where the markings are missing (uniform,
slightly darker than lung, ribs still crossing it) bounded by a thin bright
visceral pleural line. Its grey level lies inside the lung's range, so a
model has to use texture and shape, not a threshold.

:func:`write_demo_dataset` writes the raw Kaggle layout
(``dicom-images-train/<Study>/<Series>/<SOP>.dcm`` + ``train-rle.csv``)
and/or the PNG re-release (``png_images``, ``png_masks``,
``stage_1_train_images.csv``). Everything is a function of the seed.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import os.path as osp
import uuid
from collections.abc import Mapping
from typing import Dict, Iterator, Optional, Tuple

import cv2
import numpy as np
import pydicom
from mmengine.logging import print_log
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (ExplicitVRLittleEndian, JPEGBaseline8Bit,
                         SecondaryCaptureImageStorage)

from .files import list_files, remove_paths
from .rle import EMPTY_RLE, rle_decode, rle_encode
from .split import SPLIT_FILES, STATS_FILE

__all__ = ['EncodedMasks', 'synthesize_radiograph', 'write_demo_dataset']

LAYOUTS = ('dicom', 'png', 'both')
#: Written into a folder before its synthetic images: such a folder is
#: regenerated without ``overwrite`` (e.g. after an interrupted run).
SYNTHETIC_MARKER = 'SYNTHETIC_DEMO_DATA.txt'
#: Probability that a positive image has a second region (other lung).
_TWO_REGION_PROB = 0.2
_JPEG_QUALITY = 95
_SHIFT = 4  # fixed-point bits for sub-pixel cv2 drawing
_SCALE = 1 << _SHIFT


# --------------------------------------------------------------- helpers
#: Smooth components are rendered at most at this size and upsampled.
_SMOOTH_SIZE = 256


def _grid(shape: tuple[int, int], size: int, y0: int = 0,
          x0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-centre coordinates of a (sub-)image.

    ``size`` is the full image side; ``(y0, x0)`` the crop's origin.
    """
    ys = (np.arange(y0, y0 + shape[0], dtype=np.float32) + 0.5) / size
    xs = (np.arange(x0, x0 + shape[1], dtype=np.float32) + 0.5) / size
    return np.meshgrid(xs, ys)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int],
                  cells: int, amp: float) -> np.ndarray:
    """Low-frequency noise: a coarse random grid upsampled bicubically."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(grid, (shape[1], shape[0]),
                      interpolation=cv2.INTER_CUBIC) * amp


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur; wide kernels run on a downsampled copy (smooth
    output, a fraction of the cost)."""
    if sigma_px < 0.3:
        return img
    factor = int(sigma_px // 2)
    if factor < 2:
        return cv2.GaussianBlur(img, (0, 0), sigma_px)
    h, w = img.shape
    small = cv2.resize(img, (max(1, w // factor), max(1, h // factor)),
                       interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma_px / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _upsample(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[0] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def _pts(xs: np.ndarray, ys: np.ndarray, size: int) -> np.ndarray:
    """Normalised coordinates -> fixed-point int32 points for cv2."""
    return np.stack([xs * size * _SCALE, ys * size * _SCALE],
                    axis=1).round().astype(np.int32)


def _band(size: int, polylines: list[np.ndarray], thickness: float,
          value: int = 255) -> np.ndarray:
    canvas = np.zeros((size, size), np.uint8)
    cv2.polylines(canvas, polylines, False, value,
                  thickness=max(1, int(round(thickness))),
                  lineType=cv2.LINE_AA, shift=_SHIFT)
    return canvas.astype(np.float32) / 255.0


def _span(lo: float, hi: float, size: int) -> slice:
    """Normalised interval -> pixel slice clipped to the image."""
    return slice(max(0, int(np.floor(lo * size))),
                 min(size, int(np.ceil(hi * size))))


# --------------------------------------------------------------- anatomy
class _Lung:
    """One lung field, computed in its bounding box only.

    ``side`` is +1 for the lung on the image's right (patient's left, next
    to the heart), -1 for the other; local ``u`` grows laterally and ``v``
    downwards, both normalised by the lung's half axes.
    """

    def __init__(self, rng: np.random.Generator, size: int, side: int,
                 cx: float, cy: float, ax: float, ay: float,
                 heart: float) -> None:
        self.side, self.cx, self.cy, self.ax, self.ay = side, cx, cy, ax, ay
        self.rows = _span(cy - 1.05 * ay, cy + 1.2 * ay, size)
        self.cols = _span(cx - 1.2 * ax, cx + 1.2 * ax, size)
        shape = (self.rows.stop - self.rows.start,
                 self.cols.stop - self.cols.start)
        self.xx, self.yy = _grid(shape, size, self.rows.start,
                                 self.cols.start)
        u = ((self.xx - cx) * side / ax
             + _smooth_noise(rng, shape, 5, 0.03))
        v = (self.yy - cy) / ay + _smooth_noise(rng, shape, 5, 0.02)
        # Lateral wall: a tall arc widest below the middle; medial wall
        # flatter and pushed outwards low down by the heart.
        lat = np.sqrt(np.clip(1 - ((v - 0.3) / 1.3) ** 2, 0, None))
        med = -0.6 * np.sqrt(np.clip(1 - ((v - 0.2) / 1.2) ** 2, 0, None))
        med += heart * np.clip((v - 0.05) / 0.7, 0, 1) ** 1.5
        # Diaphragm dome: highest mid-lung, deep costophrenic angles.
        dome = 0.8 + 0.35 * (u - 0.15) ** 2
        self.mask = (v > -1) & (v < dome) & (u < lat) & (u > med)

    def paste(self, full: np.ndarray, crop: np.ndarray) -> None:
        full[self.rows, self.cols] |= crop


def _draw_vessels(rng: np.random.Generator, canvas: np.ndarray,
                  hilum: tuple[float, float], side: int, lung_w: float,
                  size: int) -> None:
    """Branching vessel trees growing from the hilum (in place, uint8)."""
    # (x, y, angle, length, thickness, value, levels left)
    stack = []
    for _ in range(int(rng.integers(4, 7))):
        # Lateral half-plane, fanning up and down from the hilum.
        ang = rng.uniform(-0.45 * np.pi, 0.45 * np.pi)
        angle = ang if side > 0 else np.pi - ang
        stack.append((hilum[0], hilum[1], angle,
                      lung_w * rng.uniform(0.25, 0.35),
                      0.005 * size * rng.uniform(0.8, 1.2),
                      rng.uniform(0.85, 1.0), 6))
    while stack:
        x, y, angle, length, thick, value, levels = stack.pop()
        n_sub = 3
        for _ in range(n_sub):
            angle += rng.normal(0, 0.18)
            nx = x + np.cos(angle) * length / n_sub
            ny = y + np.sin(angle) * length / n_sub
            # Sub-pixel vessels: one pixel wide, fainter.
            shade = value * min(1.0, thick)
            cv2.line(canvas, (int(x * _SCALE), int(y * _SCALE)),
                     (int(nx * _SCALE), int(ny * _SCALE)),
                     int(255 * shade), max(1, int(round(thick))),
                     cv2.LINE_AA, _SHIFT)
            x, y = nx, ny
        if levels > 1:
            n_child = 3 if rng.random() < 0.2 else 2
            for k in range(n_child):
                spread = rng.uniform(0.25, 0.6) * (1 if k % 2 else -1)
                stack.append((x, y, angle + spread,
                              length * rng.uniform(0.65, 0.85),
                              thick * 0.72, value * 0.88, levels - 1))


def _rib_polylines(rng: np.random.Generator, side: int, mid: float,
                   top: float, spacing: float, reach: float
                   ) -> tuple[list[tuple], list[tuple]]:
    """Posterior ribs (arc down laterally) and anterior ribs (slope down
    medially), as normalised (x, y) curves for one side."""
    t = np.linspace(0, 1, 24)
    posterior, anterior = [], []
    for i in range(10):
        y0 = top + i * spacing + rng.normal(0, 0.004)
        xs = mid + side * (0.045 + t * reach)
        ys = y0 - 0.03 * t + (0.17 + 0.01 * i) * t ** 2
        posterior.append((xs, ys))
    for i in range(6):
        y0 = top + 0.02 + i * spacing * 1.1 + rng.normal(0, 0.004)
        xs = mid + side * (0.08 + t * (reach - 0.06))
        ys = y0 + 0.10 * (1 - t) ** 1.5
        anterior.append((xs, ys))
    return posterior, anterior


# ----------------------------------------------------------- pneumothorax
def _pneumothorax_region(rng: np.random.Generator, lung: _Lung,
                         size: int) -> np.ndarray:
    """A crescent along the lateral/apical edge of one lung (crop mask).

    The region is every lung pixel closer to the wall than a depth that
    peaks at the centre of an angular sector (angle ``phi`` around the lung
    centre: 0 lateral, pi/2 apical) and tapers to 0 at its ends. Depths
    are fractions of the lung's half width, from apical caps to large
    crescents reaching past the lung's middle (with mostly thin slivers a
    few pixels deep, the tiny demo model's pooled Dice stalled near 0.36).
    """
    dist = cv2.distanceTransform(lung.mask.astype(np.uint8), cv2.DIST_L2, 5)
    phi = np.arctan2(-(lung.yy - lung.cy) / lung.ay,
                     (lung.xx - lung.cx) * lung.side / lung.ax)
    min_area = max(6, int(3e-4 * size * size))
    lung_half_width = float(dist.max())
    for _ in range(20):
        kind = rng.random()
        if kind < 0.25:  # apical cap
            centre = rng.uniform(0.4, 0.6) * np.pi
            half = rng.uniform(0.15, 0.3) * np.pi
            depth = rng.uniform(0.2, 0.5)
        elif kind < 0.7:  # lateral, moderate
            centre = rng.uniform(-0.05, 0.45) * np.pi
            half = rng.uniform(0.25, 0.45) * np.pi
            depth = rng.uniform(0.3, 0.7)
        else:  # large, lateral and apical
            centre = rng.uniform(0.15, 0.4) * np.pi
            half = rng.uniform(0.4, 0.6) * np.pi
            depth = rng.uniform(0.6, 1.1)
        # Wrapped angular distance to the sector centre, in half-widths.
        offset = np.abs((phi - centre + np.pi) % (2 * np.pi) - np.pi) / half
        profile = np.clip(np.cos(np.clip(offset, 0, 1) * (np.pi / 2)), 0,
                          None) ** 0.7
        region = lung.mask & (dist < depth * lung_half_width * profile)
        if region.sum() >= min_area:
            return region
    raise RuntimeError('could not place a pneumothorax (lung too small?)')


# -------------------------------------------------------------- renderer
def synthesize_radiograph(rng: np.random.Generator, size: int,
                          positive: bool) -> tuple[np.ndarray,
                                                   list[np.ndarray]]:
    """Draw one synthetic frontal chest radiograph.

    Args:
        rng (np.random.Generator): Source of all randomness.
        size (int): Side length in pixels (>= 32).
        positive (bool): Whether to draw a pneumothorax (one region, or
            with probability 0.2 a second one in the other lung).

    Returns:
        tuple[np.ndarray, list[np.ndarray]]: The ``uint8`` (size, size)
        MONOCHROME2 image and one ``uint8`` 0/1 mask per pneumothorax
        region (an empty list for a negative image).
    """
    if size < 32:
        raise ValueError(f'size must be at least 32 pixels, got {size}')
    f32 = np.float32
    mid = 0.5 + rng.normal(0, 0.015)
    scale = rng.uniform(0.92, 1.06)
    cy = 0.5 + rng.normal(0, 0.015)
    spacing = rng.uniform(0.052, 0.06) * scale
    top = rng.uniform(0.10, 0.14)

    # Smooth anatomy at low resolution: body outline, soft tissue,
    # spine, heart, aeration and exposure gradients.
    n = min(size, _SMOOTH_SIZE)
    xs, ys = _grid((n, n), n)
    half_w = 0.46 * scale
    # A boxy torso (rounded shoulders) plus the neck, soft-edged.
    body = ((np.abs(xs - mid) / half_w) ** 3
            + (np.abs(ys - 0.62) / 0.56) ** 3) < 1
    body |= (np.abs(xs - mid) < 0.08) & (ys < 0.2)
    body = _blur(body.astype(f32), 0.005 * n)
    # Projected tissue thickness: most through the middle (mediastinum),
    # least at the lateral chest wall; more towards the abdomen.
    chord = np.sqrt(np.clip(1 - ((xs - mid) / half_w) ** 2, 0, None))
    spine = np.clip(1 - np.abs(xs - mid) / 0.04, 0, 1) ** 0.5 * (
        0.85 + 0.15 * np.cos(2 * np.pi * (ys - top) / spacing))
    heart = _blur(((((xs - mid - 0.05 * scale) / (0.14 * scale)) ** 2
                    + ((ys - cy - 0.17) / (0.12 * scale)) ** 2) < 1
                   ).astype(f32), 0.01 * n)
    base = (0.07 + body * (0.30 + 0.24 * chord + 0.06 * ys + 0.10 * spine
                           + 0.08 * heart)
            + _smooth_noise(rng, (n, n), 3, 0.04)
            + rng.uniform(-0.04, 0.04) * (xs - 0.5))
    # Air in the lungs lowers the density, less so at the bases where
    # the diaphragm domes and breast tissue overlap.
    aeration = 0.30 * rng.uniform(0.9, 1.1) * (
        1.0 - 0.35 * np.clip((ys - cy) / 0.3, 0, 1) ** 2
        + _smooth_noise(rng, (n, n), 4, 0.06))
    base, body, aeration = (_upsample(a, size)
                            for a in (base, body, aeration))

    lungs = []
    for side in (-1, 1):
        lungs.append(_Lung(
            rng, size, side,
            cx=mid + side * rng.uniform(0.19, 0.22) * scale,
            cy=cy + (0.0 if side < 0 else 0.01),
            ax=rng.uniform(0.15, 0.175) * scale,
            ay=rng.uniform(0.31, 0.34) * scale,
            heart=rng.uniform(0.25, 0.45) if side > 0 else 0.05))
    lung_any = np.zeros((size, size), bool)
    for lung in lungs:
        lung.paste(lung_any, lung.mask)
    lung_soft = _blur(lung_any.astype(f32), 0.005 * size)

    # Pneumothorax regions (chosen before rendering: they remove texture).
    regions: list[np.ndarray] = []
    if positive:
        first = int(rng.integers(2))
        order = [first] + ([1 - first] if rng.random() < _TWO_REGION_PROB
                           else [])
        for idx in order:
            region = np.zeros((size, size), bool)
            lungs[idx].paste(region,
                             _pneumothorax_region(rng, lungs[idx], size))
            regions.append(region)
    ptx = np.zeros((size, size), bool)
    for region in regions:
        ptx |= region

    # Lung markings: vessels and parenchymal texture (band-pass noise).
    vessels = np.zeros((size, size), np.uint8)
    for lung in lungs:
        hilum = ((lung.cx - lung.side * 0.45 * lung.ax) * size,
                 (lung.cy + rng.uniform(-0.02, 0.04)) * size)
        _draw_vessels(rng, vessels, hilum, lung.side, 2 * lung.ax * size,
                      size)
    # Its finest scale is several pixels at 1024, so half resolution
    # suffices there.
    m = size // 2 if size >= 512 else size
    white = rng.standard_normal((m, m), dtype=f32)
    texture = _upsample(_blur(white, 0.003 * m + 0.4)
                        - _blur(white, 0.012 * m), size)
    texture /= float(texture.std()) + 1e-6
    # The parenchymal texture stands clearly above the quantum noise, so
    # its absence in a pneumothorax is visible (as on real radiographs).
    markings = (0.11 * rng.uniform(0.8, 1.2) * vessels.astype(f32) / 255.0
                + 0.035 * texture)
    if regions:
        ptx_soft = _blur(ptx.astype(f32), 0.5)
        markings *= 1.0 - ptx_soft
        # More air in the pneumothorax than in lung: darker, but by less
        # than the lung's own range (ribs, gradients), so no grey level
        # separates it. The regions are large enough that a stronger
        # darkening would let a grey window find them (see the tests).
        aeration *= 1.0 + rng.uniform(0.04, 0.1) * ptx_soft

    # Bones: ribs (cortex brighter than marrow) and clavicles.
    post_lines, ant_lines = [], []
    for side in (-1, 1):
        post, ant = _rib_polylines(rng, side, mid, top, spacing,
                                   0.40 * scale)
        post_lines += [_pts(x, y, size) for x, y in post]
        ant_lines += [_pts(x, y, size) for x, y in ant]
    rib_w = 0.02 * size
    ribs = (_band(size, post_lines, rib_w)
            - 0.45 * _band(size, post_lines, 0.55 * rib_w)
            + 0.4 * _band(size, ant_lines, 0.6 * rib_w))
    t = np.linspace(0, 1, 20)
    clav_lines = [_pts(mid + s * (0.05 + 0.27 * t),
                       0.13 - 0.05 * t + 0.02 * np.sin(np.pi * t) + 0.01 * s,
                       size) for s in (-1, 1)]
    clavicles = _band(size, clav_lines, 0.022 * size)

    density = (base + lung_soft * (markings - aeration)
               + body * ((0.04 + 0.05 * lung_soft) * ribs
                         + 0.08 * clavicles))

    # Visceral pleural line: just medial of the air, inside the lung;
    # bright enough to mark the edge that the Dice is scored on.
    if regions:
        k = max(1, int(round(0.003 * size)))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                           (2 * k + 1, 2 * k + 1))
        line = cv2.dilate(ptx.astype(np.uint8), kernel).astype(bool)
        line &= lung_any & ~ptx
        density += _blur(line.astype(f32), 0.4) * rng.uniform(0.12, 0.18)

    # Exposure: gamma (as a lookup table), detector blur, quantum noise.
    levels = 4096
    gamma = ((np.arange(levels, dtype=f32) / (levels - 1))
             ** rng.uniform(0.85, 1.15)).astype(f32)
    density = gamma[np.clip(density * (levels - 1), 0,
                            levels - 1).astype(np.int32)]
    # One blur softens every drawn edge (vessels, ribs, pleural line) the
    # way the detector does.
    density = _blur(density, 0.0012 * size + 0.3)
    density += rng.standard_normal(density.shape, dtype=f32) * \
        rng.uniform(0.008, 0.016)
    img = np.clip(np.rint(density * 255), 0, 255).astype(np.uint8)
    return img, [r.astype(np.uint8) for r in regions]


# ----------------------------------------------------------------- writers
def _uid(seed: int, index: int, kind: str) -> str:
    # A '2.25.' UID is a UUID as an integer; a name-based UUID makes it
    # reproducible (pydicom's generate_uid(prefix=None) is always random).
    name = f'mmseg_ptx-demo/{seed}/{index}/{kind}'
    return f'2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}'


def _jpeg(img: np.ndarray) -> Tuple[bytes, np.ndarray]:
    """``img`` as baseline JPEG, and the pixels that JPEG decodes to."""
    buf = io.BytesIO()
    Image.fromarray(img, mode='L').save(buf, format='JPEG',
                                        quality=_JPEG_QUALITY)
    encoded = buf.getvalue()
    return encoded, np.asarray(Image.open(io.BytesIO(encoded)))


def _write_dicom(path: str, img: np.ndarray, uids: dict, patient: dict,
                 jpeg: Optional[bytes]) -> None:
    """A Secondary Capture DICOM of ``img``, its pixel data the baseline
    JPEG ``jpeg`` where given, else uncompressed."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uids['sop']
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg is not None \
        else ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = uids['sop']
    ds.StudyInstanceUID = uids['study']
    ds.SeriesInstanceUID = uids['series']
    ds.Modality = 'CR'
    ds.BodyPartExamined = 'CHEST'
    ds.ViewPosition = patient['view']
    ds.PatientName = patient['name']
    ds.PatientID = patient['id']
    ds.PatientBirthDate = patient['birth_date']
    ds.PatientSex = patient['sex']
    ds.StudyDate = patient['study_date']
    # Secondary Capture's required attributes, as the SIIM files carry
    # them (type 2: present, may be empty).
    ds.ConversionType = 'WSD'
    ds.StudyTime = ''
    ds.ReferringPhysicianName = ''
    ds.AccessionNumber = ''
    ds.StudyID = ''
    ds.PatientOrientation = ''
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = 'MONOCHROME2'
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if jpeg is not None:
        ds.PixelData = encapsulate([jpeg])
        ds['PixelData'].VR = 'OB'
        ds.LossyImageCompression = '01'
        ds.LossyImageCompressionMethod = 'ISO_10918_1'
        ds.LossyImageCompressionRatio = round(img.size / len(jpeg), 2)
    else:
        ds.PixelData = np.ascontiguousarray(img).tobytes()
        ds['PixelData'].VR = 'OB'
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _patient(rng: np.random.Generator, index: int) -> dict:
    birth_year = int(rng.integers(1930, 2005))
    return dict(
        name=f'Demo^Patient{index:04d}',
        id=f'DEMOPID{int(rng.integers(10**7, 10**8))}',
        birth_date=f'{birth_year}{int(rng.integers(1, 13)):02d}'
        f'{int(rng.integers(1, 29)):02d}',
        sex='M' if rng.random() < 0.55 else 'F',
        study_date=f'2017{int(rng.integers(1, 13)):02d}'
        f'{int(rng.integers(1, 29)):02d}',
        view='PA' if rng.random() < 0.6 else 'AP')


class EncodedMasks(Mapping):
    """Masks by ImageId, kept as competition RLE and decoded when read.

    A Kaggle-sized set at 1024 px (10,675 images) would hold 10 GiB of
    masks as arrays; as RLE strings it holds a few MiB.

    Args:
        height (int): Mask height.
        width (int): Mask width.
    """

    def __init__(self, height: int, width: int) -> None:
        self._shape = (height, width)
        self._rles: Dict[str, str] = {}

    def add(self, image_id: str, mask: np.ndarray) -> None:
        """Keep ``mask`` (0/1, of the shape given) as ``image_id``'s."""
        if mask.shape != self._shape:
            raise ValueError(f'mask of {image_id} has shape {mask.shape}, '
                             f'expected {self._shape}')
        self._rles[image_id] = rle_encode(mask)

    def __getitem__(self, image_id: str) -> np.ndarray:
        return rle_decode(self._rles[image_id], *self._shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self._rles)

    def __len__(self) -> int:
        return len(self._rles)


def _remove_split_files(split_dir: str) -> None:
    """Remove what the data set and ``tools/dataset_stats.py`` wrote to
    ``split_dir`` (the split files, ``stats.json``); other files there are
    the user's: they stay, named in a warning, and so does the folder."""
    if not osp.isdir(split_dir):
        return
    remove_paths(split_dir, SPLIT_FILES + (STATS_FILE, ))
    kept = sorted(os.listdir(split_dir))
    if not kept:
        os.rmdir(split_dir)
        return
    print_log(f'{split_dir}: the old split files were removed; kept what '
              f'this tool did not write: {", ".join(kept)}',
              logger='current', level=logging.WARNING)


def write_demo_dataset(out_dir: str,
                       num: int,
                       seed: int,
                       size: int = 1024,
                       layout: str = 'dicom',
                       positive_fraction: float = 0.22,
                       stage1_header: bool = False,
                       progress: bool = False,
                       overwrite: bool = False) -> EncodedMasks:
    """Write a synthetic SIIM-ACR data set in the Kaggle layout(s).

    ``layout='dicom'``: ``dicom-images-train/<StudyInstanceUID>/
    <SeriesInstanceUID>/<SOPInstanceUID>.dcm`` (8-bit MONOCHROME2; even
    indices JPEG baseline, odd indices Explicit VR Little Endian) and
    ``train-rle.csv`` (``ImageId,EncodedPixels``; one row per region,
    ``-1`` for negatives). ``layout='png'``: ``png_images/<name>.png``,
    ``png_masks/<name>.png`` (0/255) and ``stage_1_train_images.csv``
    (``ImageId,new_filename,has_pneumo``), ``<name>`` being
    ``<index>_train_<has_pneumo>_``. ``'both'`` writes both. The DICOM
    headers carry synthetic patient data (``Demo^PatientNNNN``, an ID,
    birth and study dates) so that tests can check it never leaks.

    Exactly ``round(num * positive_fraction)`` images are positive. The
    output is a function of ``seed`` (and ``num``, ``size``) only.

    Args:
        out_dir (str): Output directory (created if needed).
        num (int): Number of images.
        seed (int): Random seed.
        size (int): Image side length in pixels. Defaults to 1024.
        layout (str): 'dicom', 'png' or 'both'. Defaults to 'dicom'.
        positive_fraction (float): Fraction of images with pneumothorax.
            Defaults to 0.22 (the stage-1 training set's).
        stage1_header (bool): Write the stage-1 CSV spelling
            ``ImageId, EncodedPixels`` with values like `` -1``.
            Defaults to False.
        progress (bool): Show a tqdm progress bar. Defaults to False.
        overwrite (bool): Replace a data set already in ``out_dir`` (the
            layout's CSV and image folders, and the split files and
            ``stats.json`` in ``splits/`` made from them; other files in
            ``splits/`` stay). Without it, existing ones are an error, so
            that a real data set is never mixed with or replaced by
            synthetic images, unless :data:`SYNTHETIC_MARKER` in
            ``out_dir`` vouches for them: a set this function wrote,
            complete or interrupted, is replaced if its CSV is the one
            written and its image folders hold only files named as it names
            them.
            Defaults to False.

    Returns:
        EncodedMasks: The ground-truth mask (``uint8`` 0/1, union of the
        regions) per ImageId (= SOPInstanceUID), decoded when read.
    """
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    if num < 1:
        raise ValueError(f'num must be positive, got {num}')
    # Checked before anything is written (synthesize_radiograph checks it
    # too, at the first image).
    if size < 32:
        raise ValueError(f'size must be at least 32 pixels, got {size}')
    if not 0 <= positive_fraction <= 1:
        raise ValueError('positive_fraction must be in [0, 1], got '
                         f'{positive_fraction}')
    n_pos = int(round(num * positive_fraction))
    order = np.random.default_rng([seed, num]).permutation(num)
    positive = np.zeros(num, bool)
    positive[order[:n_pos]] = True

    write_dicom = layout in ('dicom', 'both')
    write_png = layout in ('png', 'both')
    folders = _image_folders(layout)
    targets = ((['train-rle.csv'] if write_dicom else []) +
               (['stage_1_train_images.csv'] if write_png else []) + folders)
    existing = [t for t in targets if osp.lexists(osp.join(out_dir, t))]
    marker = osp.join(out_dir, SYNTHETIC_MARKER)
    if existing:
        # A set this function wrote (perhaps interrupted before its CSV)
        # is replaced; anything else only on request.
        if not overwrite and not _written_here(out_dir, existing):
            raise FileExistsError(
                f'{out_dir} already holds {", ".join(existing)}; choose '
                'another folder or pass overwrite=True (--overwrite) to '
                'replace that data set')
        # Old images left beside new ones would be images without labels,
        # and splits made from the old set would not match the new one.
        remove_paths(out_dir, existing)
        _remove_split_files(osp.join(out_dir, 'splits'))
    os.makedirs(out_dir, exist_ok=True)
    # Before any image: each folder about to be written is recorded with
    # the settings that name its files, so that a run stopped before its
    # CSV can be told from images put there by someone else. Records of
    # the other layout's set, if one is there, are kept.
    _write_text(marker, [
        'Synthetic radiographs written by mmseg_ptx (tools/make_demo_data.py)'
        ': no patient data.',
        f'num={num} seed={seed} size={size} layout={layout} '
        f'positive_fraction={positive_fraction}'
    ] + [
        line for line in _marker_records(marker)
        if line.split()[1] not in targets
    ] + [f'folder {name} num={num} seed={seed}' for name in folders])
    if write_png:
        os.makedirs(osp.join(out_dir, 'png_images'), exist_ok=True)
        os.makedirs(osp.join(out_dir, 'png_masks'), exist_ok=True)
    sep = ', ' if stage1_header else ','
    rle_rows = [f'ImageId{sep}EncodedPixels']
    png_rows = ['ImageId,new_filename,has_pneumo']
    masks = EncodedMasks(size, size)

    indices = range(num)
    if progress:
        from tqdm import tqdm
        indices = tqdm(indices, desc='synthetic radiographs', unit='img')
    for i in indices:
        rng = np.random.default_rng([seed, i])
        img, regions = synthesize_radiograph(rng, size, bool(positive[i]))
        uids = {k: _uid(seed, i, k) for k in ('study', 'series', 'sop')}
        image_id = uids['sop']
        mask = np.zeros((size, size), np.uint8)
        for region in regions:
            mask |= region
        masks.add(image_id, mask)
        # Every other image is stored as lossy JPEG; the PNG re-release's
        # images are what the DICOMs decode to, as in the real one.
        jpeg = None
        if i % 2 == 0:
            jpeg, img = _jpeg(img)

        if write_dicom:
            folder = osp.join(out_dir, 'dicom-images-train', uids['study'],
                              uids['series'])
            os.makedirs(folder, exist_ok=True)
            _write_dicom(osp.join(folder, _dicom_name(seed, i)), img, uids,
                         _patient(rng, i), jpeg=jpeg)
            rles = [rle_encode(r) for r in regions] or [EMPTY_RLE]
            rle_rows += [f'{image_id}{sep}{rle}' for rle in rles]
        if write_png:
            name = _png_name(i, bool(regions))
            cv2.imwrite(osp.join(out_dir, 'png_images', name), img)
            cv2.imwrite(osp.join(out_dir, 'png_masks', name), mask * 255)
            png_rows.append(f'{image_id},{name},{int(bool(regions))}')

    written = []
    if write_dicom:
        written.append(('train-rle.csv', rle_rows))
    if write_png:
        written.append(('stage_1_train_images.csv', png_rows))
    for name, rows in written:
        _write_text(osp.join(out_dir, name), rows)
        # The marker vouches for this exact CSV only: one edited or put in
        # its place later is not replaced unasked.
        with open(marker, 'a') as f:
            f.write(f'sha256 {name} {_sha256(osp.join(out_dir, name))}\n')
    return masks


def _sha256(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def _dicom_name(seed: int, index: int) -> str:
    """The file name of image ``index``'s DICOM: its SOPInstanceUID."""
    return f'{_uid(seed, index, "sop")}.dcm'


def _png_name(index: int, positive: bool) -> str:
    """The PNG re-release's name of image ``index``."""
    return f'{index}_train_{int(positive)}_.png'


def _marker_records(marker: str) -> list[str]:
    """The ``folder`` and ``sha256`` lines of ``marker`` (none if absent)."""
    if not osp.isfile(marker):
        return []
    with open(marker) as f:
        return [
            line.rstrip('\n') for line in f
            if line.startswith(('folder ', 'sha256 '))
        ]


def _image_folders(layout: str) -> list[str]:
    """The image folders a data set of ``layout`` has."""
    return ((['dicom-images-train'] if layout in ('dicom', 'both') else []) +
            (['png_images', 'png_masks'] if layout in ('png', 'both') else []))


def _settings(text: str) -> dict[str, str]:
    """``{'num': '3', 'seed': '0'}`` from ``'num=3 seed=0'``."""
    return dict(item.split('=', 1) for item in text.split() if '=' in item)


def _written_here(out_dir: str, existing: list[str]) -> bool:
    """Whether the data set files in ``out_dir`` are the ones this module
    wrote there: the marker is present, every CSV among ``existing`` is
    the one it recorded, and every image folder is a folder holding only
    files named as the run the marker recorded for it names them, or no
    file (a folder without its CSV is then an interrupted run's, not real
    images put beside a demo set)."""
    marker = osp.join(out_dir, SYNTHETIC_MARKER)
    if not osp.isfile(marker):
        return False
    csvs, folders = {}, {}
    for line in _marker_records(marker):
        kind, name, value = line.split(maxsplit=2)
        if kind == 'sha256':
            csvs[name] = value
        else:
            folders[name] = _settings(value)
    if not folders:
        folders = _folders_of_old_marker(marker)
    for name in existing:
        path = osp.join(out_dir, name)
        if name.endswith('.csv'):
            if csvs.get(name) != _sha256(path):
                return False
        elif osp.islink(path) or not osp.isdir(path) or not _holds_only(
                path, _file_names(name, folders.get(name))):
            return False
    return True


def _folders_of_old_marker(marker: str) -> dict[str, dict[str, str]]:
    """``{folder: run settings}`` from the settings line of a marker
    written before folders were recorded (one run's, of one layout)."""
    with open(marker) as f:
        lines = f.read().splitlines()
    settings = _settings(lines[1] if len(lines) > 1 else '')
    if not {'num', 'seed', 'layout'} <= settings.keys():
        return {}
    return {name: settings for name in _image_folders(settings['layout'])}


def _file_names(folder: str, settings: dict[str, str] | None) -> set[str]:
    """The names of the files that the run recorded with ``settings``
    (its ``num`` and ``seed``; None: no run) writes in ``folder``."""
    if settings is None:
        return set()
    num, seed = int(settings['num']), int(settings['seed'])
    if folder == 'dicom-images-train':
        return {_dicom_name(seed, i) for i in range(num)}
    return {_png_name(i, p) for i in range(num) for p in (False, True)}


def _holds_only(folder: str, names: set[str]) -> bool:
    """Whether every file under ``folder`` has one of ``names``."""
    # list_files: a sub-folder that cannot be listed is an error, not
    # skipped (and then deleted unseen).
    return all(osp.basename(rel) in names for rel in list_files(folder, ''))


def _write_text(path: str, rows: list[str]) -> None:
    with open(path, 'w', newline='\n') as f:
        f.write('\n'.join(rows) + '\n')
