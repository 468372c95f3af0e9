"""Data layer: RLE, DICOM reading, the SIIM dataset, transforms, samplers."""
from .dicom import DicomReadError, read_dicom, read_dicom_shape
from .dicom_messages import DicomReadWarning
from .files import list_files, remove_paths
from .rle import (EMPTY_RLE, rle_decode, rle_decode_union, rle_encode,
                  rle_validate)
from .samplers import ClassBalancedSampler
from .siim import SIIMPneumothoraxDataset, read_image_ids
from .split import (SplitResult, balance_and_split, count_split, read_split,
                    write_split)
from .statistics import compute_dataset_statistics, format_statistics
from .synthetic import synthesize_radiograph, write_demo_dataset
from .transforms import (AlignedResize, GreyscalePhotoMetricDistortion,
                         GreyToBGR, LoadBinaryMaskFromFile,
                         LoadDicomImageFromFile, LoadRLEAnnotations)

__all__ = [
    'EMPTY_RLE', 'rle_decode', 'rle_decode_union', 'rle_encode',
    'rle_validate', 'DicomReadError', 'DicomReadWarning', 'read_dicom',
    'read_dicom_shape', 'list_files', 'remove_paths',
    'ClassBalancedSampler', 'SIIMPneumothoraxDataset', 'read_image_ids',
    'SplitResult',
    'balance_and_split', 'count_split', 'read_split', 'write_split',
    'compute_dataset_statistics', 'format_statistics',
    'synthesize_radiograph', 'write_demo_dataset',
    'AlignedResize', 'GreyscalePhotoMetricDistortion', 'GreyToBGR',
    'LoadBinaryMaskFromFile', 'LoadDicomImageFromFile', 'LoadRLEAnnotations'
]
