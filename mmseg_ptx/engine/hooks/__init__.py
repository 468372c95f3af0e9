"""Runner hooks."""
from .pr_curve_hook import PRCurveHook

__all__ = ['PRCurveHook']
