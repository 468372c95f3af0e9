"""Losses."""
from .dice_ce_loss import DiceCELoss

__all__ = ['DiceCELoss']
