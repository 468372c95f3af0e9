"""Plotting helpers (matplotlib, Agg canvas, no global pyplot state)."""
from __future__ import annotations

import os
import os.path as osp
from typing import Optional, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ['plot_pr_curve']


def plot_pr_curve(curve: Union[dict, object],
                  out_path: str,
                  title: Optional[str] = None,
                  dpi: int = 120) -> str:
    """Draw a precision-recall curve with its best-F1 point and AP.

    Args:
        curve (dict | PRCurve): A :class:`~mmseg_ptx.evaluation.PRCurve` or
            its ``to_dict()`` / JSON form, with ``precision``, ``recall``,
            ``ap``, ``best_precision``, ``best_recall``, ``best_f1``,
            ``best_threshold`` and optionally ``num_pos``/``num_neg``.
        out_path (str): Image file to write (format from the extension);
            parent folders are created.
        title (str, optional): Figure title. Defaults to None.
        dpi (int): Resolution. Defaults to 120.

    Returns:
        str: ``out_path``.
    """
    if not isinstance(curve, dict):
        curve = curve.to_dict()
    # Without a positive pixel the numbers are NaN, which the curve's JSON
    # (strict, json_io.write_json) holds as null.
    curve = {k: float('nan') if v is None else v for k, v in curve.items()}
    precision = np.asarray(curve['precision'], dtype=np.float64)
    recall = np.asarray(curve['recall'], dtype=np.float64)

    # A Figure with its own Agg canvas: safe in training processes that
    # never chose a backend, and nothing leaks into pyplot's figure list.
    fig = Figure(figsize=(6, 5), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ap = curve['ap']
    ax.plot(recall, precision, color='tab:blue', lw=1.5,
            label=f'PR curve (AP = {ap:.4f})' if np.isfinite(ap) else
            'PR curve (AP undefined: no positive pixel)')
    num_pos, num_neg = curve.get('num_pos'), curve.get('num_neg')
    if num_pos and num_neg is not None:
        # A classifier that ignores the image sits at the prevalence.
        prevalence = num_pos / (num_pos + num_neg)
        ax.axhline(prevalence, color='grey', ls='--', lw=1,
                   label=f'prevalence = {prevalence:.4f}')
    if np.isfinite(curve['best_f1']):
        ax.plot([curve['best_recall']], [curve['best_precision']], 'o',
                color='tab:red', ms=7,
                label=(f'best F1 = {curve["best_f1"]:.4f} at '
                       f't = {curve["best_threshold"]:.4f}\n'
                       f'(P = {curve["best_precision"]:.4f}, '
                       f'R = {curve["best_recall"]:.4f})'))
    ax.set_xlabel('Recall')
    ax.set_ylabel('Precision')
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc='best', fontsize=9)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    parent = osp.dirname(osp.abspath(out_path))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(out_path)
    return out_path
