"""Registered components; see the submodules."""
from .hooks import PRCurveHook

__all__ = ['PRCurveHook']
