"""Probability-map to mask post-processors."""
from .triplet_threshold import TripletThresholdPostProcessor

__all__ = ['TripletThresholdPostProcessor']
