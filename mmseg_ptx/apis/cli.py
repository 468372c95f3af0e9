"""Argument handling shared by ``tools/train.py``, ``tools/test.py`` and
``tools/tune_postprocess.py``.

The tools keep MMSeg's command-line interface; this module holds the part
both need so the scripts stay thin.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction

from ..compat import check_pkg_resources


def add_cfg_options_arg(parser: argparse.ArgumentParser) -> None:
    """Add MMSeg's ``--cfg-options`` (config overrides as key=value)."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings in the config, key=value pairs '
        '(e.g. train_dataloader.batch_size=2 or key="[a,b]")')


def read_config(path: str) -> Config:
    """The config file at ``path``; a missing file (or a setuptools that
    cannot resolve ``mmseg::`` inheritance) is an error saying so."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'Config file not found: {path}')
    check_pkg_resources()
    return Config.fromfile(path)


def add_runner_args(parser: argparse.ArgumentParser) -> None:
    """Add the arguments MMSeg's train and test tools share."""
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
    """
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = read_config(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def format_metrics_table(metrics: dict) -> str:
    """The test metrics as a Markdown table, in the order they came."""
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
