"""Data transforms registered in ``mmseg.registry.TRANSFORMS``."""
from .aligned_resize import AlignedResize
from .grey_to_bgr import GreyToBGR
from .greyscale_photometric import GreyscalePhotoMetricDistortion
from .loading import (LoadBinaryMaskFromFile, LoadDicomImageFromFile,
                      LoadRLEAnnotations)

__all__ = ['AlignedResize', 'GreyToBGR', 'GreyscalePhotoMetricDistortion',
           'LoadBinaryMaskFromFile', 'LoadDicomImageFromFile',
           'LoadRLEAnnotations']
