"""Models registered in MMSeg's MODELS registry: losses, backbones,
post-processors, segmentor wrappers (TTA, ensembles) and
:class:`TensorDropPath`; utilities (:func:`cast_for_inference`)."""
from .backbones import (ShiftWindowMSASDPA, SwinTransformerSDPA,
                        WindowMSASDPA)
from .losses import DiceCELoss
from .postprocessors import TripletThresholdPostProcessor
from .segmentors import EnsembleSegmentor, SegTTAModelWithLogits
from .utils import (INFERENCE_DTYPES, TensorDropPath, cast_for_inference,
                    fuse_conv_bn)

__all__ = [
    'DiceCELoss', 'ShiftWindowMSASDPA', 'SwinTransformerSDPA',
    'WindowMSASDPA', 'TripletThresholdPostProcessor', 'EnsembleSegmentor',
    'SegTTAModelWithLogits', 'TensorDropPath', 'INFERENCE_DTYPES',
    'cast_for_inference', 'fuse_conv_bn'
]
