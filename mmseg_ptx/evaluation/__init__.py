"""Registered components; see the submodules."""
from .metrics import (PneumothoraxMetric, PRCurve, compute_pr_curve,
                      logit_bin_edges)
from .triplet_search import (TripletImageStats, search_triplet,
                             triplet_image_stats)

__all__ = ['PneumothoraxMetric', 'PRCurve', 'compute_pr_curve',
           'logit_bin_edges', 'TripletImageStats', 'search_triplet',
           'triplet_image_stats']
