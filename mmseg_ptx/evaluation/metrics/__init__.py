"""Evaluation metrics."""
from .pneumothorax_metric import (PneumothoraxMetric, PRCurve,
                                  binary_label_masks, competition_dice,
                                  compute_pr_curve, logit_bin_edges)

__all__ = ['PneumothoraxMetric', 'PRCurve', 'binary_label_masks',
           'competition_dice', 'compute_pr_curve', 'logit_bin_edges']
