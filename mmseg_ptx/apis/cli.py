"""Argument handling shared by ``tools/train.py``, ``tools/test.py`` and
``tools/tune_postprocess.py``.

The tools keep MMSeg's command-line interface; this module holds the part
both need so the scripts stay thin.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import json
import logging
import os
import os.path as osp
import re
import sys
import tempfile
from typing import (Any, Callable, Iterator, List, Mapping, Optional,
                    Sequence)

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from ..compat import check_pkg_resources
from ..models.utils import CheckpointError

#: Top-level config keys that are settings, not variables: the Runner's
#: arguments, what it reads from the config beside them (mmengine 0.10),
#: and what MMSeg's tools and inference APIs read.
_RUNNER_KEYS = frozenset(inspect.signature(Runner.__init__).parameters) | {
    'activation_checkpointing', 'compile', 'custom_imports',
    'efficient_conv_bn_eval', 'find_unused_parameters', 'model_wrapper_cfg',
    'runner_type', 'strategy', 'sync_bn', 'test_pipeline', 'tta_model',
    'tta_pipeline'
}


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` (``key=value``; ``a,b`` and ``[a,b]`` are
    lists, ``(a,b)`` a tuple), but a value that is neither keeps its
    spaces (those around it aside).

    mmengine 0.10.7 removes every space of every value, so that
    ``key="[1, 2]"`` is a list; a path such as ``data_root="/data/SIIM
    2019"`` then named another folder (one that may exist). A list
    element with a space inside is refused, as is an item without ``=``
    (mmengine: a ValueError traceback).
    """

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest, None) or {})
        for item in values or ():
            key, sep, value = item.partition('=')
            if not sep or not key:
                parser.error(f'{option_string} expects key=value pairs, '
                             f'got {item!r}')
            bare = value.strip('\'"').strip()
            if not bare.startswith(('[', '(')) and ',' not in bare:
                options[key] = self._parse_int_float_bool(bare)
                continue
            # Spaces between an element's characters: mmengine would join
            # them, and an element cannot keep them.
            if re.search(r'[^\s,()\[\]]\s+[^\s,()\[\]]', bare):
                parser.error(
                    f'{option_string} {item!r}: an element of a list or '
                    f'tuple with a space inside (mmengine removes spaces '
                    f'from lists); set it in a config file instead')
            options[key] = self._parse_iterable(value)
        setattr(namespace, self.dest, options)


def add_cfg_options_arg(parser: argparse.ArgumentParser) -> None:
    """Add MMSeg's ``--cfg-options`` (config overrides as key=value),
    parsed by :class:`CfgOptionsAction`.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
    """
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        help='override settings in the config, key=value pairs '
        '(e.g. train_dataloader.batch_size=2 or key="[a,b]"; a,b is a '
        'list too; quote a value with spaces: key="/data/my data")')


class UsageError(ValueError):
    """A command line, or a config it names, that the tool cannot run.

    :func:`reports_usage_errors` reports it as one line, not as a
    traceback: the message says what to change.
    """


class MissingFileError(UsageError, FileNotFoundError):
    """A file that a command line names (a config, a checkpoint) is not
    there."""


def require_file(path: str, what: str, urls: bool = False) -> None:
    """Refuse a file that a command line names but that is not there.

    Args:
        path (str): The path.
        what (str): What it is, for the message (``'Config'``).
        urls (bool): Accept a URL (mmengine downloads checkpoints).
            Defaults to False.

    Raises:
        MissingFileError: ``'<what> file not found: <path>'``.
    """
    if not (urls and '://' in path) and not osp.isfile(path):
        raise MissingFileError(f'{what} file not found: {path}')


def require_folder(path: str, what: str) -> None:
    """Refuse an output folder the tool could not write in, before the
    work whose results it would hold (the models loaded, the images
    predicted): an existing file, a folder below a file, or one in which
    this process cannot make a file (a read-only mount, another user's
    folder), tried with a nameless temporary file in the folder or, where
    it is not there yet, in its nearest existing parent.

    Args:
        path (str): The folder; one not there yet passes if it can be
            made.
        what (str): Its option or name, for the message (``'--out'``).

    Raises:
        UsageError: Naming the path and the problem.
    """
    if osp.exists(path) and not osp.isdir(path):
        raise UsageError(f'{what} {path} is a file; give a folder')
    _require_writable(path, what, path)


def require_writable_file(path: str, flag: str) -> None:
    """Refuse an output file that could not be written in its folder (see
    :func:`require_folder`), before the work whose result it would hold.

    Args:
        path (str): The file.
        flag (str): Its option, for the message (``'--out'``).

    Raises:
        UsageError: Naming the path and the problem.
    """
    _require_writable(osp.dirname(osp.abspath(path)), flag, path)


def _require_writable(folder: str, what: str, path: str) -> None:
    folder = osp.abspath(folder)
    while not osp.isdir(folder):
        if osp.islink(folder) and not osp.exists(folder):
            raise UsageError(f'{what} {path}: {folder} is a link to '
                             f'nothing ({os.readlink(folder)})')
        if osp.lexists(folder):
            raise UsageError(f'{what} {path}: {folder} is a file, not a '
                             'folder')
        folder = osp.dirname(folder)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UsageError(f'{what} {path}: cannot write in {folder} '
                         f'({err.strerror or err})') from None


def require_replaceable_json(path: str, flag: str,
                             keys: Sequence[str]) -> None:
    """Refuse an output path where writing would destroy a file this tool
    did not write: a folder, or a file that is not a JSON object with
    ``keys`` (an earlier run's output, which is replaced).

    Args:
        path (str): The output file.
        flag (str): Its option, for the message (``'--out'``).
        keys (Sequence[str]): Keys every output of the tool has.

    Raises:
        UsageError: Naming the path and what is there.
    """
    if osp.isdir(path) or path.endswith(('/', os.sep)):
        raise UsageError(f'{flag} {path} is a folder; give a file name')
    if not osp.lexists(path):
        return
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError):
        data = None
    if not (isinstance(data, dict) and all(k in data for k in keys)):
        raise UsageError(f'{flag} {path} exists and is not an output of '
                         'this tool; choose another name or remove it')


def check_device(device: Optional[str], flag: str = '--device') -> None:
    """Refuse a device name torch does not know (``gpu``), or a CUDA
    device where none is available, before anything loads.

    Args:
        device (str, optional): The name; None (the default device) passes.
        flag (str): Its option, for the message. Defaults to '--device'.

    Raises:
        UsageError: Naming the device and the problem.
    """
    if device is None:
        return
    import torch
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise UsageError(f'{flag} {device}: {err}') from None
    if kind == 'cuda' and not torch.cuda.is_available():
        raise UsageError(f'{flag} {device}: no CUDA device is available '
                         f'(torch {torch.__version__})')


def reports_usage_errors(main: Callable[..., Optional[int]]
                         ) -> Callable[..., Optional[int]]:
    """Wrap a tool's ``main``: a :class:`UsageError` (or a
    :class:`~mmseg_ptx.models.utils.CheckpointError`: the command line
    named a file that is no checkpoint of the model) is printed as
    ``error: <message>`` on stderr and the exit status is 2, as argparse
    reports a bad argument, by the first process of each node of a
    launch (see :func:`launch_local_rank`), and under torchrun into its
    error file, whose message its failure summary shows. Standard output is
    line-buffered, as standard error is: in a log that holds both
    (``tool > log 2>&1``, a Slurm job's), the tool's lines keep their
    order.

    Args:
        main (callable): The tool's ``main``; returns its exit status.

    Returns:
        callable: ``main``, with those errors reported.
    """

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> Optional[int]:
        # Redirected to a file, stdout is block-buffered: its lines came
        # after stderr's that followed them.
        if hasattr(sys.stdout, 'reconfigure'):
            sys.stdout.reconfigure(line_buffering=True)
        try:
            return main(*args, **kwargs)
        except (UsageError, CheckpointError) as err:
            # The processes a launcher starts on a node meet the same error
            # (its config, its files): said once per node. Not once per
            # job: a file missing on one node is that node's to say.
            if launch_local_rank() == 0:
                print(f'error: {err}', file=sys.stderr)
            # Under torchrun, into the error file it names
            # (TORCHELASTIC_ERROR_FILE), which its failure summary shows.
            from torch.distributed.elastic.multiprocessing.errors import \
                get_error_handler
            try:
                get_error_handler().record_exception(err)
            except OSError:
                pass  # a stale variable of a finished launch: said above
            return 2

    return wrapped


@contextlib.contextmanager
def logs_to_stderr() -> Iterator[None]:
    """Within the block, send mmengine's console log lines to stderr, for a
    tool whose stdout is its result (``tools/dataset_stats.py``'s Markdown
    tables): ``tool > stats.md`` then holds the result alone, and the log
    stays on screen.
    """
    from mmengine.logging import MMLogger

    # Exactly the console handler: a FileHandler is a StreamHandler too.
    handlers = [
        h for h in MMLogger.get_current_instance().handlers
        if type(h) is logging.StreamHandler
    ]
    previous = [h.stream for h in handlers]
    # Assigned, not setStream(): that flushes the stream it replaces, which
    # may be closed (a test's captured stdout, in a later test).
    for handler in handlers:
        handler.stream = sys.stderr
    try:
        yield
    finally:
        for handler, stream in zip(handlers, previous):
            handler.stream = stream


def launch_local_rank() -> int:
    """This process's rank on its node as its launcher set it:
    ``LOCAL_RANK`` (torchrun, ``tools/dist_*.sh``), else ``SLURM_LOCALID``
    (``srun``, ``tools/slurm_*.sh``), else 0.

    Returns:
        int: The rank on the node.
    """
    return int(os.environ.get('LOCAL_RANK',
                              os.environ.get('SLURM_LOCALID', 0)))


def launch_rank() -> int:
    """This process's rank as its launcher set it, before any process
    group exists: ``RANK`` (torchrun, ``tools/dist_*.sh``), else
    ``SLURM_PROCID`` (``tools/slurm_*.sh``), else 0.

    Returns:
        int: The rank.
    """
    return int(os.environ.get('RANK', os.environ.get('SLURM_PROCID', 0)))


def read_config(path: str) -> Config:
    """The config file at ``path``; a missing file (or a setuptools that
    cannot resolve ``mmseg::`` inheritance) is an error saying so.

    Args:
        path (str): The config file.

    Returns:
        Config: The config, its ``_base_`` files merged.

    Raises:
        MissingFileError: No file at ``path``.
    """
    require_file(path, 'Config')
    check_pkg_resources()
    return Config.fromfile(path)


def config_type_name(entry: Mapping, default: Optional[str] = None) -> str:
    """The class name a config entry's ``type`` names.

    Args:
        entry (Mapping): A config dict with a ``type``: a registered name,
            scoped (``'mmseg.ChannelsLastHook'``) or not, or the class
            itself (new-style configs).
        default (str, optional): The name where the entry has no ``type``
            (the one its builder takes then, e.g. ``'OptimWrapper'``).
            Defaults to None: a ``KeyError``.

    Returns:
        str: The name without its scope (``'ChannelsLastHook'``).
    """
    if default is not None and 'type' not in entry:
        return default
    type_ = entry['type']
    return getattr(type_, '__name__', str(type_)).rpartition('.')[2]


def config_entries(cfg: Optional[Mapping], key: str) -> List[Mapping]:
    """A config setting that takes one dict or a list of them
    (``val_evaluator``, ``param_scheduler``), as a list.

    Args:
        cfg (Mapping, optional): A config; None gives ``[]``.
        key (str): The setting.

    Returns:
        list[Mapping]: Its dicts; ``[]`` where it is not set.
    """
    entries = (cfg.get(key) if cfg is not None else None) or []
    return [entries] if isinstance(entries, Mapping) else list(entries)


def loader_dataset(cfg: Optional[Mapping], key: str) -> Mapping:
    """The dataset config of the data loader ``key``
    (``'train_dataloader'``, ...), inside the wrappers that hold one
    (``RepeatDataset``, ``ClassBalancedDataset``).

    Args:
        cfg (Mapping, optional): A config; None gives ``{}``.
        key (str): The data loader.

    Returns:
        Mapping: The dataset's config; ``{}`` where the loader is not set.
    """
    loader = (cfg.get(key) if cfg is not None else None) or {}
    dataset = loader.get('dataset') or {}
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def has_custom_hook(cfg: Config, name: str) -> bool:
    """Whether ``cfg.custom_hooks`` holds a hook of class ``name``.

    Args:
        cfg (Config): The config.
        name (str): The hook's class name, without a scope.

    Returns:
        bool: Whether one of the custom hooks is of that class.
    """
    return any(config_type_name(hook) == name
               for hook in cfg.get('custom_hooks') or [])


def _paths_where(node: Any, matches: Callable[[Any], bool],
                 prefix: str = '') -> List[str]:
    """The dotted paths under ``node`` of the outermost values that
    ``matches`` accepts."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    else:
        return []
    paths = []
    for key, child in items:
        path = f'{prefix}{key}'
        if matches(child):
            paths.append(path)
        else:
            paths += _paths_where(child, matches, f'{path}.')
    return paths


def _holds_items(node: Any, items: dict) -> bool:
    """Whether ``node`` is a dict holding every item of ``items`` (where
    a config spread a dict variable with ``**``)."""
    return bool(items) and isinstance(node, dict) and all(
        k in node and _same(node[k], v) for k, v in items.items())


def _same(a: Any, b: Any) -> bool:
    # Config lists and tuples compare by their items, as the file wrote
    # them (a variable [1, 2] used as (1, 2) after a tuple() is rare).
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        # mmengine tags a dict variable with its scope, not its copies.
        return _unscoped(a) == _unscoped(b)
    return type(a) is type(b) and a == b


def _set_by(options: Mapping, path: str, parts: bool) -> bool:
    """Whether ``options`` set the setting at ``path``: the setting
    itself, a dict holding it or, with ``parts``, keys inside it."""
    return any(o == path or path.startswith(f'{o}.') or (
        parts and o.startswith(f'{path}.')) for o in options)


def _unscoped(node: dict) -> dict:
    return {k: v for k, v in node.items() if k != '_scope_'}


def merge_cfg_options(cfg: Config, options: Optional[dict]) -> None:
    """Apply ``--cfg-options`` to ``cfg``, refusing overrides that would
    change nothing.

    mmengine fills in a config variable (``class_weight``, ``data_root``,
    ``crop_size``...) where the file uses it while it reads the file, so
    ``--cfg-options class_weight=...`` sets the variable and nothing that
    used it: the run would go on with the old value. Such an option is an
    error naming the settings that hold the variable's value; so is one
    that sets a dict variable (``norm_cfg``, ``split_settings``) or a key
    inside it (``norm_cfg.type=BN``). Top-level keys the Runner reads
    (``work_dir``, ``load_from``, ``model``, ...) are settings, not
    variables, and merge as always, and so do new top-level keys.

    Args:
        cfg (Config): The config, changed in place.
        options (dict, optional): The parsed ``--cfg-options``.

    Raises:
        UsageError: An option that would set only a config variable.
    """
    if not options:
        return
    plain = cfg.to_dict()  # ConfigDicts as dicts, as _same compares them
    for key, value in options.items():
        head = key.split('.', 1)[0]
        if head in _RUNNER_KEYS or head not in plain:
            continue
        old = plain[head]
        inside = '.' in key or isinstance(old, dict)
        # True, False and None hold too many unrelated settings to tell a
        # variable's uses from them.
        if (not inside and (isinstance(old, bool) or old is None)
                or _same(old, value)):
            continue
        users = [p for p in _paths_where(plain, lambda v: _same(v, old))
                 if p != head]
        suffix = key[len(head):]  # the part inside the variable
        spread = not users and isinstance(old, dict)
        if spread:
            # Spread with ** into other dicts: they hold its items.
            items = _unscoped(old)
            users = [p for p in _paths_where(
                plain, lambda v: _holds_items(v, items)) if p != head]
        if not users:
            continue  # a variable nothing holds (or code of its own reads)
        # Harmless where the same options set every such setting too.
        if all(_set_by(options, f'{u}{suffix}', parts=not spread)
               for u in users):
            continue
        if spread:
            where = 'the file spread its items into these'
            suffix = suffix or '.<item>'
        else:
            where = 'these hold its value'
        if not inside:
            where += ' (a number may be held by unrelated ones too)'
        raise UsageError(
            f'--cfg-options {key}=... would change the config variable '
            f'{head!r} only: its value' + ('' if inside else f' {old!r}') +
            ' was filled in where the config file uses it when the file '
            f'was read. Set the settings it was filled into instead; '
            f'{where}: ' + ' '.join(f'{path}{suffix}=...' for path in users))
    cfg.merge_from_dict(options)


def leave_process_group() -> None:
    """Wait for every process of the run, then close the process group
    (where one is initialised; else nothing).

    mmengine leaves the group to the interpreter's shutdown. A rank that
    reaches it while another still works (rank 0 writes the report after
    training) aborted there once in this project's CI, on gloo ("terminate
    called without an active exception"), and torchrun failed the run: the
    ranks now leave together, the group closed first.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """Add the arguments MMSeg's train and test tools share.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
    """
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    add_cfg_options_arg(parser)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """Read the config named by ``args.config`` and apply the shared args.

    The work dir is chosen like MMSeg's tools: ``--work-dir``, else the
    config's ``work_dir``, else ``./work_dirs/<config name>``.

    Args:
        args (argparse.Namespace): Parsed arguments with ``config``,
            ``launcher``, ``cfg_options``, ``work_dir`` and ``local_rank``
            (:func:`add_runner_args`).

    Returns:
        Config: The config with the arguments applied.
    """
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = read_config(args.config)
    cfg.launcher = args.launcher
    merge_cfg_options(cfg, args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def format_metrics_table(metrics: dict) -> str:
    """The test metrics as a Markdown table, in the order they came.

    Args:
        metrics (dict): Metric name -> value (floats get 4 decimals,
            integers thousands separators).

    Returns:
        str: The table.
    """
    lines = ['| metric | value |', '|---|---|']
    for key, value in metrics.items():
        if isinstance(value, float):
            text = f'{value:.4f}'
        elif isinstance(value, int):
            text = f'{value:,}'
        else:
            text = str(value)
        lines.append(f'| {key} | {text} |')
    return '\n'.join(lines)
