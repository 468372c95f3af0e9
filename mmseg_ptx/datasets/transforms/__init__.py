"""Data transforms registered in ``mmseg.registry.TRANSFORMS``."""
from .greyscale_photometric import GreyscalePhotoMetricDistortion
from .loading import (LoadBinaryMaskFromFile, LoadDicomImageFromFile,
                      LoadRLEAnnotations)

__all__ = ['GreyscalePhotoMetricDistortion', 'LoadBinaryMaskFromFile',
           'LoadDicomImageFromFile', 'LoadRLEAnnotations']
