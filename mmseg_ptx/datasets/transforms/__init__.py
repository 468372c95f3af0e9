"""Data transforms registered in ``mmseg.registry.TRANSFORMS``."""
from .loading import (LoadBinaryMaskFromFile, LoadDicomImageFromFile,
                      LoadRLEAnnotations)

__all__ = ['LoadBinaryMaskFromFile', 'LoadDicomImageFromFile',
           'LoadRLEAnnotations']
