import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mmseg_ptx.datasets.rle import (EMPTY_RLE, rle_decode, rle_decode_union,
                                    rle_encode, rle_validate)


def reference_decode(rle, height, width):
    """The competition's run loop, without its 255-only/last-run bugs."""
    flat = np.zeros(height * width, np.uint8)
    if rle.strip() != '-1':
        values = [int(v) for v in rle.split()]
        pos = 0
        for start, length in zip(values[0::2], values[1::2]):
            pos += start
            flat[pos:pos + length] = 1
            pos += length
    return flat.reshape(width, height).T


masks = st.tuples(st.integers(1, 24), st.integers(1, 24)).flatmap(
    lambda hw: arrays(np.uint8, hw, elements=st.integers(0, 1)))


@settings(max_examples=150, deadline=None)
@given(masks)
def test_round_trip_and_reference(mask):
    rle = rle_encode(mask)
    decoded = rle_decode(rle, *mask.shape)
    assert decoded.dtype == np.uint8 and decoded.shape == mask.shape
    np.testing.assert_array_equal(decoded, mask)
    np.testing.assert_array_equal(decoded, reference_decode(rle,
                                                            *mask.shape))
    assert decoded.flags.c_contiguous


def test_known_vector_column_major_relative_starts():
    # Pixels 1, 2 (first column, rows 1-2) and 6 (third column, row 0).
    expected = np.array([[0, 0, 1], [1, 0, 0], [1, 0, 0]], np.uint8)
    np.testing.assert_array_equal(rle_decode('1 2 3 1', 3, 3), expected)
    assert rle_encode(expected) == '1 2 3 1'


def test_non_square_is_column_major():
    mask = rle_decode('0 2', 2, 3)  # the whole first column of a 2x3 image
    np.testing.assert_array_equal(mask, [[1, 0, 0], [1, 0, 0]])


def test_empty_masks():
    assert rle_encode(np.zeros((4, 5), np.uint8)) == EMPTY_RLE
    for rle in ('-1', ' -1', '-1\n'):
        mask = rle_decode(rle, 4, 5)
        assert mask.shape == (4, 5) and not mask.any()
    # A truncated row or an unfilled cell is no negative image.
    for rle in ('', '  ', '\t'):
        with pytest.raises(ValueError, match='empty string.*is -1'):
            rle_decode(rle, 4, 5)
        with pytest.raises(ValueError, match='empty string'):
            rle_validate(rle)
        with pytest.raises(ValueError, match='empty string'):
            rle_decode_union(['-1', rle], 4, 5)


def test_run_ending_on_last_pixel_is_kept():
    mask = np.zeros((3, 3), np.uint8)
    mask[2, 2] = 1
    assert rle_encode(mask) == '8 1'
    np.testing.assert_array_equal(rle_decode('8 1', 3, 3), mask)
    assert rle_decode('0 9', 3, 3).all()


def test_any_nonzero_pixel_is_foreground():
    mask = np.array([[0, 1], [7, 255]], np.uint8)
    np.testing.assert_array_equal(rle_decode(rle_encode(mask), 2, 2),
                                  mask != 0)


def test_union_of_rows():
    a = np.zeros((4, 4), np.uint8)
    b = np.zeros((4, 4), np.uint8)
    a[0, :2] = 1
    b[0, 1:] = 1
    union = rle_decode_union([rle_encode(a), EMPTY_RLE, rle_encode(b)], 4, 4)
    np.testing.assert_array_equal(union, a | b)
    for rows in ([], [EMPTY_RLE, ' -1 ']):
        empty = rle_decode_union(rows, 3, 5)
        assert empty.shape == (3, 5) and empty.dtype == np.uint8
        assert not empty.any()


@settings(max_examples=100, deadline=None)
@given(st.tuples(st.integers(1, 16), st.integers(1, 16)).flatmap(
    lambda hw: st.lists(arrays(np.uint8, hw, elements=st.integers(0, 1)),
                        min_size=1, max_size=4)))
def test_union_is_the_or_of_the_rows(regions):
    height, width = regions[0].shape
    union = rle_decode_union([rle_encode(r) for r in regions], height, width)
    expected = np.bitwise_or.reduce(regions)
    np.testing.assert_array_equal(union, expected)
    assert union.flags.c_contiguous


def test_one_run_over_the_whole_image():
    assert rle_decode('0 9', 3, 3).all()


def test_union_checks_every_row():
    with pytest.raises(ValueError, match='past the end'):
        rle_decode_union(['1 2', '5 2 2 1'], 3, 3)


def test_encode_rejects_non_2d():
    with pytest.raises(ValueError, match='2-D'):
        rle_encode(np.zeros((2, 2, 2)))


@pytest.mark.parametrize('rle,match', [
    ('1 2 3', 'even count'),
    ('1 x', 'non-integer'),
    ('1 2.5', 'non-integer'),
    # int() would read these as 10, 3 and 1: no RLE writer spells them so.
    ('1_0 2', 'non-integer'),
    ('+3 +2', 'non-integer'),
    ('\u0661 2', 'non-integer'),
    # A word of an odd count is named, not counted ('nan' from pandas).
    ('nan', "non-integer token 'nan'"),
    ('1 2 x', "non-integer token 'x'"),
    ('-1 2', 'negative start'),
    ('1 0', 'positive'),
    ('1 -3', 'positive'),
    ('0 10', 'exceeds the 9 pixels'),
    ('5 2 2 1', 'past the end'),
    # int64 sums of these wrap around; decoding them once wrote outside
    # the mask (a segfault) or raised OverflowError without the image.
    ('0 9223372036854775807 0 9223372036854775807 0 4', 'exceeds'),
    ('99999999999999999999 1', 'exceeds'),
])
def test_malformed(rle, match):
    with pytest.raises(ValueError, match=match):
        rle_decode(rle, 3, 3)


@pytest.mark.parametrize('rle', ['-1', ' -1 ', '0 9', '3 2 10 4',
                                 '99999999999999999999 1'])
def test_validate_passes_wellformed_strings(rle):
    # Bounds need the image size: the huge start is for the decoder.
    rle_validate(rle)


@pytest.mark.parametrize('rle,match', [
    ('1 2 3', 'even count'),
    ('1 x', 'non-integer'),
    ('1_0 2', 'non-integer'),
    ('-1 2', 'negative start'),
    ('1 0', 'positive'),
])
def test_validate_rejects_malformed_strings(rle, match):
    with pytest.raises(ValueError, match=match):
        rle_validate(rle)
