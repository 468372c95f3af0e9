"""Backbones."""
from .swin_sdpa import (ShiftWindowMSASDPA, SwinTransformerSDPA,
                        WindowMSASDPA)

__all__ = ['ShiftWindowMSASDPA', 'SwinTransformerSDPA', 'WindowMSASDPA']
