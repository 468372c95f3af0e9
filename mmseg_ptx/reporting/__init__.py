"""Figures and tables shared by the hooks and the report tools."""
from .plots import plot_pr_curve

__all__ = ['plot_pr_curve']
