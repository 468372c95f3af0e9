"""Registered components; see the submodules."""
from .losses import DiceCELoss
from .postprocessors import TripletThresholdPostProcessor
from .segmentors import EnsembleSegmentor, SegTTAModelWithLogits

__all__ = ['DiceCELoss', 'TripletThresholdPostProcessor',
           'EnsembleSegmentor', 'SegTTAModelWithLogits']
