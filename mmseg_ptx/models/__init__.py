"""Registered components; see the submodules."""
from .losses import DiceCELoss

__all__ = ['DiceCELoss']
