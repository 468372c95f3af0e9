"""Models registered in MMSeg's MODELS registry: losses, backbones,
post-processors and segmentor wrappers (TTA, ensembles); utilities
(:func:`cast_for_inference`)."""
from .backbones import (ShiftWindowMSASDPA, SwinTransformerSDPA,
                        WindowMSASDPA)
from .losses import DiceCELoss
from .postprocessors import TripletThresholdPostProcessor
from .segmentors import EnsembleSegmentor, SegTTAModelWithLogits
from .utils import INFERENCE_DTYPES, cast_for_inference

__all__ = [
    'DiceCELoss', 'ShiftWindowMSASDPA', 'SwinTransformerSDPA',
    'WindowMSASDPA', 'TripletThresholdPostProcessor', 'EnsembleSegmentor',
    'SegTTAModelWithLogits', 'INFERENCE_DTYPES', 'cast_for_inference'
]
