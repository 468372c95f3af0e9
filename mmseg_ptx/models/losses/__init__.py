"""Losses."""
from .dice_ce_loss import DiceCELoss, load_class_weight

__all__ = ['DiceCELoss', 'load_class_weight']
