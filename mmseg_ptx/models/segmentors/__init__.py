"""Segmentor wrappers for evaluation: TTA with logits, ensembles."""
from .ensemble_segmentor import EnsembleSegmentor
from .members import segmentors_of
from .probability import foreground_probability, probability_to_seg_logits
from .seg_tta_with_logits import SegTTAModelWithLogits

__all__ = ['EnsembleSegmentor', 'SegTTAModelWithLogits',
           'foreground_probability', 'probability_to_seg_logits',
           'segmentors_of']
