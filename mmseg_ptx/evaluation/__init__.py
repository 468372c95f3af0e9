"""Registered components; see the submodules."""
from .bootstrap import bootstrap_dice_intervals
from .metrics import (PneumothoraxMetric, PRCurve, compute_pr_curve,
                      logit_bin_edges)
from .triplet_search import (TripletImageStats, cross_validate_triplet,
                             search_triplet, triplet_folds,
                             triplet_image_stats)

__all__ = ['PneumothoraxMetric', 'PRCurve', 'compute_pr_curve',
           'bootstrap_dice_intervals',
           'logit_bin_edges', 'TripletImageStats', 'search_triplet',
           'triplet_image_stats', 'triplet_folds', 'cross_validate_triplet']
