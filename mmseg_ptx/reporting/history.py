"""How ``metrics_history.json`` and its PR curves name training progress.

PRCurveHook writes them and the report reads them: one definition serves
both.
"""
from __future__ import annotations

from typing import Iterable, Optional

__all__ = ['PROGRESS_UNITS', 'progress_key', 'curve_tag']

#: How the report names the training progress of each history key.
PROGRESS_UNITS = dict(epoch='epoch', iter='iteration')


def progress_key(records: Iterable[dict]) -> str:
    """``'epoch'``, or ``'iter'`` for iteration-based training, which
    records every validation at epoch 0.

    Args:
        records (Iterable[dict]): Records of ``metrics_history.json``.

    Returns:
        str: The key that orders the run's validations.
    """
    return 'epoch' if any(h.get('epoch') for h in records) else 'iter'


def curve_tag(epoch: Optional[int], iteration: Optional[int]) -> \
        Optional[str]:
    """The tag of a validation's curve files (``val_<tag>.json``).

    Args:
        epoch (int, optional): The runner's epoch; 0 or None in
            iteration-based training and outside training.
        iteration (int, optional): The runner's iteration.

    Returns:
        str | None: ``epoch_XXX``, ``iter_XXXXXX``, or None for a
        validation outside training.
    """
    if epoch:
        return f'epoch_{epoch:03d}'
    if iteration:
        return f'iter_{iteration:06d}'
    return None
