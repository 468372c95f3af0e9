"""Data layer: RLE, DICOM reading, the SIIM dataset, transforms, samplers."""
from .rle import EMPTY_RLE, rle_decode, rle_decode_union, rle_encode
from .samplers import ClassBalancedSampler

__all__ = [
    'EMPTY_RLE', 'rle_decode', 'rle_decode_union', 'rle_encode',
    'ClassBalancedSampler'
]
