"""Figures of the performance report: training curves, prediction panels."""
from __future__ import annotations

import os
import os.path as osp
from typing import Optional, Sequence, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .history import PROGRESS_UNITS, progress_key, train_head_key

__all__ = ['plot_detailed_metrics', 'save_prediction_panel']


def _series(history: Sequence[dict], key: str, step: str):
    points = [(h[step], h[key]) for h in history
              if h.get(key) is not None and h.get(step) is not None]
    if not points:
        return None
    steps, values = zip(*points)
    return np.asarray(steps), np.asarray(values, dtype=float)


#: PRCurveHook records the training scalars' mean since the previous
#: validation.
_TRAIN_LABEL = 'train (batch-pooled, mean since the last val)'


def plot_detailed_metrics(history: Sequence[dict], out_path: str,
                          dpi: int = 110, best: Optional[int] = None) -> str:
    """Loss, Dice, IoU and PR numbers over epochs (iterations for
    iteration-based training), training vs validation.

    Args:
        history (Sequence[dict]): Records of ``metrics_history.json``
            (PRCurveHook): validation metrics plus ``train/...`` scalars.
        out_path (str): PNG to write.
        dpi (int): Resolution. Defaults to 110.
        best (int, optional): The epoch (iteration) of the validation the
            report's tables and pictures are of, marked in every panel.
            Defaults to None (no mark).

    Returns:
        str: ``out_path``.
    """
    step = progress_key(history)
    unit = PROGRESS_UNITS[step]
    fig = Figure(figsize=(12, 8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    panels = [
        (axes[0, 0], 'Training loss', [('train/loss', 'train: total loss')]),
        (axes[0, 1], 'Dice (foreground)',
         [(train_head_key(history, 'dice_seg'), _TRAIN_LABEL),
          ('dice', 'val (set-pooled)'),
          ('kaggle_dice', 'val (per-image, competition)')]),
        (axes[1, 0], 'IoU (foreground, pooled)',
         [(train_head_key(history, 'iou_seg'), _TRAIN_LABEL),
          ('iou', 'val (set-pooled)')]),
        (axes[1, 1], 'Validation pixel PR',
         [('ap', 'average precision'), ('best_f1', 'best F1')]),
    ]
    for ax, title, keys in panels:
        drawn = False
        for key, label in keys:
            series = _series(history, key, step)
            if series is not None:
                ax.plot(*series, marker='.', label=label)
                drawn = True
        if drawn and best is not None:
            ax.axvline(best, color='grey', linestyle='--', linewidth=1,
                       label=f'best {unit} ({best})')
        ax.set_title(title)
        ax.set_xlabel(unit)
        # Records are at whole epochs (iterations).
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, 'not recorded', ha='center', va='center',
                    transform=ax.transAxes)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, dpi=dpi)
    return out_path


def _overlay(gray: np.ndarray, mask: np.ndarray,
             color=(1.0, 0.15, 0.15), alpha: float = 0.45) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32) / 255.0
    m = mask.astype(bool)
    rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(color)
    return rgb


def save_prediction_panel(image: np.ndarray,
                          gt: Optional[np.ndarray],
                          pred: np.ndarray,
                          out_path: str,
                          title: Optional[str] = None,
                          dpi: int = 100,
                          pixels: Optional[Tuple[int, int]] = None) -> str:
    """Input | ground truth | prediction, side by side.

    Args:
        image (np.ndarray): H x W grey (or H x W x 3) uint8 radiograph.
        gt (np.ndarray, optional): H x W ground-truth mask (non-zero =
            pneumothorax); None where the image has none (its panel says
            so, rather than show an empty mask as a negative).
        pred (np.ndarray): H x W predicted mask.
        out_path (str): PNG to write.
        title (str, optional): Figure title (no patient data).
        dpi (int): Resolution. Defaults to 100.
        pixels (tuple[int, int], optional): The (ground truth, prediction)
            pixel counts in the titles, e.g. at the original resolution
            where the masks are drawn at another size. Defaults to the
            counts of ``gt`` and ``pred``.

    Returns:
        str: ``out_path``.
    """
    if pixels is None:
        pixels = (0 if gt is None else int(gt.sum()), int(pred.sum()))
    gray = image if image.ndim == 2 else image[..., 0]
    fig = Figure(figsize=(12, 4.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    truth = ((rgb, 'Ground truth: not given') if gt is None else
             (_overlay(gray, gt), f'Ground truth ({pixels[0]} px)'))
    panels = [(rgb, 'Input'), truth,
              (_overlay(gray, pred, color=(0.1, 0.8, 1.0)),
               f'Prediction ({pixels[1]} px)')]
    for ax, (img, name) in zip(axes, panels):
        ax.imshow(img, cmap='gray')
        ax.set_title(name)
        ax.axis('off')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, dpi=dpi)
    return out_path
