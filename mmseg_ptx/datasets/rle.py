"""Run-length encoding of the SIIM-ACR Pneumothorax competition.

The convention (the competition's ``mask_functions.py``): whitespace-separated
``start length`` pairs over the pixels numbered in column-major order (down
each column first); the first start is absolute, every later start counts
from the end of the previous run; ``-1`` is an empty mask. Unlike the
original helper, any non-zero pixel is foreground and a run that ends on
the last pixel is kept.
"""
from __future__ import annotations

import re
from typing import Iterable

import cv2
import numpy as np

__all__ = [
    'rle_decode', 'rle_encode', 'rle_decode_union', 'rle_validate', 'EMPTY_RLE'
]

#: The competition's encoding of an image without pneumothorax.
EMPTY_RLE = '-1'

# Plain ASCII integers, space-separated. ``int()`` alone would also take
# '1_0' (10), '+3' and non-ASCII digits, which no RLE writer produces.
_INTEGERS = re.compile(r'(?:-?[0-9]+ )*-?[0-9]+', re.ASCII)
_INTEGER = re.compile(r'-?[0-9]+', re.ASCII)


def _parse_numbers(rle: str) -> list[int]:
    """The integers of an RLE string, checked for (start >= 0,
    length > 0) pairs."""
    tokens = rle.split()
    if not tokens:
        # A truncated row or an unfilled cell, not a negative image.
        raise ValueError(f'Malformed RLE: an empty string (an image without '
                         f'pneumothorax is {EMPTY_RLE})')
    # Tokens first: 'nan' is a word, not one number too few.
    if not _INTEGERS.fullmatch(' '.join(tokens)):
        bad = next(t for t in tokens if not _INTEGER.fullmatch(t))
        raise ValueError(f'Malformed RLE: non-integer token {bad[:20]!r}. '
                         f'RLE starts with {rle[:40]!r}')
    if len(tokens) % 2:
        raise ValueError(
            f'Malformed RLE: {len(tokens)} numbers, expected (start, length) '
            f'pairs (an even count). RLE starts with {rle[:40]!r}')
    numbers = list(map(int, tokens))
    # min/max first (C loops; a CSV has thousands of rows), then the
    # offending value for the message.
    starts, lengths = numbers[0::2], numbers[1::2]
    if min(starts) < 0:
        negative = next(n for n in starts if n < 0)
        raise ValueError(f'Malformed RLE: negative start {negative}')
    if min(lengths) <= 0:
        empty = next(n for n in lengths if n <= 0)
        raise ValueError(
            f'Malformed RLE: run length must be positive, got {empty}')
    return numbers


def _parse_pairs(rle: str,
                 num_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    numbers = _parse_numbers(rle)
    # No start or length of a valid RLE exceeds the pixel count. Checked on
    # Python ints, before int64: huge values would overflow the cumulative
    # sums below, pass the end check and index outside the mask.
    if max(numbers) > num_pixels:
        too_large = next(n for n in numbers if n > num_pixels)
        raise ValueError(
            f'Malformed RLE: value {too_large} exceeds the {num_pixels} '
            f'pixels of the image. RLE starts with {rle[:40]!r}')
    values = np.array(numbers, dtype=np.int64)
    return values[0::2], values[1::2]


def rle_validate(rle: str) -> None:
    """Check the syntax of one RLE string, without the image size.

    What :func:`rle_decode` checks except the bounds, which need the
    image: a non-empty, even count of integers, starts >= 0, lengths > 0;
    ``-1`` (an empty mask) passes. Lets a dataset report a malformed row of its
    CSV when it loads rather than when the image is first drawn.

    Args:
        rle (str): One RLE string.

    Raises:
        ValueError: The string is malformed; the message says how.
    """
    rle = rle.strip()
    if rle != EMPTY_RLE:
        _parse_numbers(rle)


def _absolute_runs(rle: str, height: int,
                   width: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Absolute column-major starts and lengths of one RLE string's runs,
    checked against the image size; None for an empty mask."""
    rle = rle.strip()
    if rle == EMPTY_RLE:
        return None
    starts, lengths = _parse_pairs(rle, height * width)
    # Relative starts -> absolute: each start counts from the previous end.
    abs_starts = np.cumsum(starts + np.concatenate(([0], lengths[:-1])))
    ends = abs_starts + lengths
    if ends[-1] > height * width:
        raise ValueError(
            f'Malformed RLE: a run ends at pixel {int(ends[-1])}, past the '
            f'end of a {height}x{width} image ({height * width} pixels)')
    return abs_starts, lengths


def rle_decode(rle: str, height: int, width: int) -> np.ndarray:
    """Decode one competition RLE string into a binary mask.

    Args:
        rle (str): ``start length`` pairs, or ``-1`` (surrounding
            whitespace allowed) for an empty mask.
        height (int): Image height in pixels.
        width (int): Image width in pixels.

    Returns:
        np.ndarray: ``uint8`` mask of shape (height, width), values 0/1.

    Raises:
        ValueError: The string is malformed (empty or blank, odd number
            of values, non-integer, negative start, non-positive length, a
            value over the pixel count) or a run goes past the end of the
            image.
    """
    return rle_decode_union([rle], height, width)


def rle_decode_union(rles: Iterable[str], height: int,
                     width: int) -> np.ndarray:
    """Decode several RLE rows of one image into the union of their masks.

    The training CSV has one row per pneumothorax region; ``-1`` rows add
    nothing. All rows are painted into one column-major buffer, which is
    transposed once; an image without runs needs neither.

    Args:
        rles (Iterable[str]): The image's RLE rows.
        height (int): Image height in pixels.
        width (int): Image width in pixels.

    Returns:
        np.ndarray: ``uint8`` mask of shape (height, width), values 0/1.

    Raises:
        ValueError: A row is malformed (see :func:`rle_decode`).
    """
    flat = None
    for rle in rles:
        runs = _absolute_runs(rle, height, width)
        if runs is None:
            continue
        if flat is None:
            flat = np.zeros(height * width, dtype=np.uint8)
        abs_starts, lengths = runs
        # Index only the foreground pixels (about 1% of an image): run k
        # covers abs_starts[k] + j for j < lengths[k], and j is the global
        # position in arange(total) minus the pixels of the earlier runs.
        before = np.cumsum(lengths) - lengths
        flat[np.repeat(abs_starts - before, lengths) +
             np.arange(int(lengths.sum()))] = 1
    if flat is None:
        return np.zeros((height, width), dtype=np.uint8)
    # cv2's transpose copies a 1024x1024 uint8 mask several times faster
    # than numpy's strided .T.copy().
    return cv2.transpose(flat.reshape(width, height))


def rle_encode(mask: np.ndarray) -> str:
    """Encode a mask in the competition's RLE.

    Args:
        mask (np.ndarray): 2-D array; any non-zero pixel is foreground.

    Returns:
        str: ``start length`` pairs with relative starts, or ``-1`` for an
        empty mask.
    """
    if mask.ndim != 2:
        raise ValueError(f'rle_encode expects a 2-D mask, got shape '
                         f'{mask.shape}')
    foreground = np.asarray(mask) != 0
    if not foreground.any():  # most images: skip the column-major copy
        return EMPTY_RLE
    flat = foreground.T.ravel()
    # Where a run starts or ends; a run touching either end adds its edge.
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    if flat[0]:
        edges = np.concatenate(([0], edges))
    if flat[-1]:
        edges = np.concatenate((edges, [flat.size]))
    starts, ends = edges[0::2], edges[1::2]
    lengths = ends - starts
    rel_starts = starts - np.concatenate(([0], ends[:-1]))
    pairs = np.stack([rel_starts, lengths], axis=1).reshape(-1)
    return ' '.join(map(str, pairs.tolist()))
