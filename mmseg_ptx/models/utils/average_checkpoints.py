"""Uniform averaging of the weights of several checkpoints of one model."""
from __future__ import annotations

import hashlib
import os.path as osp
import re
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch

from .checkpoint import read_checkpoint

#: Integer buffers that count, rather than describe, the model: they may
#: differ between checkpoints and the newest one's value is kept.
_COUNTERS = ('num_batches_tracked', )
#: How many mismatched keys an error names.
_MAX_KEYS = 5


def average_checkpoints(
        filenames: Sequence[str],
        map_location: Union[str, torch.device] = 'cpu',
        progress: Optional[Callable[[str], None]] = None) -> dict:
    """The mean of the weights of several checkpoints of one model.

    Averaging the last few checkpoints of a run (or of runs of one config)
    is the checkpoint averaging the winning SIIM solutions used: one model
    whose predictions are usually smoother than any single checkpoint's,
    at the inference cost of one. Every floating-point tensor of the
    ``state_dict`` is averaged (summed in float64, then cast back to its
    dtype), BatchNorm running statistics included (the mean of the running
    variances, not the variance of the averaged network's activations:
    as in the SIIM solutions, no statistics are recomputed). Integer
    tensors must be equal in every checkpoint (``relative_position_index``),
    except BatchNorm's ``num_batches_tracked``, which comes from the newest.

    The newest checkpoint is the one with the largest ``meta['iter']``
    (where every checkpoint has one, as mmengine writes them), else the
    last one given. The result is a checkpoint for testing and inference
    (``tools/test.py``, ``tools/infer.py``, ``load_from``): its ``meta``
    is the newest's (``dataset_meta`` and all) with ``averaged_from``, the
    file names averaged, added; it has no optimizer or scheduler state, so
    a run cannot resume from it.

    Args:
        filenames (Sequence[str]): Two or more checkpoints (paths or URLs,
            anything mmengine's ``CheckpointLoader`` reads) of one model.
        map_location (str | torch.device): Where the checkpoints are
            loaded. Defaults to ``'cpu'``.
        progress (Callable[[str], None], optional): Called with each file
            name once it has been added (a progress bar's update).

    Returns:
        dict: ``{'meta': ..., 'state_dict': ...}``.

    Raises:
        ValueError: Fewer than two checkpoints; a file without a
            ``state_dict`` of tensors; checkpoints whose keys, shapes,
            dtypes or integer tensors differ (the message names both files
            and the keys); two checkpoints with the same weights, which
            would weigh that model twice.
    """
    if len(filenames) < 2:
        raise ValueError(
            f'Averaging needs two or more checkpoints, got {len(filenames)}')
    sums: Dict[str, torch.Tensor] = {}
    # The first checkpoint's layout (floating-point tensors on the meta
    # device: shape and dtype only) and integer tensors, to check the
    # others against.
    reference: Dict[str, torch.Tensor] = {}
    fingerprints: Dict[str, str] = {}
    metas: List[dict] = []
    counters: List[Dict[str, torch.Tensor]] = []
    for filename in filenames:
        checkpoint = read_checkpoint(filename, map_location=map_location)
        state_dict = _state_dict(checkpoint, filename)
        if not reference:
            reference = {
                key: (torch.empty_like(value, device='meta')
                      if value.is_floating_point() else value)
                for key, value in state_dict.items()
            }
            reference_name = filename
        else:
            _check_same_model(state_dict, filename, reference,
                              reference_name)
        for key, value in state_dict.items():
            if value.is_floating_point():
                value = value.to(torch.float64)
                if key in sums:
                    sums[key] += value
                else:
                    sums[key] = value
        digest = _fingerprint(state_dict)
        if digest in fingerprints:
            raise ValueError(
                f'Checkpoints {fingerprints[digest]} and {filename} hold the '
                'same weights: averaging them would weigh that model twice')
        fingerprints[digest] = filename
        metas.append(dict(checkpoint.get('meta') or {}))
        counters.append({
            key: value
            for key, value in state_dict.items() if _is_counter(key)
        })
        if progress is not None:
            progress(filename)
    iters = [meta.get('iter') for meta in metas]
    newest = (max(range(len(metas)), key=lambda i: iters[i])
              if all(isinstance(it, int) for it in iters) else -1)
    averaged = {
        key: (sums[key] / len(filenames)).to(value.dtype)
        if key in sums else counters[newest].get(key, value)
        for key, value in reference.items()
    }
    meta = metas[newest]
    meta['averaged_from'] = [osp.basename(name) for name in filenames]
    return dict(meta=meta, state_dict=averaged)


def _state_dict(checkpoint: object, filename: str) -> Dict[str, torch.Tensor]:
    """The checkpoint's weights, without DDP's ``module.`` prefix (as
    mmengine's ``load_checkpoint`` strips it)."""
    state_dict = (checkpoint.get('state_dict', checkpoint)
                  if isinstance(checkpoint, dict) else checkpoint)
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f'{filename} holds no state_dict of weights')
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f'{filename}: {key!r} in its state_dict is a '
                f'{type(value).__name__}, not a tensor')
    return {re.sub(r'^module\.', '', key): value
            for key, value in state_dict.items()}


def _check_same_model(state_dict: Dict[str, torch.Tensor], filename: str,
                      reference: Dict[str, torch.Tensor],
                      reference_name: str) -> None:
    """Refuse ``state_dict`` unless it has ``reference``'s keys, shapes,
    dtypes and integer tensors."""
    where = f'{filename} is not a checkpoint of the model of {reference_name}'
    missing = [key for key in reference if key not in state_dict]
    unexpected = [key for key in state_dict if key not in reference]
    if missing or unexpected:
        raise ValueError(
            f'{where}: missing keys {_first(missing)}, unexpected keys '
            f'{_first(unexpected)}')
    for key, value in reference.items():
        other = state_dict[key]
        if other.shape != value.shape or other.dtype != value.dtype:
            raise ValueError(
                f'{where}: {key} is {other.dtype} {tuple(other.shape)} there '
                f'and {value.dtype} {tuple(value.shape)} here')
        if (not value.is_floating_point() and not _is_counter(key)
                and not torch.equal(other, value)):
            raise ValueError(
                f'{where}: its integer tensor {key} has other values')


def _is_counter(key: str) -> bool:
    return key.rpartition('.')[2] in _COUNTERS


def _fingerprint(state_dict: Dict[str, torch.Tensor]) -> str:
    """A digest of the floating-point weights' bytes."""
    digest = hashlib.blake2b(digest_size=16)
    for key, value in state_dict.items():
        if value.is_floating_point():
            digest.update(key.encode())
            digest.update(
                value.detach().cpu().contiguous().reshape(-1).view(
                    torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _first(keys: List[str]) -> str:
    shown = ', '.join(keys[:_MAX_KEYS]) or 'none'
    more = len(keys) - _MAX_KEYS
    return f'{shown} (and {more} more)' if more > 0 else shown
