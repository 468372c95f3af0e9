"""How ``metrics_history.json`` and its PR curves name training progress.

PRCurveHook writes them and the report reads them: one definition serves
both.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional

__all__ = ['PROGRESS_UNITS', 'progress_key', 'curve_tag', 'train_head_key']

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


def train_head_key(records: Iterable[dict], name: str) -> str:
    """The history key of the decode head's training scalar ``name``
    (``'dice_seg'``, say): ``train/decode.<name>``, or, for a cascade of
    heads (OCRNet), whose losses mmseg names ``decode_<i>.``, the last
    head's ``train/decode_<i>.<name>``, the one that predicts.

    Args:
        records (Iterable[dict]): Records of ``metrics_history.json``.
        name (str): The scalar's name after the head's prefix.

    Returns:
        str: The key; ``train/decode.<name>`` where no record has one.
    """
    plain = f'train/decode.{name}'
    pattern = re.compile(rf'train/decode_(\d+)\.{re.escape(name)}')
    stages = set()
    for record in records:
        if plain in record:
            return plain
        stages.update(int(m.group(1)) for m in map(pattern.fullmatch, record)
                      if m)
    return f'train/decode_{max(stages)}.{name}' if stages else plain
