"""Loading a checkpoint that must fit the model exactly."""
from __future__ import annotations

from typing import Union

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
        raise checkpoint_mismatch(filename, model, err) from None


def checkpoint_mismatch(filename: str, model: nn.Module,
                        err: RuntimeError) -> ValueError:
    """The error for mmengine's strict-loading ``RuntimeError``.

    Args:
        filename (str): The checkpoint.
        model (nn.Module): The model it was loaded into.
        err (RuntimeError): mmengine's error, listing the mismatched keys.

    Returns:
        ValueError: Naming the checkpoint, with the start of the list.
    """
    detail = str(err).strip()
    if len(detail) > _MAX_DETAIL:
        detail = (f'{detail[:_MAX_DETAIL]} ... '
                  f'({len(detail) - _MAX_DETAIL} more characters)')
    return ValueError(
        f'Checkpoint {filename} does not fit the model '
        f'({type(model).__name__}) built from the config: is it the '
        f'checkpoint of this config? {detail}')
