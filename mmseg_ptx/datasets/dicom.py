"""Reading SIIM-ACR DICOM radiographs into 8-bit grey images.

The competition images are 8-bit MONOCHROME2 JPEG-baseline files, but
re-exports and other chest X-ray sources bring 12/16-bit data, inverted
(MONOCHROME1) data, rescale slopes and VOI windows. :func:`read_dicom`
handles all of these and always returns what a viewer would show, as
``uint8`` with bright = dense.

Every failure is a :class:`DicomReadError` whose message holds the file
path and the problem only: header values (patient name, IDs, dates) never
appear in it, because error messages end up in logs; pydicom's own
warnings and log records while a file is read have the values they quote
withheld (:mod:`~mmseg_ptx.datasets.dicom_messages`).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional, Union

import numpy as np
import pydicom
from pydicom.pixels import (apply_modality_lut, apply_voi, apply_voi_lut,
                            apply_windowing)

from mmseg_ptx.compat import voi_lut_dataset
from .dicom_messages import pydicom_values_withheld, redact, redact_lines

__all__ = [
    'DicomReadError', 'DicomReadCause', 'read_dicom', 'read_dicom_shape',
    'is_dicom', 'scale_to_uint8'
]

PathLike = Union[str, os.PathLike]

#: Only the tags that pixel decoding and display need. Nothing else is read
#: from the header, so patient data never reaches this module's messages.
_SHAPE_TAGS = ['Rows', 'Columns']
#: The Photometric Interpretations of the DICOM standard (PS3.3 C.7.6.3.1.2).
_PHOTOMETRIC = frozenset({
    'MONOCHROME1', 'MONOCHROME2', 'PALETTE COLOR', 'RGB', 'HSV', 'ARGB',
    'CMYK', 'YBR_FULL', 'YBR_FULL_422', 'YBR_PARTIAL_422', 'YBR_PARTIAL_420',
    'YBR_ICT', 'YBR_RCT'
})


class DicomReadError(OSError):
    """A DICOM file is missing, unreadable, corrupt or unsupported.

    A subclass of :class:`OSError` (like ``FileNotFoundError``), so code that
    handles unreadable files catches it too. The message names the file path
    and the problem, never header values. Where another error (pydicom's,
    numpy's) was behind it, its traceback is kept as the ``__cause__``,
    under that error's message with quoted values withheld.
    """


class DicomReadCause(Exception):
    """The error behind a :class:`DicomReadError`: its traceback (where
    in pydicom or numpy reading failed) and its type and message, quoted
    values withheld."""


#: Errors that say the process or its environment failed, not the file: they
#: pass unchanged, not as a DicomReadError that would blame the image.
_NOT_THE_FILE = (MemoryError, RecursionError, ImportError)


def _cause(err: Exception, reason: Optional[str] = None) -> DicomReadCause:
    """``err``'s traceback under ``'Type: reason'`` (by default its message
    cut at its first quote)."""
    message = (f'{type(err).__name__}: {reason}'
               if reason is not None else _describe(err))
    return DicomReadCause(message).with_traceback(err.__traceback__)


def is_dicom(path: PathLike) -> bool:
    """Whether ``path`` is a DICOM file by extension or by preamble.

    Args:
        path (str | os.PathLike): File path.

    Returns:
        bool: True for a ``.dcm`` suffix (any case) or a file whose bytes
        128-131 are ``DICM`` (the Part-10 preamble, for files without the
        extension).
    """
    if str(path).lower().endswith('.dcm'):
        return True
    try:
        with open(path, 'rb') as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b'DICM'


def _read_header(path: PathLike, **kwargs) -> pydicom.Dataset:
    if not os.path.isfile(path):
        raise DicomReadError(
            f'DICOM file not found (or not a regular file): {path}')
    # Errors become DicomReadErrors in _reading.
    return pydicom.dcmread(path, **kwargs)


def _describe(err: Exception) -> str:
    return f'{type(err).__name__}: {redact(str(err))}'


@contextlib.contextmanager
def _reading(path: PathLike) -> Iterator[None]:
    """pydicom's messages with header values withheld
    (:func:`~mmseg_ptx.datasets.dicom_messages.pydicom_values_withheld`),
    and any error that is not a :class:`DicomReadError` turned into one
    with quoted values withheld (a warning a user's filter raises
    included)."""
    with pydicom_values_withheld(path):
        try:
            yield
        except DicomReadError:
            raise
        except pydicom.errors.InvalidDicomError as err:
            # pydicom's message quotes 'DICM', which redact would withhold
            # with the rest of the sentence.
            if "'DICM'" not in str(err):
                raise DicomReadError(f'Cannot read DICOM file {path}: '
                                     f'{_describe(err)}') from _cause(err)
            raise DicomReadError(
                f'Cannot read DICOM file {path}: not a DICOM Part-10 file '
                '(no DICM marker after its 128-byte preamble): an empty, '
                'cut-short or other kind of file') from None
        except _NOT_THE_FILE:
            raise
        except Exception as err:  # pydicom raises many types
            raise DicomReadError(
                f'Cannot read DICOM file {path}: {_describe(err)}'
            ) from _cause(err)


def read_dicom_shape(path: PathLike) -> tuple[int, int]:
    """Read the image size from the header without decoding pixels.

    Args:
        path (str | os.PathLike): Path to a DICOM file.

    Returns:
        tuple[int, int]: ``(rows, cols)``.

    Raises:
        DicomReadError: Missing or unreadable file, or no Rows/Columns.
    """
    with _reading(path):
        return _read_dicom_shape(path)


def _read_dicom_shape(path: PathLike) -> tuple[int, int]:
    ds = _read_header(path, stop_before_pixels=True,
                      specific_tags=_SHAPE_TAGS)
    if 'Rows' not in ds or 'Columns' not in ds:
        raise DicomReadError(
            f'DICOM file {path} has no Rows/Columns: not an image, or the '
            'file ends early (truncated or corrupt)')
    return int(ds.Rows), int(ds.Columns)


def _has_voi_lut(ds: pydicom.Dataset) -> bool:
    """Whether the VOI transform is a LUT (which pydicom prefers to a
    window where a file has both)."""
    seq = ds.get('VOILUTSequence')
    return bool(seq and seq[0].get('LUTDescriptor')
                and seq[0].get('LUTData'))


def _voi_output_range(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """Output range of the dataset's VOI transform, None without one.

    The range is found by pushing probe values through pydicom's own VOI
    functions rather than restating their rules here.
    """
    if _has_voi_lut(ds):
        n_entries, first_map = ds.VOILUTSequence[0].LUTDescriptor[:2]
        probe = np.arange(first_map, first_map + (n_entries or 2**16))
        lut = apply_voi(probe, ds)
        # The LUT's actual values, not its nominal bit depth: many files
        # declare 16 bits per entry but only use 12.
        return float(lut.min()), float(lut.max())
    if ds.get('WindowCenter') is not None and ds.get(
            'WindowWidth') is not None:
        # Finite extremes land in the 'below'/'above' branches (LINEAR) or
        # the sigmoid's asymptotes, i.e. the output limits.
        with np.errstate(over='ignore'):
            lo, hi = apply_windowing(np.array([-1e30, 1e30]), ds)
        return float(lo), float(hi)
    return None


def _stored_range(ds: pydicom.Dataset) -> np.ndarray:
    bits = int(ds.BitsStored)
    if int(ds.get('PixelRepresentation', 0)):
        return np.arange(-(2**(bits - 1)), 2**(bits - 1))
    return np.arange(0, 2**bits)


def read_dicom(path: PathLike) -> np.ndarray:
    """Read a single-frame greyscale DICOM image as displayed, in 8 bits.

    Steps: decode the pixel data (uncompressed or any compressed transfer
    syntax pydicom can decode; JPEG baseline goes through Pillow), apply the
    Modality LUT / rescale, then the VOI LUT or window if the file has one,
    scale to 0..255 and invert MONOCHROME1 (and MONOCHROME2 whose
    Presentation LUT Shape is INVERSE) so that bright is always dense.

    Scaling to 0..255: a VOI transform's full output range; without one,
    the full stored range for data of at most 8 bits (so an 8-bit image is
    returned unchanged) and the image's own min..max for deeper data, whose
    nominal range (e.g. 16 bits holding 12-bit values) is rarely used.

    Args:
        path (str | os.PathLike): Path to a DICOM file.

    Returns:
        np.ndarray: ``uint8`` array of shape (rows, cols).

    Raises:
        DicomReadError: The file is missing, not DICOM, corrupt, its pixel
            data cannot be decoded, or it is multi-frame or colour.
    """
    with _reading(path):
        return _read_dicom(path)


def _read_dicom(path: PathLike) -> np.ndarray:
    ds = _read_header(path)
    if 'PixelData' not in ds:
        # pydicom reads a file cut short up to where it ends, with a
        # warning only, so a truncated download lands here too.
        raise DicomReadError(
            f'DICOM file {path} has no pixel data: the file holds none, or '
            'it ends early (truncated or corrupt)')
    n_frames = int(ds.get('NumberOfFrames', 1) or 1)
    if n_frames != 1:
        raise DicomReadError(
            f'DICOM file {path} has {n_frames} frames; only single-frame '
            'radiographs are supported')
    photometric = str(ds.get('PhotometricInterpretation', '')).strip()
    if int(ds.get('SamplesPerPixel', 1)) != 1 or photometric not in (
            'MONOCHROME1', 'MONOCHROME2'):
        # Only a value of the standard is quoted: with a corrupt length the
        # element's value runs on into the patient's data.
        shown = repr(photometric) if photometric in _PHOTOMETRIC else \
            'not a standard value'
        raise DicomReadError(
            f'DICOM file {path} is not greyscale (Photometric '
            f'Interpretation {shown}, SamplesPerPixel '
            f'{ds.get("SamplesPerPixel")}); only MONOCHROME1/2 is supported')
    try:
        arr = ds.pixel_array
    except _NOT_THE_FILE:
        raise
    except Exception as err:
        # A known transfer syntax is named from pydicom's registry, and
        # pydicom's later lines say why (each plugin's error, the packages a
        # codec needs). An unknown one is header bytes (of a corrupt length,
        # running on into the patient's data, quotes and line breaks
        # included): then only the message's first line, cut at its quote.
        syntax = getattr(getattr(ds, 'file_meta', None), 'TransferSyntaxUID',
                         None)
        known = getattr(syntax, 'type', '') == 'Transfer Syntax'
        reason = redact_lines(str(err)) if known else redact(str(err))
        raise DicomReadError(
            f'Cannot decode the pixel data of DICOM file {path}'
            f'{f" ({syntax.name})" if known else ""}: '
            f'{type(err).__name__}: {reason}') from _cause(err, reason)
    if arr.ndim != 2:
        raise DicomReadError(
            f'DICOM file {path} decodes to shape {arr.shape}, expected a '
            'single 2-D frame')

    try:
        img = _to_uint8(arr, ds)
    except _NOT_THE_FILE:
        raise
    except Exception as err:
        raise DicomReadError(
            f'Cannot apply the LUT/window of DICOM file {path}: '
            f'{_describe(err)}') from _cause(err)
    if _shown_inverted(photometric, ds):
        img = 255 - img
    return img


def _shown_inverted(photometric: str, ds: pydicom.Dataset) -> bool:
    """Whether a viewer shows the lowest values white: MONOCHROME1, or a
    Presentation LUT Shape of INVERSE (PS3.3 C.11.6), which some CR/DR
    exports set on MONOCHROME2 data. The DX Image module asks for INVERSE
    on every MONOCHROME1 image, where it names that same inversion: it is
    applied once."""
    shape = str(ds.get('PresentationLUTShape', '') or '').strip().upper()
    return photometric == 'MONOCHROME1' or shape == 'INVERSE'


def _to_uint8(arr: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    has_modality = bool(ds.get('ModalityLUTSequence')) or (
        float(ds.get('RescaleSlope', 1) or 1) != 1
        or float(ds.get('RescaleIntercept', 0) or 0) != 0)
    # What pydicom's VOI functions get: a data set they look up correctly.
    voi_ds = voi_lut_dataset(ds)
    voi_range = _voi_output_range(voi_ds)
    bits = int(ds.BitsStored)
    if (arr.dtype == np.uint8 and bits == 8 and not has_modality
            and voi_range is None):
        # The competition's case: already display values; skip float math.
        return arr

    values = apply_modality_lut(arr, ds)
    if voi_range is not None:
        if _has_voi_lut(ds) and values.dtype.kind == 'f':
            # A rescale's output: a LUT is indexed by integers, and pydicom
            # would truncate (and warn on every image), not round.
            values = np.rint(values).astype(np.int64)
        values = apply_voi_lut(values, voi_ds)
        lo, hi = voi_range
    elif bits <= 8:
        full = apply_modality_lut(_stored_range(ds), ds)
        lo, hi = float(full.min()), float(full.max())
    else:
        lo, hi = float(values.min()), float(values.max())
    return scale_to_uint8(values, lo, hi)


def scale_to_uint8(values: np.ndarray,
                   lo: float | None = None,
                   hi: float | None = None) -> np.ndarray:
    """Map ``lo..hi`` linearly to 0..255 (rounded, clipped).

    Args:
        values (np.ndarray): Grey values of any numeric dtype.
        lo (float, optional): The value that becomes 0. Defaults to the
            minimum of ``values``.
        hi (float, optional): The value that becomes 255. Defaults to the
            maximum of ``values``.

    Returns:
        np.ndarray: ``uint8`` array of the same shape; all 0 when
        ``hi <= lo`` (a constant image carries no contrast).
    """
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
