"""Models registered in MMSeg's MODELS registry: losses, backbones,
post-processors and segmentor wrappers (TTA, ensembles)."""
from .backbones import (ShiftWindowMSASDPA, SwinTransformerSDPA,
                        WindowMSASDPA)
from .losses import DiceCELoss
from .postprocessors import TripletThresholdPostProcessor
from .segmentors import EnsembleSegmentor, SegTTAModelWithLogits

__all__ = [
    'DiceCELoss', 'ShiftWindowMSASDPA', 'SwinTransformerSDPA',
    'WindowMSASDPA', 'TripletThresholdPostProcessor', 'EnsembleSegmentor',
    'SegTTAModelWithLogits'
]
