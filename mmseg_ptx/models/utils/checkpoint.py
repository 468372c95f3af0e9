"""Loading a checkpoint that must fit the model exactly."""
from __future__ import annotations

from typing import Optional, Union

import torch
from mmengine.runner.checkpoint import (CheckpointLoader,
                                        _load_checkpoint_to_model)
from torch import nn

#: How much of mmengine's list of mismatched keys an error quotes.
_MAX_DETAIL = 1000


def load_checkpoint_strict(model: nn.Module,
                           filename: str,
                           map_location: Union[str, torch.device] = 'cpu'
                           ) -> dict:
    """Load ``filename`` into ``model``, refusing any mismatch.

    mmengine's ``load_checkpoint`` and ``init_model`` load non-strictly by
    default: a checkpoint of another model (or a config that does not match
    it) only logs "do not match exactly" and leaves the rest of the network
    at its random initial weights, so predictions and metrics would come
    from an untrained model. Here missing or unexpected keys and shape
    mismatches are an error. ``module.`` prefixes (DDP) are stripped, and a
    test-time-augmentation wrapper loads into its ``module``, as in
    mmengine.

    Args:
        model (nn.Module): The model.
        filename (str): Checkpoint path or URL (anything mmengine's
            ``CheckpointLoader`` reads).
        map_location (str | torch.device): Defaults to ``'cpu'``.

    Returns:
        dict: The checkpoint (``state_dict``, ``meta``, ...).

    Raises:
        ValueError: The checkpoint's weights do not fit the model; the
            message names the checkpoint and the first mismatched keys.
    """
    checkpoint = CheckpointLoader.load_checkpoint(
        filename, map_location=map_location)
    try:
        # What mmengine's load_checkpoint does once the file is read.
        return _load_checkpoint_to_model(model, checkpoint, strict=True)
    except RuntimeError as err:
        mismatch = checkpoint_mismatch(filename, model, err)
        if mismatch is None:
            raise
        raise mismatch from None


#: How mmengine's strict load_state_dict starts its error (on rank 0).
_MISMATCH = 'The model and loaded state dict do not match exactly'


def checkpoint_mismatch(filename: str, model: nn.Module,
                        err: RuntimeError) -> Optional[ValueError]:
    """The error for mmengine's strict-loading ``RuntimeError``.

    Args:
        filename (str): The checkpoint.
        model (nn.Module): The model it was loaded into.
        err (RuntimeError): An error of mmengine's ``load_checkpoint``.

    Returns:
        ValueError | None: Naming the checkpoint, with the start of
        mmengine's list of mismatched keys; None when ``err`` is not that
        mismatch (a corrupt file, say).
    """
    detail = str(err).strip()
    if not detail.startswith(_MISMATCH):
        return None
    detail = detail[len(_MISMATCH):].strip()
    if len(detail) > _MAX_DETAIL:
        detail = (f'{detail[:_MAX_DETAIL]} ... '
                  f'({len(detail) - _MAX_DETAIL} more characters)')
    return ValueError(
        f'Checkpoint {filename} does not fit the model '
        f'({type(model).__name__}) built from the config: is it the '
        f'checkpoint of this config? {detail}')


def load_runner_checkpoints_strictly(runner) -> None:
    """Make ``runner`` load ``load_from`` strictly, where and when it would.

    mmengine's ``Runner.load_or_resume`` loads ``load_from`` non-strictly;
    for testing a trained model a mismatch must be an error. Its own
    place in the run is kept (after the ``before_run`` hooks, which e.g.
    ``EMAHook`` needs before ``after_load_checkpoint``).

    Args:
        runner (mmengine.runner.Runner): The runner.
    """
    load = runner.load_checkpoint

    def load_strictly(filename: str, map_location='cpu', strict=True,
                      **kwargs):
        try:
            return load(filename, map_location=map_location, strict=True,
                        **kwargs)
        except RuntimeError as err:
            mismatch = checkpoint_mismatch(filename, runner.model, err)
            if mismatch is None:
                raise
            raise mismatch from None

    runner.load_checkpoint = load_strictly
