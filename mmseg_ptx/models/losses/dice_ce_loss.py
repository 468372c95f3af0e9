"""Class-weighted cross-entropy + soft Dice (+ optional focal) loss."""
from __future__ import annotations

import json
import math
import numbers
import os
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmseg.registry import MODELS

from mmseg_ptx.utils import AsyncReadback

__all__ = ['DiceCELoss', 'load_class_weight']

#: Key of the class weights in the JSON written by tools/dataset_stats.py.
CLASS_WEIGHTS_KEY = 'class_weights'

_TINY = torch.finfo(torch.float32).tiny


def _check_class_weight(values, source: str) -> list[float]:
    if (isinstance(values, (str, bytes, dict))
            or not hasattr(values, '__len__') or len(values) != 2):
        raise ValueError(
            f'class_weight from {source} must be a list of 2 numbers '
            f'(background, foreground), got {values!r}')
    weights = []
    for value in values:
        if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                or not math.isfinite(value) or value < 0):
            raise ValueError(
                f'class_weight from {source} must hold finite numbers >= 0, '
                f'got {values!r}')
        weights.append(float(value))
    if sum(weights) == 0:
        raise ValueError(f'class_weight from {source} is all zeros.')
    return weights


def load_class_weight(
    class_weight: Union[Sequence[float], str, os.PathLike, None]
) -> Optional[list[float]]:
    """Class weights from a list or from a dataset statistics JSON file.

    Args:
        class_weight (Sequence[float] | str | os.PathLike | None): Two
            weights (background, pneumothorax), or the path of the JSON
            written by ``tools/dataset_stats.py`` (key ``class_weights``).

    Returns:
        list[float] | None: The weights, None for None.
    """
    if class_weight is None:
        return None
    if not isinstance(class_weight, (str, os.PathLike)):
        return _check_class_weight(class_weight, 'the config')
    path = os.fspath(class_weight)
    if not os.path.isfile(path):
        relative = '' if os.path.isabs(path) else (
            f'; a relative path is read from the current folder, '
            f'{os.getcwd()}: run from the folder the config was written '
            f'for, or give the config an absolute path')
        raise FileNotFoundError(
            f'class_weight file {path} does not exist (expected the '
            f'statistics JSON written by tools/dataset_stats.py{relative}).')
    try:
        with open(path, encoding='utf-8') as f:
            stats = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f'class_weight file {path} is not valid JSON: {err}') from None
    if not isinstance(stats, dict) or CLASS_WEIGHTS_KEY not in stats:
        raise KeyError(
            f'class_weight file {path} has no key {CLASS_WEIGHTS_KEY!r} '
            f'(expected the statistics JSON written by '
            f'tools/dataset_stats.py).')
    return _check_class_weight(stats[CLASS_WEIGHTS_KEY], f'file {path}')


@MODELS.register_module()
class DiceCELoss(nn.Module):
    """``loss_weight * (ce_weight * CE + dice_weight * (1 - soft Dice) +
    focal_weight * FL)``.

    The reference run's loss: 0.5 * class-weighted cross-entropy + 0.5 *
    soft Dice on the foreground probability, with an optional focal term.
    For binary segmentation, with either head layout MMSeg allows:

    - 2 output channels (softmax): CE is ``F.cross_entropy``; Dice uses the
      softmax probability of channel 1.
    - 1 output channel (sigmoid; ``num_classes=2, out_channels=1``): CE is
      ``F.binary_cross_entropy_with_logits``; Dice uses the sigmoid. Class
      weights are applied per pixel by its label, so a 1-channel head with
      logit ``z`` gets exactly the loss of a 2-channel head with logits
      ``(0, z)``. Up to a per-batch scale (the weighted mean divides by the
      summed weights, BCE by the pixel count) this is BCE with
      ``pos_weight = class_weight[1] / class_weight[0]``.

    Pixels whose label is the ignore index (e.g. 255 padding) are excluded
    from every term, with or without class weights. Any other label than
    0, 1 and the ignore index raises a ``ValueError``; the loss never
    makes the host wait for the GPU, so on a GPU that error comes a call
    or two later, or when the loss is switched to eval mode (see
    ``_check_labels``). A per-pixel ``weight``
    (MMSeg's ``seg_weight``, e.g. from a pixel sampler) multiplies each
    pixel's contribution to every term. All terms are computed in float32,
    so the loss is safe under bf16/fp16 autocast; logits at ignored pixels
    are dropped before any term, so a non-finite one (an fp16 overflow in
    padding) reaches neither the loss nor its gradient.

    ``reduction_override='none'`` (how MMSeg's ``OHEMPixelSampler`` without
    ``thresh`` ranks pixels) returns the per-pixel CE and focal terms,
    class-weighted and scaled by their weights, shape (N, H, W), 0 at
    ignored pixels: the Dice term has no per-pixel value.

    CE and focal terms (per-pixel weight ``w = class_weight[label] *
    seg_weight``, 0 at ignored pixels):

    - ``avg_non_ignore=True``: ``sum(w * loss) / sum(w)``, the weighted mean
      of ``F.cross_entropy(weight=class_weight, reduction='mean')`` and of
      the reference run.
    - ``avg_non_ignore=False``: ``sum(w * loss) / (number of pixels,
      ignored ones included)``, like MMSeg's ``CrossEntropyLoss`` with
      ``avg_non_ignore=False`` and no class weights (with them, MMSeg
      1.2.2 divides by their sum in either mode).

    The focal term is ``(1 - p_t) ** focal_gamma * CE`` per pixel, with the
    same class weights (as the focal loss's alpha) and normalisation as CE,
    so ``focal_gamma=0`` reproduces the CE term.

    Dice (class weights are not used; ``seg_weight`` weights pixels):
    ``1 - (2 * sum(p * g) + smooth) / (sum(p) + sum(g) + smooth)`` with ``p``
    the foreground probability and ``g`` the binary foreground label, sums
    over non-ignored pixels.

    - ``dice_mode='batch'``: sums over the whole batch (the reference).
    - ``dice_mode='image'``: one Dice per image, averaged over the images
      that have at least one non-ignored pixel. With ``smooth > 0`` an image
      with empty ground truth scores ``smooth / (sum(p) + smooth)``: close to
      1 (loss close to 0) when nothing is predicted and falling as predicted
      foreground mass grows, like the competition metric that scores an
      empty/empty image 1. A Dice with zero denominator (possible only with
      ``smooth=0``) counts as 1.

    Args:
        ce_weight (float): Weight of the CE term. Defaults to 0.5.
        dice_weight (float): Weight of the Dice term. Defaults to 0.5.
        class_weight (list[float] | str, optional): Weights of (background,
            foreground) for CE and focal terms, or the path of the statistics
            JSON written by ``tools/dataset_stats.py`` whose key
            ``class_weights`` holds them. Defaults to None (no weighting).
        dice_mode (str): ``'batch'`` or ``'image'``, see above.
            Defaults to ``'batch'``.
        smooth (float): Additive smoothing of the Dice, >= 0.
            Defaults to 1.0.
        focal_weight (float): Weight of the focal term; 0 disables it.
            Defaults to 0.0.
        focal_gamma (float): Focusing parameter of the focal term, >= 0.
            Defaults to 2.0.
        ignore_index (int): Label ignored by every term. The decode head
            passes its own ``ignore_index`` at call time, which takes
            precedence. Defaults to 255.
        avg_non_ignore (bool): Normalisation of CE and focal terms, see
            above. Defaults to True.
        loss_name (str): Name of the loss in the log; must start with
            ``'loss_'`` so that MMSeg adds it to the total loss.
            Defaults to ``'loss_dice_ce'``.
        loss_weight (float): Factor on the whole loss (and on the per-pixel
            terms), as in MMSeg's losses: 0.4 for UPerNet's auxiliary head,
            say. Defaults to 1.0.
        use_sigmoid (bool, optional): The head layout, as MMSeg's losses
            name it, checked at each call: True for a 1-channel (sigmoid)
            head, False for a 2-channel (softmax) head; None takes either.
            A stock config's ``use_sigmoid`` merged into this loss thus
            fails loudly where it does not match the head. Defaults to
            None.
    """

    def __init__(self,
                 ce_weight: float = 0.5,
                 dice_weight: float = 0.5,
                 class_weight: Union[Sequence[float], str, None] = None,
                 dice_mode: str = 'batch',
                 smooth: float = 1.0,
                 focal_weight: float = 0.0,
                 focal_gamma: float = 2.0,
                 ignore_index: int = 255,
                 avg_non_ignore: bool = True,
                 loss_name: str = 'loss_dice_ce',
                 loss_weight: float = 1.0,
                 use_sigmoid: Optional[bool] = None) -> None:
        super().__init__()
        for name, value in (('ce_weight', ce_weight),
                            ('loss_weight', loss_weight),
                            ('dice_weight', dice_weight),
                            ('focal_weight', focal_weight),
                            ('smooth', smooth),
                            ('focal_gamma', focal_gamma)):
            if (not isinstance(value, numbers.Real)
                    or not math.isfinite(value) or value < 0):
                raise ValueError(
                    f'{name} must be a finite number >= 0, got {value!r}')
        if use_sigmoid not in (None, True, False):
            raise ValueError(
                f'use_sigmoid must be True, False or None, got '
                f'{use_sigmoid!r}')
        if ce_weight == dice_weight == focal_weight == 0:
            raise ValueError('ce_weight, dice_weight and focal_weight are '
                             'all 0: the loss would be constant.')
        if dice_mode not in ('batch', 'image'):
            raise ValueError(
                f"dice_mode must be 'batch' or 'image', got {dice_mode!r}")
        if not isinstance(loss_name, str) or not loss_name.startswith(
                'loss_'):
            raise ValueError(
                f"loss_name must start with 'loss_' (MMSeg only back-"
                f'propagates such names), got {loss_name!r}')
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.class_weight = load_class_weight(class_weight)
        self.dice_mode = dice_mode
        self.smooth = float(smooth)
        self.focal_weight = float(focal_weight)
        self.focal_gamma = float(focal_gamma)
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore
        self._loss_name = loss_name
        self.loss_weight = float(loss_weight)
        self.use_sigmoid = use_sigmoid
        self._label_checks = AsyncReadback()

    def forward(self,
                seg_logits: Tensor,
                seg_label: Tensor,
                weight: Optional[Tensor] = None,
                ignore_index: Optional[int] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            seg_logits (Tensor): Logits of shape (N, C, H, W) with C = 2
                (softmax) or C = 1 (sigmoid), any float dtype.
            seg_label (Tensor): Labels of shape (N, H, W) with values 0, 1
                and ``ignore_index``.
            weight (Tensor, optional): Per-pixel weight of shape (N, H, W).
                Defaults to None.
            ignore_index (int, optional): Overrides ``self.ignore_index``
                (MMSeg's decode head passes its own). Defaults to None.
            reduction_override (str, optional): ``'none'`` for the
                per-pixel CE and focal terms (see above); None or
                ``'mean'`` for the loss. Defaults to None.

        Returns:
            Tensor: The scalar loss, or the (N, H, W) per-pixel terms
            (float32).
        """
        if reduction_override not in (None, 'mean', 'none'):
            raise ValueError(
                "DiceCELoss reduction_override must be None, 'mean' or "
                f"'none', got {reduction_override!r}")
        if (reduction_override == 'none' and self.ce_weight == 0
                and self.focal_weight == 0):
            raise ValueError(
                "DiceCELoss reduction_override='none' gives the per-pixel CE "
                'and focal terms, but both weights are 0 (the Dice term has '
                'no per-pixel value).')
        if ignore_index is None:
            ignore_index = self.ignore_index
        num_channels = seg_logits.shape[1] if seg_logits.dim() >= 2 else 0
        if seg_logits.dim() < 3 or num_channels not in (1, 2):
            raise ValueError(
                'DiceCELoss is for binary segmentation: seg_logits must be '
                '(N, 2, ...) for a softmax head or (N, 1, ...) for a sigmoid '
                f'head, got shape {tuple(seg_logits.shape)}')
        if self.use_sigmoid is not None and (
                num_channels == 1) != self.use_sigmoid:
            raise ValueError(
                f'DiceCELoss has use_sigmoid={self.use_sigmoid}, which is '
                f'for a {"1" if self.use_sigmoid else "2"}-channel head, but '
                f'the head gives {num_channels} channel(s): set use_sigmoid='
                f'{num_channels == 1} or leave it out (None takes either)')
        expected = seg_logits.shape[:1] + seg_logits.shape[2:]
        if seg_label.shape != expected:
            raise ValueError(
                f'seg_label shape {tuple(seg_label.shape)} does not match '
                f'seg_logits shape {tuple(seg_logits.shape)} (expected '
                f'{tuple(expected)})')
        if weight is not None and weight.shape != seg_label.shape:
            raise ValueError(
                f'weight shape {tuple(weight.shape)} does not match '
                f'seg_label shape {tuple(seg_label.shape)}')

        valid = seg_label != ignore_index
        invalid = valid & (seg_label != 0) & (seg_label != 1)
        self._check_labels(seg_label, invalid, ignore_index)
        # On a GPU the check above reports later; until then such labels
        # count as ignored (cross-entropy would stop at them with a
        # device-side assert, which ends the CUDA context and says little).
        valid = valid & ~invalid
        target = torch.where(valid, seg_label, torch.zeros_like(seg_label))
        # Dropped, not multiplied by 0 later: a non-finite logit at an
        # ignored pixel would turn 0 * inf into nan in the loss or, through
        # softmax and cross-entropy, in the gradient.
        logits = torch.where(valid.unsqueeze(1), seg_logits.float(),
                             seg_logits.new_zeros((), dtype=torch.float32))

        # Per-pixel weight common to all terms; 0 at ignored pixels.
        pixel_weight = valid.float()
        if weight is not None:
            pixel_weight = pixel_weight * weight.float()

        if num_channels == 2:
            # At ignored pixels a placeholder target, weighted by 0 below.
            nll = F.cross_entropy(logits, target.long(), reduction='none')
            fg_prob = logits.softmax(dim=1)[:, 1]
        else:
            fg_logit = logits[:, 0]
            # At ignored pixels a placeholder target, weighted by 0 below.
            nll = F.binary_cross_entropy_with_logits(
                fg_logit, target.float(), reduction='none')
            fg_prob = fg_logit.sigmoid()

        loss = logits.new_zeros(())
        if self.ce_weight > 0 or self.focal_weight > 0:
            class_pixel_weight = pixel_weight
            if self.class_weight is not None:
                # Python numbers, not a tensor made from the list: on a
                # GPU that is a blocking copy, a wait for the GPU per call.
                background, foreground = self.class_weight
                class_pixel_weight = pixel_weight * torch.where(
                    target == 1, foreground, background).to(
                        pixel_weight.dtype)
            ce = class_pixel_weight * nll
            focal = None
            if self.focal_weight > 0:
                # 1 - p_t = 1 - exp(-nll); clamped so that the gradient of
                # the power stays finite where p_t == 1.
                modulator = (-torch.expm1(-nll)).clamp_min(_TINY).pow(
                    self.focal_gamma)
                focal = class_pixel_weight * modulator * nll
            if reduction_override == 'none':
                return self.loss_weight * (self.ce_weight * ce + (
                    0 if focal is None else self.focal_weight * focal))
            if self.avg_non_ignore:
                denominator = class_pixel_weight.sum()
            else:
                denominator = logits.new_full((), float(seg_label.numel()))
            # All pixels ignored: numerator and loss are 0, not 0 / 0.
            denominator = denominator.clamp_min(_TINY)
            if self.ce_weight > 0:
                loss = loss + self.ce_weight * (ce.sum() / denominator)
            if focal is not None:
                loss = loss + self.focal_weight * (focal.sum() / denominator)

        if self.dice_weight > 0:
            loss = loss + self.dice_weight * self._dice_loss(
                fg_prob, (target == 1).float(), pixel_weight)
        return self.loss_weight * loss

    def _check_labels(self, seg_label: Tensor, invalid: Tensor,
                      ignore_index: int) -> None:
        """Raise for labels outside {0, 1, ignore_index} (``invalid``).

        Such a label (e.g. a 0/255 mask with another ignore index) would
        otherwise be silently mislabelled. ``if tensor.any():`` would make
        the host wait for the GPU twice per train step (decode and
        auxiliary head), so the count and range of such labels are read
        back with :class:`AsyncReadback`: on the CPU in this call, on a GPU
        in a later call (usually the next head's or step's), when the loss
        is switched to eval mode (e.g. for validation), or when its state
        dict is taken (a checkpoint): the last steps of a run that ends
        without validation are reported before its last checkpoint.
        """
        if seg_label.numel() == 0:
            return
        # float64: counts beyond uint8/int16 range, float and bool labels;
        # exact for every integer label value.
        label = seg_label.double()
        stats = torch.stack([
            invalid.sum().double(),
            torch.where(invalid, label, math.inf).amin(),
            torch.where(invalid, label, -math.inf).amax()
        ])
        self._label_checks.push(stats, ignore_index)
        self._raise_for_invalid_labels(self._label_checks.poll())

    @staticmethod
    def _raise_for_invalid_labels(checks: list) -> None:
        for stats, ignore_index in checks:
            count, low, high = stats.tolist()
            if count:
                raise ValueError(
                    f'seg_label must contain only 0, 1 and ignore_index='
                    f'{ignore_index}, got {int(count)} pixels with other '
                    f'values (from {low:g} to {high:g}) in a batch (on a GPU '
                    f'the check is read back without waiting, so the batch '
                    f'may be one or two steps before this one)')

    def train(self, mode: bool = True) -> 'DiceCELoss':
        """Switch the mode, first reading back the pending label checks
        (see :meth:`_check_labels`) when switching to eval mode."""
        if not mode:
            self._raise_for_invalid_labels(self._label_checks.drain())
        return super().train(mode)

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        # A checkpoint holds the steps before it: their bad labels are
        # reported first (see _check_labels), also those of a run's last
        # steps, which no later call or validation reads back.
        self._raise_for_invalid_labels(self._label_checks.drain())
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _dice_loss(self, prob: Tensor, target: Tensor,
                   pixel_weight: Tensor) -> Tensor:
        """``1 - soft Dice`` pooled over the batch or averaged per image."""
        dims = tuple(range(prob.dim())) if self.dice_mode == 'batch' else \
            tuple(range(1, prob.dim()))
        intersection = (pixel_weight * prob * target).sum(dims)
        cardinality = (pixel_weight * (prob + target)).sum(dims)
        numerator = 2 * intersection + self.smooth
        denominator = cardinality + self.smooth
        dice = torch.where(denominator > 0,
                           numerator / denominator.clamp_min(_TINY),
                           torch.ones_like(denominator))
        if self.dice_mode == 'batch':
            return 1 - dice
        # Images without any non-ignored pixel do not count.
        has_pixels = (pixel_weight.sum(dims) > 0).float()
        return ((1 - dice) * has_pixels).sum() / has_pixels.sum().clamp_min(1)

    @property
    def loss_name(self) -> str:
        """Name of the loss in MMSeg's loss dict."""
        return self._loss_name
