"""The 1st-place "triplet threshold" post-processing of SIIM-ACR."""
from __future__ import annotations

from typing import Union

import cv2
import numpy as np
import torch
from mmseg.registry import MODELS

__all__ = ['TripletThresholdPostProcessor']


@MODELS.register_module()
class TripletThresholdPostProcessor:
    """Turn a pneumothorax probability map into a binary mask.

    The rule of the competition's 1st place: count the pixels whose
    probability is above ``top_threshold``; if fewer than ``min_area``
    pass, the image is predicted empty (the competition scores an empty
    prediction on a negative image 1 and any pixel on it 0, so small
    confident blobs cost more than they gain); otherwise the mask is the
    map binarised at the lower ``bottom_threshold``, which recovers the
    full extent of the pneumothorax. Optionally, connected components
    smaller than ``min_component_area`` are then removed and the mask is
    closed with an elliptical kernel.

    Areas are counted in pixels of the map this object receives. 1st place
    used ``(0.75, 2000, 0.3)`` on 1024 x 1024 maps (the Kaggle resolution,
    where :class:`~mmseg_ptx.evaluation.PneumothoraxMetric` and
    ``tools/infer.py`` apply it); at 512 x 512 the same area is 500 pixels.

    ``TripletThresholdPostProcessor(0.5, 0, 0.5)`` is the plain 0.5
    threshold. A plain callable, not an ``nn.Module``; build it from a
    config with ``mmseg.registry.MODELS``::

        postprocess = dict(type='TripletThresholdPostProcessor',
                           top_threshold=0.75, min_area=2000,
                           bottom_threshold=0.3)

    Args:
        top_threshold (float): Probability a pixel must exceed to count
            towards ``min_area``, in (0, 1). Defaults to 0.75.
        min_area (int): Fewest pixels above ``top_threshold`` for a
            non-empty prediction; 0 never empties. Defaults to 2000.
        bottom_threshold (float): Probability above which a pixel is in
            the mask once the image is predicted positive, in
            (0, ``top_threshold``]. Defaults to 0.3.
        min_component_area (int): Connected components (8-connectivity)
            with fewer pixels are removed; 0 keeps all. Defaults to 0.
        closing_kernel (int): Size of the elliptical kernel of a
            morphological closing applied last, odd (a closing only adds
            pixels); 0 disables it.
            Defaults to 0.
    """

    def __init__(self,
                 top_threshold: float = 0.75,
                 min_area: int = 2000,
                 bottom_threshold: float = 0.3,
                 min_component_area: int = 0,
                 closing_kernel: int = 0) -> None:
        for name, value in (('top_threshold', top_threshold),
                            ('bottom_threshold', bottom_threshold)):
            if isinstance(value, bool) or not isinstance(
                    value, (int, float)) or not 0.0 < value < 1.0:
                raise ValueError(f'{name} must be a number in (0, 1), got '
                                 f'{value!r}')
        if bottom_threshold > top_threshold:
            raise ValueError(
                f'bottom_threshold ({bottom_threshold}) must not exceed '
                f'top_threshold ({top_threshold})')
        for name, value in (('min_area', min_area),
                            ('min_component_area', min_component_area),
                            ('closing_kernel', closing_kernel)):
            if isinstance(value, bool) or not isinstance(
                    value, (int, np.integer)) or value < 0:
                raise ValueError(f'{name} must be a non-negative integer, '
                                 f'got {value!r}')
        # An even kernel has no centre: OpenCV's off-centre anchor makes
        # the closing shift the mask by a pixel and lose area.
        if closing_kernel % 2 == 0 and closing_kernel > 0:
            raise ValueError('closing_kernel must be odd (or 0 for no '
                             f'closing), got {closing_kernel}')
        self.top_threshold = float(top_threshold)
        self.min_area = int(min_area)
        self.bottom_threshold = float(bottom_threshold)
        self.min_component_area = int(min_component_area)
        self.closing_kernel = int(closing_kernel)

    def __call__(self, prob: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
        """Post-process one probability map.

        Args:
            prob (np.ndarray | torch.Tensor): (H, W) probabilities in
                [0, 1] (any float dtype, any device).

        Returns:
            np.ndarray: (H, W) ``uint8`` mask of 0/1.
        """
        if isinstance(prob, torch.Tensor):
            prob = prob.detach().float().cpu().numpy()
        # float32 for every input, as mask_tensor: a float64 map would
        # otherwise be cut otherwise than the same map as a tensor.
        prob = np.asarray(prob, dtype=np.float32)
        if prob.ndim != 2:
            raise ValueError('TripletThresholdPostProcessor expects an '
                             f'(H, W) probability map, got shape '
                             f'{prob.shape}')
        if int(np.count_nonzero(prob > self.top_threshold)) < self.min_area:
            return np.zeros(prob.shape, np.uint8)
        mask = (prob > self.bottom_threshold).astype(np.uint8)
        if self.min_component_area > 0:
            num, labels, stats, _ = cv2.connectedComponentsWithStats(
                mask, connectivity=8)
            # Label 0 is the background.
            keep = stats[:, cv2.CC_STAT_AREA] >= self.min_component_area
            keep[0] = False
            mask = keep[labels].astype(np.uint8)
        if self.closing_kernel > 0:
            kernel = cv2.getStructuringElement(
                cv2.MORPH_ELLIPSE, (self.closing_kernel, self.closing_kernel))
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
        return mask

    def mask_tensor(self, prob: torch.Tensor) -> torch.Tensor:
        """The mask of :meth:`__call__` as a bool tensor on ``prob``'s
        device.

        Without the component filter and the closing (the defaults) it is
        computed there, without reading anything back, so on a GPU the
        host need not wait for the device (as
        :class:`~mmseg_ptx.evaluation.PneumothoraxMetric` does not); with
        them, or in a subclass that overrides :meth:`__call__`, the map
        goes through :meth:`__call__` on the host.

        Args:
            prob (torch.Tensor): (H, W) probabilities in [0, 1] (any float
                dtype, any device).

        Returns:
            torch.Tensor: (H, W) bool mask on ``prob``'s device.
        """
        if (self.min_component_area > 0 or self.closing_kernel > 0
                or type(self).__call__ is not
                TripletThresholdPostProcessor.__call__):
            return torch.as_tensor(self(prob)).to(prob.device).bool()
        if prob.dim() != 2:
            raise ValueError('TripletThresholdPostProcessor expects an '
                             f'(H, W) probability map, got shape '
                             f'{tuple(prob.shape)}')
        prob = prob.detach().float()  # compared in float32, as __call__
        positive = (prob > self.top_threshold).sum() >= self.min_area
        return (prob > self.bottom_threshold) & positive

    def to_dict(self) -> dict:
        """The config dict that rebuilds this post-processor."""
        return dict(type=self.__class__.__name__,
                    top_threshold=self.top_threshold,
                    min_area=self.min_area,
                    bottom_threshold=self.bottom_threshold,
                    min_component_area=self.min_component_area,
                    closing_kernel=self.closing_kernel)

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v}' for k, v in self.to_dict().items()
                         if k != 'type')
        return f'{self.__class__.__name__}({args})'
