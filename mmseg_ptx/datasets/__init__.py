"""Data layer: RLE, DICOM reading, the SIIM dataset, transforms, samplers."""
from .dicom import DicomReadError, read_dicom, read_dicom_shape
from .rle import EMPTY_RLE, rle_decode, rle_decode_union, rle_encode
from .synthetic import synthesize_radiograph, write_demo_dataset
from .transforms import (LoadBinaryMaskFromFile, LoadDicomImageFromFile,
                         LoadRLEAnnotations)

__all__ = ['EMPTY_RLE', 'rle_decode', 'rle_decode_union', 'rle_encode',
           'DicomReadError', 'read_dicom', 'read_dicom_shape',
           'synthesize_radiograph', 'write_demo_dataset',
           'LoadBinaryMaskFromFile', 'LoadDicomImageFromFile',
           'LoadRLEAnnotations']
