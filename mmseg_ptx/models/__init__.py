"""Registered components; see the submodules."""
from . import backbones  # noqa: F401
from .backbones import (ShiftWindowMSASDPA, SwinTransformerSDPA,
                        WindowMSASDPA)

__all__ = [
    'backbones', 'ShiftWindowMSASDPA', 'SwinTransformerSDPA', 'WindowMSASDPA'
]
