"""Evaluation metrics."""
from .pneumothorax_metric import (PneumothoraxMetric, PRCurve,
                                  compute_pr_curve, logit_bin_edges)

__all__ = ['PneumothoraxMetric', 'PRCurve', 'compute_pr_curve',
           'logit_bin_edges']
