"""Train a segmentor with mmseg_ptx's components (MMSeg's interface)."""
import argparse
import logging
import os
import os.path as osp
import sys
from numbers import Real
from typing import Optional

from mmengine.dataset import InfiniteSampler
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.optim.scheduler.param_scheduler import INF
from mmengine.runner import Runner
from torch.distributed.elastic.multiprocessing.errors import record

import mmseg_ptx  # noqa: F401  (stack fixes + registration)
from mmseg.registry import RUNNERS
from mmseg_ptx.apis import (UsageError, add_runner_args, config_entries,
                            config_type_name, has_custom_hook, launch_rank,
                            leave_process_group, load_config,
                            mask_threshold_mismatch, reports_usage_errors,
                            require_folder)
from mmseg_ptx.utils import has_device_backend


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='resume from the config\'s load_from if it sets one, else '
        'from the latest checkpoint in the work_dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic mixed precision training')
    parser.add_argument(
        '--amp-dtype',
        choices=['float16', 'bfloat16'],
        default=None,
        help='autocast dtype with --amp (default float16, or the config\'s '
        'own AMP dtype; bfloat16 needs no loss scaling)')
    add_runner_args(parser)
    args = parser.parse_args()
    if args.amp_dtype is not None and not args.amp:
        parser.error('--amp-dtype needs --amp')
    return args


def _set_amp_dtype(optim_wrapper, dtype: str) -> None:
    optim_wrapper.type = 'AmpOptimWrapper'
    optim_wrapper.dtype = dtype
    # bf16 has fp32's range: scaling the loss would only cost time.
    optim_wrapper.loss_scale = 'dynamic' if dtype == 'float16' else 1.0


def earlier_run_warning(work_dir: str) -> Optional[str]:
    """What to say where ``work_dir`` holds an earlier run's checkpoints:
    mmengine writes over those of the same names, and the report over the
    earlier one, without asking."""
    if not osp.isdir(work_dir):
        return None
    earlier = sorted(f for f in os.listdir(work_dir) if f.endswith('.pth'))
    if not earlier:
        return None
    more = ', ...' if len(earlier) > 3 else ''
    return (f'{work_dir} holds {len(earlier)} checkpoint(s) of an earlier '
            f'run ({", ".join(earlier[:3])}{more}): this run writes over '
            'those of the same names, and its report over '
            'PERFORMANCE_SUMMARY.md. Pass --resume to continue that run, or '
            'another --work-dir to keep it.')


def nothing_to_resume_warning(work_dir: str) -> Optional[str]:
    """What to say where ``--resume`` finds no checkpoint to resume in
    ``work_dir`` (a mistyped one, say): mmengine then trains from the
    start, which a requeued job's first run also wants, so it is not
    refused.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        str, optional: The warning; None where there is a checkpoint.
    """
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        return None
    return (f'--resume: {work_dir} has no last_checkpoint, so there is '
            'nothing to resume: training starts from the first epoch')


def require_train_batches(runner: Runner) -> None:
    """Refuse a training loader that gives no batch: mmengine would stop on
    an assertion naming neither data nor batch size (with a parameter
    scheduler), train nothing (epoch-based loop without one) or restart
    the empty loader forever (iteration-based loop).

    Args:
        runner (Runner): The runner; its training loop is built here, as
            ``Runner.train`` would build it.

    Raises:
        UsageError: The split, the batch size and how to fix it.
    """
    loop = runner.train_loop
    loader = getattr(loop, 'dataloader', None)
    # An InfiniteSampler (mmseg's iteration-based configs) yields batches
    # forever, whatever the loader's length says.
    if isinstance(getattr(loader, 'sampler', None), InfiniteSampler):
        return
    try:
        batches = len(loader)
    except TypeError:  # no loop, or a loader of unknown length
        return
    if batches:
        return
    per_process = len(loader.sampler)
    raise UsageError(
        f'the training loader gives no batch: {len(loader.dataset)} '
        f'training image(s), {per_process} per process with '
        f'{runner.world_size} process(es), batch_size {loader.batch_size}'
        f'{" and drop_last=True" if loader.drop_last else ""}; set a '
        'smaller train_dataloader.batch_size or use more training images')


def no_report_warning(cfg) -> Optional[str]:
    """What to say where PerformanceReportHook will find nothing to report
    on when training ends: it reads the plain keys (``dice``, ``ap``, ...)
    of a PneumothoraxMetric without a prefix.

    Args:
        cfg (Config): The training config.

    Returns:
        str, optional: The warning; None where the report can be written.
    """
    if not has_custom_hook(cfg, 'PerformanceReportHook'):
        return None
    if any(config_type_name(e, '') == 'PneumothoraxMetric'
           and not e.get('prefix')
           for e in config_entries(cfg, 'val_evaluator')):
        return None
    return ('PerformanceReportHook will write no report when training '
            'ends: it reads the plain keys (dice, ap, ...) of a '
            'PneumothoraxMetric without a prefix, which val_evaluator does '
            'not have')


def check_amp_device(cfg) -> None:
    """Refuse AMP where mmengine's AmpOptimWrapper cannot run (no CUDA, NPU,
    MLU or MUSA device): it asserts so only after the model is built.

    Args:
        cfg (Config): The training config, ``--amp`` applied.

    Raises:
        UsageError: Naming the wrapper and what to do.
    """
    # No optim_wrapper: mmengine's Runner says what a training config needs.
    wrapper = cfg.get('optim_wrapper')
    if wrapper is None or config_type_name(
            wrapper, 'OptimWrapper') != 'AmpOptimWrapper':
        return
    if not has_device_backend():
        raise UsageError(
            'AMP training (optim_wrapper.type AmpOptimWrapper, from --amp '
            'or the config) needs a GPU, and none is available; train '
            'without --amp, or with a config whose optim_wrapper is an '
            'OptimWrapper')


def cpu_training_warning() -> Optional[str]:
    """A warning where training will run on the CPU: mmengine says so only
    as ``CUDA available: False`` in its environment dump."""
    # mmengine's device: CUDA, NPU, MLU, MUSA or Apple's MPS.
    if get_device() != 'cpu':
        return None
    return ('No GPU is available (torch.cuda.is_available() is False): '
            'training runs on the CPU: fine for the tiny demo config, far '
            'too slow for Swin-B. On a GPU machine install a CUDA build of '
            'torch (docs/installation.md).')


def schedule_end_warning(cfg) -> Optional[str]:
    """A warning where the parameter schedule does not end with training:
    a run shortened with ``train_cfg.max_epochs=N`` alone stops part way
    down the cosine (its learning rate never decays), and one lengthened
    so trains its last epochs at the final rate.

    The latest end of the schedulers counted in the train loop's unit
    (epochs for ``max_epochs``, iterations for ``max_iters``) is compared;
    where one of them has no ``end``, mmengine ends it with training and
    nothing is said.

    Args:
        cfg (Config): The training config.

    Returns:
        str | None: The warning, naming the scheduler and the fix.
    """
    train_cfg = cfg.get('train_cfg') or {}
    by_epoch = 'max_epochs' in train_cfg
    length = train_cfg.get('max_epochs' if by_epoch else 'max_iters')
    if not isinstance(length, int):
        return None
    ends = [(scheduler.get('end', INF), index) for index, scheduler in
            enumerate(config_entries(cfg, 'param_scheduler'))
            if scheduler.get('by_epoch', True) == by_epoch]
    # mmengine ends a scheduler without an end (INF, its default) with
    # training; a number it runs to (floats included).
    if not ends or any(isinstance(end, bool) or not isinstance(end, Real)
                       or end >= INF for end, _ in ends):
        return None
    end, index = max(ends)
    if end == length:
        return None
    end = int(end) if float(end).is_integer() else end
    unit = 'epoch' if by_epoch else 'iteration'
    loop_key = 'max_epochs' if by_epoch else 'max_iters'
    effect = ('stops part way through it' if end > length else
              f'keeps the final learning rate for the last {length - end} '
              f'{unit}s')
    return (f'param_scheduler.{index} ends at {unit} {end} but training '
            f'ends at {unit} {length} (train_cfg.{loop_key}): the run '
            f'{effect}. To change the run\'s length, set '
            f'param_scheduler.{index}.end={length} with it.')


def check_param_schedulers(cfg) -> None:
    """Refuse a parameter scheduler that ends where it begins or before:
    mmengine stops on it after building the model, in iterations for a
    scheduler converted from epochs (a run shortened with
    ``train_cfg.max_epochs=N param_scheduler.1.end=N`` to N no longer than
    the warm-up, say).

    Args:
        cfg (Config): The training config.

    Raises:
        UsageError: Naming the scheduler, its begin and end, and the fix.
    """
    for index, scheduler in enumerate(config_entries(cfg,
                                                     'param_scheduler')):
        begin, end = scheduler.get('begin', 0), scheduler.get('end')
        if end is None or end > begin:
            continue
        unit = 'epoch' if scheduler.get('by_epoch', True) else 'iteration'
        raise UsageError(
            f'param_scheduler.{index} ({scheduler.get("type")}) ends at '
            f'{unit} {end}, not after its begin at {begin}; a run no longer '
            'than the warm-up needs a shorter warm-up too: lower the end of '
            'the scheduler before it and this one\'s begin (--cfg-options '
            f'param_scheduler.{index}.begin=...)')


@reports_usage_errors
def main() -> None:
    args = parse_args()
    cfg = load_config(args)

    if args.amp:
        wrapper = cfg.optim_wrapper
        kind = config_type_name(wrapper, 'OptimWrapper')
        if kind == 'AmpOptimWrapper':
            current = wrapper.get('dtype') or 'float16'
            if args.amp_dtype in (None, current):
                print_log(f'AMP training ({current}) is already enabled in '
                          'your config.', logger='current',
                          level=logging.WARNING)
            else:
                print_log(f'--amp-dtype {args.amp_dtype} replaces the '
                          f"config's AMP dtype {current}.", logger='current',
                          level=logging.WARNING)
                _set_amp_dtype(wrapper, args.amp_dtype)
        elif kind != 'OptimWrapper':
            raise UsageError('--amp needs optim_wrapper.type OptimWrapper, '
                             f'got {kind}')
        else:
            _set_amp_dtype(wrapper, args.amp_dtype or 'float16')
    check_amp_device(cfg)
    check_param_schedulers(cfg)
    require_folder(cfg.work_dir, 'the work dir (--work-dir)')
    cfg.resume = args.resume
    # Once, not from every DDP process.
    rank = launch_rank()
    if args.resume:
        # mmengine resumes from load_from where the config names one.
        warning = (None if cfg.get('load_from') else
                   nothing_to_resume_warning(cfg.work_dir))
    else:
        warning = earlier_run_warning(cfg.work_dir)
    for message in (warning, no_report_warning(cfg),
                    mask_threshold_mismatch(cfg, 'val_evaluator'),
                    schedule_end_warning(cfg), cpu_training_warning()):
        if message and rank == 0:
            print_log(message, logger='current', level=logging.WARNING)

    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    require_train_batches(runner)
    runner.train()
    leave_process_group()


if __name__ == '__main__':
    # Under torchrun, the exception goes into the error file torchrun names
    # (TORCHELASTIC_ERROR_FILE): its failure summary then shows it, not
    # 'error_file: <N/A>' beside a peer's 'Connection closed by peer'.
    sys.exit(record(main)())
