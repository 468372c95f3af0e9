"""Loading a checkpoint that must fit the model exactly."""
from __future__ import annotations

import os.path as osp
import pickle
import zipfile
from contextlib import contextmanager
from typing import Callable, Iterator, Union

import torch
from mmengine.dist import all_reduce
from mmengine.runner import CheckpointLoader, load_checkpoint
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded into the model: no PyTorch
    checkpoint, or the weights of another model. The tools report it as
    one ``error:`` line, like a bad command line."""


#: How much of mmengine's list of mismatched keys an error quotes.
_MAX_DETAIL = 1000
#: How mmengine's strict load_state_dict starts its error (on rank 0).
_MISMATCH = 'The model and loaded state dict do not match exactly'
#: How torch.save's files start: a zip archive (torch >= 1.6), a pickle.
_ZIP_MAGIC = b'PK\x03\x04'
_PICKLE_PROTO = 0x80
#: torch.load's errors on a zip archive that is no complete checkpoint:
#: cut short, or of another kind.
_ZIP_READER = 'PytorchStreamReader failed'
_ZIP_CONTAINER = 'inline_container'
#: torch.load (weights_only=False) on a pickle that torch.save did not
#: write.
_BAD_MAGIC = 'Invalid magic number'
#: What precedes the reason in torch.load's weights_only errors.
_UNPICKLER = 'WeightsUnpickler error:'


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
        CheckpointError: The checkpoint's weights do not fit the model (the
            message names the checkpoint and the first mismatched keys), or
            the file is no PyTorch checkpoint (empty, truncated, another
            kind of file).
    """
    return _strictly(
        lambda: load_checkpoint(
            model, filename, map_location=map_location, strict=True),
        filename, model)


def init_model_strict(config, checkpoint: str, device: str) -> nn.Module:
    """mmseg's ``init_model``, its checkpoint loaded strictly
    (:func:`load_checkpoint_strict`), with the checkpoint's
    ``dataset_meta`` as ``init_model`` keeps it.

    Args:
        config (str | Config): Model config.
        checkpoint (str): Checkpoint file.
        device (str): Where the model goes.

    Returns:
        nn.Module: The segmentor in eval mode, with ``.cfg``.
    """
    from mmseg.apis import init_model
    model = init_model(config, None, device='cpu')
    meta = load_checkpoint_strict(model, checkpoint).get('meta', {})
    if 'dataset_meta' in meta:
        model.dataset_meta = meta['dataset_meta']
    return model.to(device)


def load_runner_checkpoints_strictly(runner) -> None:
    """Make ``runner`` load ``load_from`` strictly, where and when it would.

    mmengine's ``Runner.load_or_resume`` loads ``load_from`` non-strictly;
    for testing a trained model a mismatch must be an error. Its own
    place in the run is kept (after the ``before_run`` hooks, which e.g.
    ``EMAHook`` needs before ``after_load_checkpoint``). In a distributed
    run every process stops when the load fails on any of them.

    Args:
        runner (mmengine.runner.Runner): The runner.
    """
    load = runner.load_checkpoint

    def load_strictly(filename: str, map_location='cpu', strict=True,
                      **kwargs):
        error = None
        try:
            checkpoint = _strictly(
                lambda: load(filename, map_location=map_location,
                             strict=True, **kwargs), filename, runner.model)
        except Exception as err:  # every rank must hear of it, below
            error = err
        # mmengine's strict check raises on rank 0 only; the other ranks
        # would test the random weights and then wait for rank 0 at the
        # first collective until the process group times out (where no
        # launcher, as torchrun does, stops them when rank 0 fails).
        if _failed_on_any_rank(error is not None):
            if error is not None:
                raise error
            raise RuntimeError(
                f'Checkpoint {filename} could not be loaded on another '
                'process (its error says why); this one stops too')
        return checkpoint

    runner.load_checkpoint = load_strictly


def _failed_on_any_rank(failed: bool) -> bool:
    """Whether any process of the (mmengine) process group failed; without
    one, ``failed`` itself."""
    flag = torch.tensor([int(failed)])
    all_reduce(flag, op='max')
    return bool(flag.item())


def read_checkpoint(filename: str,
                    map_location: Union[str, torch.device] = 'cpu') -> dict:
    """mmengine's ``CheckpointLoader.load_checkpoint``, with a file that is
    no PyTorch checkpoint an error that names it and says why.

    Args:
        filename (str): Checkpoint path or URL.
        map_location (str | torch.device): Defaults to ``'cpu'``.

    Returns:
        dict: The checkpoint as saved.

    Raises:
        CheckpointError: The file is empty, truncated or of another kind.
    """
    with _unreadable_named(filename):
        return CheckpointLoader.load_checkpoint(
            filename, map_location=map_location)


@contextmanager
def _unreadable_named(filename: str) -> Iterator[None]:
    """Around a load of ``filename``: the file checked first
    (:func:`check_checkpoint_file`), and ``torch.load``'s errors on a file
    that is no complete checkpoint raised as a :class:`CheckpointError`
    naming it; other errors as they are."""
    check_checkpoint_file(filename)
    try:
        yield
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        _raise_if_unreadable(filename, err)
        raise


def check_checkpoint_file(filename: str) -> None:
    """Refuse a local file that cannot be a PyTorch checkpoint.

    ``torch.save`` writes a zip archive (a pickle before torch 1.6); a
    file that starts as neither gets errors from ``torch.load`` that name
    neither the file nor the problem, and differ between torch versions
    ("could not convert string to int" for a CSV before torch 2.6).
    Paths that are no local file (URLs) are left to the loader.

    Args:
        filename (str): The checkpoint.

    Raises:
        CheckpointError: The file is empty, a zip archive cut short, or
            starts as neither a zip archive nor a pickle.
    """
    if not osp.isfile(filename):
        return
    with open(filename, 'rb') as f:
        head = f.read(4)
    if not head:
        why = 'the file is empty'
    elif head == _ZIP_MAGIC and not zipfile.is_zipfile(filename):
        # A zip archive's directory is at its end: a file cut short (an
        # interrupted save or copy) has none.
        why = 'a zip archive cut short (an interrupted save or copy?)'
    elif head == _ZIP_MAGIC or head[0] == _PICKLE_PROTO:
        return
    else:
        why = 'not a PyTorch checkpoint (neither a zip archive nor a pickle)'
    raise CheckpointError(f'Checkpoint {filename} could not be read: {why}')


def _raise_if_unreadable(filename: str, err: Exception) -> None:
    """Raise a :class:`CheckpointError` saying why ``torch.load`` could not
    read ``filename`` where ``err`` says the file is no (complete) PyTorch
    checkpoint; otherwise return."""
    message = str(err).strip()
    first_line = message.splitlines()[0] if message else ''
    if isinstance(err, EOFError):
        why = 'the file is cut short'
    elif isinstance(err, RuntimeError) and (
            message.startswith(_ZIP_READER) or _ZIP_CONTAINER in message):
        why = ('not a complete PyTorch checkpoint: a truncated or damaged '
               f'file, or a zip archive of another kind? (torch: '
               f'{first_line.split(". ")[0]})')
    elif isinstance(err, RuntimeError) and message.startswith(_BAD_MAGIC):
        why = f'a pickle, but not a PyTorch checkpoint (torch: {first_line})'
    elif isinstance(err, pickle.UnpicklingError):
        detail = message.partition(_UNPICKLER)[2].strip()
        if detail.startswith('Unsupported global'):
            # A checkpoint holding objects of other classes: torch's own
            # message says how to allow them.
            why = f'torch.load(weights_only=True) refused it: {message}'
        else:
            why = ('not a PyTorch checkpoint (torch.load: '
                   f'{(detail or message).splitlines()[0]})')
    else:
        return
    raise CheckpointError(
        f'Checkpoint {filename} could not be read: {why}') from None


def _strictly(load: Callable[[], dict], filename: str,
              model: nn.Module) -> dict:
    """``load()``, with mmengine's strict-loading ``RuntimeError`` as a
    :class:`CheckpointError` naming the checkpoint and the start of
    mmengine's list of mismatched keys, and a file that is no checkpoint
    (empty, truncated, another kind of file) as one naming it; other errors
    as they are."""
    try:
        with _unreadable_named(filename):
            return load()
    except RuntimeError as err:
        detail = str(err).strip()
        if not detail.startswith(_MISMATCH):
            raise
        detail = detail[len(_MISMATCH):].strip()
        if len(detail) > _MAX_DETAIL:
            detail = (f'{detail[:_MAX_DETAIL]} ... '
                      f'({len(detail) - _MAX_DETAIL} more characters)')
        raise CheckpointError(
            f'Checkpoint {filename} does not fit the model '
            f'({type(model).__name__}) built from the config: is it the '
            f'checkpoint of this config? {detail}') from None
