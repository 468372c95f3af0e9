"""Models: losses and backbones registered in MMSeg's MODELS registry."""
from .backbones import (ShiftWindowMSASDPA, SwinTransformerSDPA,
                        WindowMSASDPA)
from .losses import DiceCELoss

__all__ = [
    'DiceCELoss', 'ShiftWindowMSASDPA', 'SwinTransformerSDPA', 'WindowMSASDPA'
]
