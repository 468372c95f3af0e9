"""Throughput benchmark of an MMSeg config: train step, data loader,
inference.

Modes:

* ``step``: the real train step (``model.train_step``: data preprocessor,
  forward in ``'loss'`` mode, backward, optimizer step through the config's
  optim wrapper) on a random batch that is already on the device.
* ``loader``: the same train step fed by the config's ``train_dataloader``
  (skipped with a message when the config has none or its data is missing).
* ``infer``: whole-image inference (``model.test_step``: preprocessor,
  ``'predict'`` forward, resize to the original shape) under ``no_grad``.
* ``eval``: inference plus the config's ``val_evaluator`` processing its
  outputs (with the random labels as ground truth), as each iteration of
  validation and ``tools/test.py`` does. Not part of ``all``; time it with
  ``--sync end`` to let the host run ahead as a validation loop does.

Switches (``--sweep`` compares each with the plain config in one run,
``--ablate`` what each adds to all the others): ``--backbone-type`` (e.g.
``SwinTransformerSDPA``), ``--amp bf16``, ``--bf16-weights``,
``--fuse-conv-bn``, ``--channels-last``, ``--fused-adamw``,
``--merge-param-groups``, ``--top1-accuracy``, ``--tf32``,
``--cudnn-benchmark``, ``--compile``. ``--flops`` counts the model's FLOPs
per image once and adds the TFLOP/s each row sustained.

``--batch-size`` takes one or more sizes; each variant's model is built once
and measured at every size. A size that runs out of GPU memory gives a row
with an ``error`` instead of ending the run, so a sweep up to a size that
does not fit still reports the largest one that does.

Example::

    python tools/benchmark.py configs/upernet_swin-b_ptx-512.py \\
        --batch-size 4 --img-size 512 512 --mode all --sweep \\
        --backbone-type SwinTransformerSDPA --amp bf16 --json bench.json

A variant is mmseg's stock setting plus its switches, whatever the config
turns on itself: the config's ``SwinTransformerSDPA`` backbone becomes
mmseg's ``SwinTransformer``, its AMP wrapper a plain ``OptimWrapper``, its
``fused`` optimizer unfused and its
``MergedParamGroupsOptimWrapperConstructor`` mmengine's default
constructor, unless the variant's switch asks for them.
So this project's configs, which set some of these, measure the same
"stock" row as mmseg's.

Pretrained weights are never downloaded: every ``pretrained`` and
``init_cfg=dict(type='Pretrained', ...)`` of the model config is dropped, so
the weights are random (which does not change the speed).
"""
from __future__ import annotations

import argparse
import copy
import gc
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple)

import torch
from tqdm import tqdm

import mmseg_ptx  # noqa: F401  (stack fixes + plugin registration)
from mmseg_ptx.apis import (add_cfg_options_arg, config_type_name,
                            merge_cfg_options)
from mmseg_ptx.compat import math_sdpa, mmseg_accuracy
from mmseg_ptx.engine.hooks import (SWIN_BLOCKS, allow_recompiles,
                                    compile_modules, to_channels_last)
from mmseg_ptx.models import SwinTransformerSDPA
from mmseg_ptx.models.utils import cast_for_inference, fuse_conv_bn
from mmseg_ptx.reporting.json_io import write_json
from mmseg_ptx.utils import HostSyncRecorder
from mmengine.config import Config, ConfigDict
from mmengine.evaluator import Evaluator
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmseg.models.backbones import SwinTransformer
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

MODES = ('step', 'loader', 'infer')
#: Modes that ``--mode all`` leaves out.
EXTRA_MODES = ('eval', )
SWITCHES = ('backbone_type', 'amp', 'bf16_weights', 'fuse_conv_bn',
            'channels_last', 'fused_adamw', 'merge_param_groups',
            'top1_accuracy', 'tf32', 'cudnn_benchmark', 'compile')
# The arguments SwinTransformerSDPA takes beyond mmseg's SwinTransformer's
# (its own are keyword-only; the rest it passes on).
SDPA_ONLY_OPTIONS = tuple(
    name
    for name, p in inspect.signature(SwinTransformerSDPA).parameters.items()
    if p.kind is p.KEYWORD_ONLY
    and name not in inspect.signature(SwinTransformer).parameters)
# Used when the config has no optim_wrapper: mmseg's Swin UPerNet setting.
DEFAULT_OPTIM_WRAPPER = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Measure train-step, data-loader and inference '
        'throughput of an MMSeg config.')
    parser.add_argument('config', help='MMSeg config file')
    parser.add_argument(
        '--batch-size',
        type=int,
        nargs='+',
        default=[4],
        help='images per step; several sizes are measured one after the '
        'other with the same model')
    parser.add_argument(
        '--amp',
        choices=['bf16'],
        default=None,
        help='bfloat16 autocast (AmpOptimWrapper on CUDA, torch.autocast on '
        'CPU)')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the network (see --compile-scope)')
    parser.add_argument(
        '--compile-scope',
        choices=['modules', 'blocks', 'step'],
        default='modules',
        help='modules: the forward of backbone, neck and heads '
        '(CompileModulesHook); blocks: each Swin block on its own, neck and '
        'heads whole (CompileModulesHook(blocks=[\'SwinBlock\'])); step: '
        'train_step / test_step, as mmengine\'s Runner does with '
        '`compile=True`')
    parser.add_argument(
        '--compile-mode',
        choices=['default', 'reduce-overhead', 'max-autotune',
                 'max-autotune-no-cudagraphs'],
        default=None,
        help='torch.compile mode; reduce-overhead replays CUDA graphs, '
        'against the launch overhead of small batches')
    parser.add_argument(
        '--bf16-weights',
        action='store_true',
        help='inference with the network held in bfloat16 '
        '(cast_for_inference) instead of autocast; the train step is '
        'unchanged')
    parser.add_argument(
        '--fuse-conv-bn',
        action='store_true',
        help='inference with the BatchNorms folded into their convolutions '
        '(fuse_conv_bn, FuseConvBNHook); the train step is unchanged')
    parser.add_argument(
        '--profile',
        type=int,
        default=0,
        metavar='N',
        help='after timing, profile N more iterations of each mode with '
        'torch.profiler and print the most expensive operators, also by '
        'input shapes and by the Python function that called them')
    parser.add_argument(
        '--flops',
        action='store_true',
        help='count the FLOPs per image of the plain model\'s train step '
        '(forward + backward) and inference once (torch.utils.flop_counter: '
        'matmuls, convolutions, attention; 2 per multiply-add) and give '
        'every row the TFLOP/s it sustained')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='model in torch.channels_last memory format')
    parser.add_argument(
        '--fused-adamw',
        action='store_true',
        help='set fused=True in the (Adam/AdamW) optimizer config')
    parser.add_argument(
        '--merge-param-groups',
        action='store_true',
        help='build the optimizer with '
        'MergedParamGroupsOptimWrapperConstructor: one parameter group per '
        'paramwise setting instead of one per parameter')
    parser.add_argument(
        '--top1-accuracy',
        action='store_true',
        help='the training acc_seg of mmseg_ptx.compat (a max and masked '
        'sums) instead of mmseg\'s (a topk sort and boolean indexing, two '
        'waits for the GPU per head and step). Every run that imports '
        'mmseg_ptx has it; variants without this switch, stock included, '
        'run mmseg\'s')
    parser.add_argument(
        '--tf32',
        action='store_true',
        help='allow TF32 matmuls (CUDA only; cuDNN convolutions use TF32 '
        'in every row, as PyTorch does by default)')
    parser.add_argument(
        '--cudnn-benchmark',
        action='store_true',
        help='torch.backends.cudnn.benchmark: autotune the convolutions for '
        'the (fixed) input size (CUDA only; env_cfg.cudnn_benchmark in a '
        'config)')
    parser.add_argument(
        '--backbone-type',
        default=None,
        help='replace model.backbone.type, e.g. SwinTransformerSDPA')
    parser.add_argument(
        '--sweep',
        action='store_true',
        help='run the plain config, each requested switch alone, and all '
        'requested switches together')
    parser.add_argument(
        '--ablate',
        action='store_true',
        help='run all requested switches together, then all but each one '
        '(what each switch adds on top of the others)')
    parser.add_argument(
        '--sync',
        choices=['iteration', 'end'],
        nargs='+',
        default=['iteration'],
        help='iteration: wait for the device after every timed iteration, '
        'as a loop that reads a value back every iteration does (mmengine\'s '
        'RuntimeInfoHook, an evaluation loop); end: only after the last, as '
        'a train loop that reads nothing back does (DeferredRuntimeInfoHook, '
        'a non-blocking data preprocessor, a train step without host '
        'syncs), so the host queues the next iterations while the device '
        'works. Both: each mode and batch size is timed both ways, one '
        'after the other')
    parser.add_argument(
        '--host-syncs',
        action='store_true',
        help='after timing, run one more iteration of each mode under '
        'HostSyncRecorder and report the operations that make the host wait '
        'for the device (on the CPU: those that would on a GPU)')
    parser.add_argument(
        '--iters', type=int, default=20, help='timed iterations per mode')
    parser.add_argument(
        '--warmup',
        type=int,
        default=5,
        help='untimed iterations before timing (compilation, cudnn '
        'autotuning, optimizer state)')
    parser.add_argument(
        '--img-size',
        type=int,
        nargs=2,
        default=[512, 512],
        metavar=('H', 'W'),
        help='random input size for the step and infer modes (the step '
        "mode pads its batches to it, not to the config's "
        'data_preprocessor size)')
    parser.add_argument(
        '--ori-size',
        type=int,
        nargs=2,
        default=None,
        metavar=('H', 'W'),
        help='original image size of the infer and eval modes: the logits '
        'are resized back to it and the eval mode\'s label maps have it, '
        'as in tools/test.py on the SIIM radiographs (1024 1024: four '
        'times the pixels of a 512 input). Default: --img-size, random '
        'data at the input size, as the reference throughput figures')
    parser.add_argument(
        '--mode',
        nargs='+',
        choices=list(MODES) + list(EXTRA_MODES) + ['all'],
        default=['all'],
        help='one or more modes; all: ' + ', '.join(MODES))
    parser.add_argument(
        '--device',
        choices=['cuda', 'cpu'],
        default=None,
        help='default: cuda when available')
    parser.add_argument('--seed', type=int, default=0)
    add_cfg_options_arg(parser)
    parser.add_argument('--json', default=None, help='write results here')
    args = parser.parse_args(argv)
    if args.sweep and args.ablate:
        parser.error('--sweep and --ablate exclude each other')
    if args.host_syncs and args.compile:
        # Under a dispatch mode dynamo runs no compiled code and marks the
        # code it skipped to be skipped for the rest of the process.
        parser.error('--host-syncs would leave the rest of the run '
                     'uncompiled (torch.compile skips code run under '
                     'HostSyncRecorder, also later): record them in a run '
                     'without --compile')
    if not os.path.isfile(args.config):
        parser.error(f'config {args.config} is not a file')
    if min(args.batch_size) < 1 or args.iters < 1 or args.warmup < 0:
        parser.error('--batch-size and --iters must be >= 1, --warmup >= 0')
    if args.ori_size is None:
        args.ori_size = list(args.img_size)
    if min(args.img_size + args.ori_size) < 1 or args.profile < 0:
        parser.error('--img-size and --ori-size must be >= 1, --profile >= 0')
    if not args.compile:
        for flag, default in (('compile_mode', None),
                              ('compile_scope', 'modules')):
            if getattr(args, flag) != default:
                parser.error(f'--{flag.replace("_", "-")} needs --compile')
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda but torch.cuda.is_available() is False')
    for flag in ('tf32', 'cudnn_benchmark'):
        if getattr(args, flag) and args.device != 'cuda':
            parser.error(f'--{flag.replace("_", "-")} only applies to '
                         '--device cuda')
    return args


# --------------------------------------------------------------------------
# variants
# --------------------------------------------------------------------------
def requested_switches(args: argparse.Namespace) -> Dict[str, Any]:
    """The switches set on the command line (off ones left out)."""
    values = dict(
        backbone_type=args.backbone_type,
        amp=args.amp,
        bf16_weights=args.bf16_weights,
        fuse_conv_bn=args.fuse_conv_bn,
        channels_last=args.channels_last,
        fused_adamw=args.fused_adamw,
        merge_param_groups=args.merge_param_groups,
        top1_accuracy=args.top1_accuracy,
        tf32=args.tf32,
        cudnn_benchmark=args.cudnn_benchmark,
        compile=args.compile and args.compile_scope)
    return {k: v for k, v in values.items() if v}


def variants(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Switch sets to run: just the requested one; with ``--sweep`` the
    plain config, each switch alone, then all of them; with ``--ablate``
    all of them, then all but each one."""
    switches = requested_switches(args)
    if args.ablate:
        return [switches] + [{k: v
                              for k, v in switches.items() if k != left_out}
                             for left_out in switches]
    if not args.sweep:
        return [switches]
    runs = [{}] + [{k: v} for k, v in switches.items()]
    if len(switches) > 1:
        runs.append(switches)
    return runs


def variant_name(switches: Dict[str, Any]) -> str:
    if not switches:
        return 'stock'
    parts = []
    for key in SWITCHES:
        if key not in switches:
            continue
        value = switches[key]
        if key == 'compile' and value != 'modules':
            parts.append(f'compile_{value}')
        else:
            parts.append(key if value in (True, 'modules') else str(value))
    return '+'.join(parts)


# --------------------------------------------------------------------------
# model, optimizer, data
# --------------------------------------------------------------------------
def drop_pretrained(cfg: Any) -> None:
    """Remove, in place, every ``pretrained`` path and ``Pretrained`` init
    config of a config tree, so that building and ``init_weights`` download
    nothing."""
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == 'pretrained' or (key == 'init_cfg'
                                       and _is_pretrained_init(value)):
                cfg[key] = None
            else:
                drop_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            drop_pretrained(value)


def _is_pretrained_init(init_cfg: Any) -> bool:
    items = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(
        isinstance(i, dict) and i.get('type') == 'Pretrained' for i in items)


def build_model(cfg: Config, switches: Dict[str, Any],
                device: str) -> torch.nn.Module:
    model_cfg = copy.deepcopy(cfg.model)
    drop_pretrained(model_cfg)
    sdpa_config = config_type_name(model_cfg.backbone) == 'SwinTransformerSDPA'
    if switches.get('backbone_type'):
        model_cfg.backbone.type = switches['backbone_type']
    elif sdpa_config:
        # The stock backbone unless the variant asks for this one.
        model_cfg.backbone.type = 'SwinTransformer'
    if sdpa_config and config_type_name(
            model_cfg.backbone) != 'SwinTransformerSDPA':
        # Another backbone than the config's: without the options only
        # SwinTransformerSDPA takes.
        for name in SDPA_ONLY_OPTIONS:
            model_cfg.backbone.pop(name, None)
    model = MODELS.build(model_cfg)
    model.init_weights()
    # SyncBN needs an initialised process group; one process is plain BN.
    model = revert_sync_batchnorm(model)
    model.to(device)
    if switches.get('channels_last'):
        to_channels_last(model)  # before the optimizer and its state
    return model


def build_optim(model: torch.nn.Module, cfg: Config, switches: Dict[str, Any],
                device: str) -> OptimWrapper:
    optim_cfg = copy.deepcopy(cfg.get('optim_wrapper') or
                              ConfigDict(DEFAULT_OPTIM_WRAPPER))
    wrapper_type = optim_cfg.get('type', 'OptimWrapper')
    if wrapper_type not in ('OptimWrapper', 'AmpOptimWrapper'):
        raise ValueError(f'optim_wrapper type {wrapper_type!r}: the '
                         'benchmark only knows OptimWrapper and '
                         'AmpOptimWrapper')
    # Variants define the precision, the fused update and the group
    # merging: start from mmseg's stock settings even if the config sets
    # them (another custom constructor, e.g. layer-wise decay, stays).
    for key in ('loss_scale', 'dtype', 'use_fsdp'):
        optim_cfg.pop(key, None)
    optim_cfg.type = 'OptimWrapper'
    optim_cfg.optimizer.pop('fused', None)
    if optim_cfg.get('constructor') == \
            'MergedParamGroupsOptimWrapperConstructor':
        optim_cfg.pop('constructor')
    if switches.get('amp') == 'bf16' and device == 'cuda':
        # As configs/*_bf16.py and tools/train.py --amp-dtype bfloat16 set
        # it: bf16 has float32's range, the loss needs no scaling.
        optim_cfg.type = 'AmpOptimWrapper'
        optim_cfg.dtype = 'bfloat16'
        optim_cfg.loss_scale = 1.0
    if switches.get('fused_adamw'):
        opt_type = optim_cfg.optimizer.get('type')
        if opt_type not in ('Adam', 'AdamW'):
            raise ValueError(f'--fused-adamw needs an Adam/AdamW optimizer in '
                             f'the config, got {opt_type!r}')
        optim_cfg.optimizer.fused = True
    if switches.get('merge_param_groups'):
        optim_cfg.constructor = 'MergedParamGroupsOptimWrapperConstructor'
    return build_optim_wrapper(model, optim_cfg)


def amp_context(switches: Dict[str, Any], device: str, infer: bool):
    """Autocast where the optim wrapper does not provide it: inference, and
    training on CPU (mmengine's AmpOptimWrapper is CUDA/NPU/MLU only).
    Inference with bf16 weights runs without: autocast would cast
    LayerNorm's input back to float32."""
    if switches.get('amp') != 'bf16' or (device == 'cuda' and not infer):
        return nullcontext()
    if infer and switches.get('bf16_weights'):
        return nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


def random_batch(cfg: Config, batch_size: int, img_size: Tuple[int, int],
                 device: str,
                 ori_size: Optional[Tuple[int, int]] = None
                 ) -> Dict[str, list]:
    """A batch as PackSegInputs + pseudo_collate make it, already on the
    device: uint8 images of ``img_size`` and int64 label maps of random
    classes, of ``ori_size`` (default ``img_size``), the original size
    that inference resizes the logits back to (a training batch's labels
    must have the input's size)."""
    h, w = img_size
    oh, ow = ori_size or img_size
    in_channels = cfg.model.backbone.get('in_channels', 3)
    num_classes = cfg.model.decode_head.get('num_classes', 2)
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch_size):
        img = torch.randint(
            0, 256, (in_channels, h, w), dtype=torch.uint8, generator=gen)
        seg = torch.randint(
            0, num_classes, (1, oh, ow), dtype=torch.int64, generator=gen)
        sample = SegDataSample(
            metainfo=dict(img_shape=(h, w), ori_shape=(oh, ow),
                          pad_shape=(h, w), flip=False))
        sample.gt_sem_seg = PixelData(data=seg.to(device))
        inputs.append(img.to(device))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def loader_batches(cfg: Config, batch_size: int,
                   seed: int) -> Tuple[Optional[Iterator], str]:
    """An endless iterator over the config's train data loader, or None and
    the reason it cannot be built."""
    loader_cfg = cfg.get('train_dataloader')
    if not loader_cfg:
        return None, 'the config has no train_dataloader'
    loader_cfg = copy.deepcopy(loader_cfg)
    loader_cfg.batch_size = batch_size
    data_root = loader_cfg.get('dataset', {}).get('data_root')
    if isinstance(data_root, str) and not os.path.exists(data_root):
        return None, f'data_root {data_root!r} does not exist'
    try:
        loader = Runner.build_dataloader(loader_cfg, seed=seed)
    except FileNotFoundError as err:
        return None, f'data not found ({err})'

    def endless():
        while True:
            yield from loader

    return endless(), ''


def prefetched_batches(cfg: Config) -> int:
    """How many batches the train loader's workers hold ready: the loader
    mode warms up for at least that many iterations, so that its timed
    window starts at the rate they keep up, not with a full queue."""
    loader_cfg = cfg.get('train_dataloader') or {}
    workers = loader_cfg.get('num_workers', 0)
    return workers * (loader_cfg.get('prefetch_factor') or 2)


@contextmanager
def padded_to(model: torch.nn.Module, size: Sequence[int]) -> Iterator:
    """The model's data preprocessor padding training batches to ``size``
    instead of the config's ``size`` / ``size_divisor``: random batches of
    ``--img-size`` are trained at that size. The loader mode keeps the
    config's padding, which its pipeline's crops (of differing sizes after
    a random resize) need."""
    preprocessor = model.data_preprocessor
    saved = preprocessor.size, preprocessor.size_divisor
    preprocessor.size, preprocessor.size_divisor = tuple(size), None
    try:
        yield
    finally:
        preprocessor.size, preprocessor.size_divisor = saved


def count_flops(cfg: Config,
                img_size: Tuple[int, int],
                device: str,
                backbone_type: Optional[str] = None) -> Dict[str, Any]:
    """FLOPs per image of the config's own model, as
    :class:`torch.utils.flop_counter.FlopCounterMode` counts them: the train
    step's forward (loss mode) + backward, and inference (``test_step``),
    with the inference FLOPs split by the model's top-level modules.

    Counted in float32 at batch 2 (BatchNorm in training needs more than
    one value per channel), with SDPA on its math path: the counter has no
    formula for the CPU flash kernel, and the math path is made of the
    matmuls it does count. The optimizer's elementwise update is not
    counted. The figures do not depend on the speed switches;
    ``backbone_type`` (``--backbone-type``) only lets a config whose
    backbone options need that type build. A backbone with
    ``attn_impl='flex'`` is counted with SDPA: the same scores, and
    FlexAttention's backward has no CPU kernel.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if cfg.model.backbone.get('attn_impl') == 'flex':
        cfg = copy.deepcopy(cfg)
        del cfg.model.backbone.attn_impl  # the default: SDPA
        cfg.model.backbone.pop('flex_kernel_options', None)
    batch_size = 2
    model = build_model(cfg, dict(backbone_type=backbone_type), device)
    batch = random_batch(cfg, batch_size, img_size, device)
    model.train()
    with padded_to(model, img_size), math_sdpa(), FlopCounterMode(
            display=False) as counter:
        data = model.data_preprocessor(batch, True)
        loss, _ = model.parse_losses(model._run_forward(data, mode='loss'))
        loss.backward()
    step = counter.get_total_flops() / batch_size
    model.eval()
    with torch.no_grad(), math_sdpa(), FlopCounterMode(
            display=False) as counter:
        model.test_step(batch)
    infer = counter.get_total_flops() / batch_size
    # mmseg's heads run their forward without calling the head module
    # itself, so the counter only sees their submodules: sum the outermost
    # modules it saw under each top-level module. (torch < 2.2's counter
    # sees no modules: no split.)
    counts = {
        name: sum(ops.values())
        for name, ops in counter.get_flop_counts().items() if '.' in name
    }
    by_module: Dict[str, float] = {}
    for name, count in counts.items():
        if any(name.startswith(f'{other}.') for other in counts):
            continue
        top = name.split('.')[1]
        by_module[top] = by_module.get(top, 0.0) + count / batch_size / 1e9
    del model, batch
    return dict(
        step_gflop_per_img=step / 1e9,
        infer_gflop_per_img=infer / 1e9,
        infer_gflop_per_img_by_module=by_module)


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------
def synchronize(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def reset_peak_memory(device: str) -> bool:
    """Start a new peak; whether that worked (False: the CPU figure stays
    the process-lifetime peak)."""
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        return True
    try:  # Linux: "5" resets the peak resident set size (VmHWM).
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        return False
    return True


def peak_memory(device: str, since_reset: bool = True) -> Tuple[float, str]:
    """Peak memory in MiB and what was measured; ``since_reset``: whether
    :func:`reset_peak_memory` worked."""
    if device == 'cuda':
        return torch.cuda.max_memory_allocated() / 2**20, 'cuda_max_allocated'
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024, (
                        'cpu_peak_rss'
                        if since_reset else 'cpu_lifetime_peak_rss')
    except OSError:
        pass
    # ru_maxrss is in KiB on Linux, bytes on macOS; lifetime peak.
    scale = 2**20 if sys.platform == 'darwin' else 2**10
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale,
            'cpu_lifetime_peak_rss')


def time_iterations(step: Callable[[], int],
                    warmup: int,
                    iters: int,
                    device: str,
                    desc: str,
                    sync_each_iteration: bool = True) -> Dict[str, Any]:
    """Run ``step`` (returns the number of images it processed) ``warmup``
    times untimed, then ``iters`` times timed.

    By default each iteration is synchronised, as in a training loop that
    reads the losses back every iteration (mmengine's ``RuntimeInfoHook``)
    or an evaluation loop (which reads the predictions back); this also
    gives per-iteration times, whose minimum is the robust figure on a
    machine shared with other work. With ``sync_each_iteration=False`` the
    device is synchronised after the last iteration only, as in a loop
    that reads nothing back, and every iteration gets the mean time. The
    warm-up is timed as a whole (``warmup_s``): with ``--compile`` it holds
    the compilation. Its peak memory is reported on its own
    (``warmup_peak_mem_mib``): with ``cudnn.benchmark`` the first pass over
    new convolution shapes tries cuDNN's algorithms with workspaces of tens
    of GiB (on an H200, 136 GiB for a batch-4 Swin-B UPerNet step whose
    timed iterations, measured with the same settings, peaked at 9 GiB),
    which says nothing of what a batch needs.
    """
    reset_peak_memory(device)
    start = time.perf_counter()
    for _ in tqdm(range(warmup), desc=f'{desc} warmup', leave=False):
        step()
    synchronize(device)
    warmup_s = time.perf_counter() - start
    warmup_mem, _ = peak_memory(device)
    since_reset = reset_peak_memory(device)
    images, times = 0, []
    if sync_each_iteration:
        for _ in tqdm(range(iters), desc=desc, leave=False):
            start = time.perf_counter()
            images += step()
            synchronize(device)
            times.append(time.perf_counter() - start)
    else:
        start = time.perf_counter()
        for _ in tqdm(range(iters), desc=desc, leave=False):
            images += step()
        synchronize(device)
        times = [(time.perf_counter() - start) / iters] * iters
    mem, mem_kind = peak_memory(device, since_reset)
    return dict(
        img_per_s=images / sum(times),
        s_per_iter=sum(times) / iters,
        s_per_iter_median=statistics.median(times),
        s_per_iter_min=min(times),
        warmup_s=warmup_s,
        images=images,
        peak_mem_mib=mem,
        warmup_peak_mem_mib=warmup_mem,
        mem_kind=mem_kind)


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and 'out of memory' in str(err))


def profile_table(step: Callable[[], int], iters: int, device: str,
                  rows: int = 25) -> str:
    """Kernel-level profile of ``iters`` iterations of ``step``: the
    operators that took the most device (or CPU) time, then the same by
    operator and input shapes (which ``copy_`` or ``cat`` costs what), then
    by the Python function that called them (:func:`source_table`)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    # verbose: the operators' events get their Python stacks.
    with torch.profiler.profile(
            activities=activities,
            record_shapes=True,
            with_stack=True,
            experimental_config=torch._C._profiler._ExperimentalConfig(
                verbose=True)) as prof:
        for _ in range(iters):
            step()
        synchronize(device)
    sort_by = ('self_device_time_total'
               if device == 'cuda' else 'self_cpu_time_total')
    # Kernel names wide enough to tell, e.g., the NHWC variant of a kernel
    # from the NCHW one.
    by_op = prof.key_averages().table(
        sort_by=sort_by, row_limit=rows, max_name_column_width=100)
    by_shape = prof.key_averages(group_by_input_shape=True).table(
        sort_by=sort_by, row_limit=rows, max_name_column_width=40,
        max_shapes_column_width=60)
    by_source = source_table(prof.events(), sort_by, rows)
    return (f'{by_op}\nBy input shapes:\n{by_shape}\n'
            f'By calling function:\n{by_source}')


def _is_library_frame(frame: str) -> bool:
    """A stack frame of torch itself (or a built-in), not of its caller."""
    return (frame.startswith(('<', 'torch/', 'nn.Module: '))
            or '/torch/' in frame or '.py(' not in frame)


def source_table(events: Any, sort_by: str, rows: int) -> str:
    """The operators' self time summed by (the first Python function
    outside torch on their stack, operator): which function's copies, casts
    or gathers cost what. The profiler names a function by its file and
    first line (``swin.py(359): _inner_forward``) and, on the CPU with
    torch 2.13 at least, gives a backward operator its forward operator's
    stack. Operators without a Python stack share one row."""
    # Paths relative to where their package was imported from (this
    # repository's: relative to the working directory).
    roots = sorted({os.path.abspath(p) + os.sep
                    for p in [os.getcwd(), *sys.path] if p},
                   key=len, reverse=True)

    def short(frame: str) -> str:
        return next((frame[len(r):] for r in roots if frame.startswith(r)),
                    frame)

    totals: Dict[Tuple[str, str], List[float]] = {}
    for evt in events:
        spent = getattr(evt, sort_by)
        if not evt.name.startswith('aten::') or spent <= 0:
            continue
        caller = next((f for f in evt.stack if not _is_library_frame(f)),
                      '(no Python stack)')
        row = totals.setdefault((short(caller), evt.name), [0.0, 0])
        row[0] += spent
        row[1] += 1
    total = sum(t for t, _ in totals.values()) or 1.0
    top = sorted(totals.items(), key=lambda kv: -kv[1][0])[:rows]
    lines = [f"{'self ms':>9} {'share':>6} {'calls':>6}  "
             f"{'operator':<32} calling function"]
    for (caller, name), (spent, calls) in top:
        lines.append(f'{spent / 1e3:9.3f} {spent / total:6.1%} {calls:6d}  '
                     f'{name:<32} {caller}')
    return '\n'.join(lines)


def record_host_syncs(step: Callable[[], int], device: str,
                      desc: str) -> int:
    """Run ``step`` once under :class:`HostSyncRecorder`, print what made
    (on the CPU: would make) the host wait for the device, and return how
    many operations did."""
    with HostSyncRecorder(cpu_as_device=device == 'cpu') as syncs:
        step()
    synchronize(device)
    print(f'== host syncs: {desc}: {syncs.total}')
    if syncs.total:
        print(syncs.report())
    return syncs.total


def run_variant(cfg: Config,
                args: argparse.Namespace,
                switches: Dict[str, Any],
                modes: List[str],
                on_row: Callable[[dict], None],
                flops: Optional[Dict[str, Any]] = None) -> List[str]:
    """Measure one switch set at every requested batch size, handing each
    row to ``on_row`` as soon as it is measured (with ``flops`` from
    :func:`count_flops`, also in TFLOP/s). Returns why modes were skipped.
    """
    device = args.device
    name = variant_name(switches)
    skipped: List[str] = []
    backend: Dict[str, bool] = {}
    if device == 'cuda':
        # Stock is what an mmseg run gets: PyTorch's defaults (cuDNN
        # convolutions may use TF32, matmuls may not) and the config's
        # env_cfg.cudnn_benchmark, which mmengine's Runner applies (mmseg's
        # Swin configs and this project's set it).
        torch.backends.cuda.matmul.allow_tf32 = bool(switches.get('tf32'))
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = bool(
            switches.get('cudnn_benchmark')
            or cfg.get('env_cfg', {}).get('cudnn_benchmark', False))
        backend = dict(
            matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
            cudnn_tf32=torch.backends.cudnn.allow_tf32,
            cudnn_benchmark=torch.backends.cudnn.benchmark)
    scope = switches.get('compile')
    if scope:
        # As a new process would: an earlier variant's graphs would count
        # towards dynamo's recompile limit of the same code (past it,
        # dynamo runs the code eagerly). Static shapes: each batch size
        # gets its own graph, as a run at that size would, instead of the
        # shape-generic one dynamo makes when the batch size changes.
        torch._dynamo.reset()
        options = dict(mode=args.compile_mode, dynamic=False)

    def compiled(model: torch.nn.Module) -> Tuple[Callable, Callable]:
        """The model's train_step and test_step, compiled as asked."""
        # A graph per batch size and row kind: train step, loader (its
        # crops may differ from --img-size) and inference, with room for
        # one more.
        graphs = 4 * len(args.batch_size)
        if scope == 'step':
            allow_recompiles(graphs)
            return (torch.compile(model.train_step, **options),
                    torch.compile(model.test_step, **options))
        if scope:
            names = compile_modules(
                model,
                blocks=SWIN_BLOCKS if scope == 'blocks' else (),
                **options)
            # ... of each compiled module's code (the blocks share one):
            # past dynamo's limit the rest of the rows would run
            # uncompiled.
            allow_recompiles(graphs * len(names))
        return model.train_step, model.test_step

    fold, cast = switches.get('fuse_conv_bn'), switches.get('bf16_weights')

    def for_inference(model: torch.nn.Module) -> torch.nn.Module:
        # Folded in float32, then cast, as FuseConvBNHook and
        # InferenceDtypeHook do it.
        if fold:
            fuse_conv_bn(model)
        if cast:
            cast_for_inference(model)
        return model

    trains = 'step' in modes or 'loader' in modes
    infers = 'infer' in modes or 'eval' in modes
    # Folding and casting change the weights in place: with training rows,
    # inference gets a model of its own, built after them (a copy made
    # before would add to their peak memory).
    own_infer_model = trains and infers and bool(fold or cast)
    torch.manual_seed(args.seed)
    model = build_model(cfg, switches, device)
    if infers and not own_infer_model:
        for_inference(model)
    train_step, test_step = compiled(model)
    optim_wrapper = build_optim(model, cfg, switches,
                                device) if trains else None
    # What the data preprocessor pads the loader's batches to.
    pad_size = cfg.model.get('data_preprocessor', {}).get('size')
    loader_size = tuple(pad_size) if pad_size else None

    def measure(mode: str, batch_size: int, step: Callable[[], int],
                warmup: Optional[int] = None) -> None:
        desc = f'{name} {mode} b{batch_size}'
        warmup = args.warmup if warmup is None else warmup
        rows = []
        for sync in args.sync:
            row = dict(variant=name, mode=mode, switches=switches,
                       batch_size=batch_size, sync=sync)
            if backend:
                row['backend'] = backend
            rows.append(row)
            try:
                row.update(time_iterations(step, warmup, args.iters,
                                           device, desc,
                                           sync == 'iteration'))
                row['warmup_iters'] = warmup
                # The FLOPs are counted at --img-size; the loader's batches
                # have the config's size, which may differ.
                if flops and (mode != 'loader' or loader_size == tuple(
                        args.img_size)):
                    per_img = flops['step_gflop_per_img' if mode in (
                        'step', 'loader') else 'infer_gflop_per_img']
                    row['tflop_per_s'] = row['img_per_s'] * per_img / 1e3
            except Exception as err:  # noqa: BLE001
                if not is_out_of_memory(err):
                    raise
                row['error'] = 'out of memory'
            if 'error' in row:
                # Outside the except block, whose traceback still holds
                # the failed step's tensors: free them before the next
                # size.
                if optim_wrapper is not None:
                    optim_wrapper.zero_grad()
                gc.collect()
                torch.cuda.empty_cache()
                break
        if 'error' not in rows[-1]:
            if args.host_syncs:
                count = record_host_syncs(step, device, desc)
                for row in rows:
                    row['host_syncs'] = count
            if args.profile:
                print(f'== profile: {desc}')
                print(profile_table(step, args.profile, device))
        for row in rows:
            on_row(row)

    # Every training row first, then inference once the optimizer state
    # (and, with bf16 weights, the float32 model) is freed: inference's
    # peak memory is its own.
    for batch_size in args.batch_size if trains else []:
        if 'step' in modes:
            batch = random_batch(cfg, batch_size, tuple(args.img_size),
                                 device)
            model.train()

            def step() -> int:
                with amp_context(switches, device, infer=False):
                    train_step(batch, optim_wrapper)
                return batch_size

            with padded_to(model, args.img_size):
                measure('step', batch_size, step)
            # Freed before the loader rows: their peak memory is their own.
            batch = None
        if 'loader' in modes:
            batches, reason = loader_batches(cfg, batch_size, args.seed)
            if batches is None:
                # The reason (no loader, no data) is the same at every size.
                message = f'{name} loader: skipped, {reason}'
                if message not in skipped:
                    skipped.append(message)
            else:
                model.train()

                def loader_step() -> int:
                    data = next(batches)
                    with amp_context(switches, device, infer=False):
                        train_step(data, optim_wrapper)
                    return len(data['inputs'])

                # The batches the workers queued while the model built
                # and warmed up would come at no cost in the timed window.
                measure('loader', batch_size, loader_step,
                        max(args.warmup, prefetched_batches(cfg)))
                batches = None
    optim_wrapper = train_step = None
    infer_model = model
    if own_infer_model:
        model = infer_model = test_step = None
    gc.collect()
    if device == 'cuda':
        torch.cuda.empty_cache()
    if own_infer_model:
        torch.manual_seed(args.seed)
        infer_model = for_inference(build_model(cfg, switches, device))
        _, test_step = compiled(infer_model)
    evaluates = 'eval' in modes and bool(cfg.get('val_evaluator'))
    if 'eval' in modes and not evaluates:
        skipped.append(f'{name} eval: skipped, the config has no '
                       'val_evaluator')
    for batch_size in args.batch_size if infers else []:
        batch = random_batch(cfg, batch_size, tuple(args.img_size), device,
                             tuple(args.ori_size))
        infer_model.eval()

        def infer() -> list:
            with torch.no_grad(), amp_context(switches, device, infer=True):
                return test_step(batch)

        if 'infer' in modes:
            measure('infer', batch_size, lambda: len(infer()))
        if evaluates:
            # A new evaluator per size; its results are never evaluated.
            evaluator = Evaluator(copy.deepcopy(cfg.val_evaluator))
            # The classes of the model's outputs (mmseg's IoUMetric counts
            # them); the dataset is never built.
            num_classes = cfg.model.decode_head.get('num_classes', 2)
            evaluator.dataset_meta = dict(
                classes=tuple(f'class_{i}' for i in range(num_classes)))

            def evaluate() -> int:
                outputs = infer()
                evaluator.process(outputs, batch)
                return len(outputs)

            measure('eval', batch_size, evaluate)
            evaluator = None
        batch = None
    # Released for the next variant (set to None rather than deleted: the
    # closures above refer to them).
    model = infer_model = train_step = test_step = optim_wrapper = None
    gc.collect()
    if device == 'cuda':
        torch.cuda.empty_cache()
    return skipped


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def environment(args: argparse.Namespace) -> Dict[str, Any]:
    if args.device == 'cuda':
        device_name = torch.cuda.get_device_name()
    else:
        device_name = (f'{platform.processor() or platform.machine()}, '
                       f'{torch.get_num_threads()} threads')
    import mmengine
    import mmseg
    return dict(
        config=args.config,
        device=args.device,
        device_name=device_name,
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=(torch.backends.cudnn.version()
               if torch.backends.cudnn.is_available() else None),
        mmseg=mmseg.__version__,
        mmengine=mmengine.__version__,
        python=platform.python_version(),
        commit=_git_commit(),
        mode=args.mode,
        batch_size=args.batch_size,
        img_size=list(args.img_size),
        ori_size=list(args.ori_size),
        iters=args.iters,
        warmup=args.warmup,
        sync=args.sync,
        seed=args.seed,
        compile_mode=args.compile_mode,
        cfg_options=args.cfg_options)


def _git_commit() -> Optional[str]:
    """This checkout's commit (with ``+dirty`` for local changes), or None
    outside a git checkout."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True,
            text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(
            ['git', 'status', '--porcelain', '--untracked-files=no'],
            cwd=root, capture_output=True, text=True, timeout=10,
            check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ('+dirty' if dirty else '')


def format_table(results: List[dict]) -> str:
    header = ('variant', 'mode', 'batch', 'img/s', 's/iter', 'min s/iter',
              'peak MiB', 'warm-up s', 'warm-up peak MiB', 'TFLOP/s')
    rows = []
    with_sync = any(
        r.get('sync', 'iteration') != 'iteration' for r in results)
    if with_sync:
        header = header[:3] + ('sync', ) + header[3:]
    for r in results:
        if 'error' in r:
            figures = (r['error'], '', '', '', '', '', '')
        else:
            tflops = r.get('tflop_per_s')
            figures = (f"{r['img_per_s']:.2f}", f"{r['s_per_iter']:.4f}",
                       f"{r['s_per_iter_min']:.4f}",
                       f"{r['peak_mem_mib']:.0f}", f"{r['warmup_s']:.1f}",
                       f"{r['warmup_peak_mem_mib']:.0f}",
                       '' if tflops is None else f'{tflops:.3g}')
        rows.append((r['variant'], r['mode'], str(r['batch_size'])) +
                    ((r.get('sync', 'iteration'), ) if with_sync else ()) +
                    figures)
    if any('host_syncs' in r for r in results):
        header += ('host syncs', )
        rows = [row + (str(r.get('host_syncs', '')), )
                for row, r in zip(rows, results)]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]

    def line(cells):
        return ' | '.join(c.ljust(w) for c, w in zip(cells, widths))

    sep = '-+-'.join('-' * w for w in widths)
    return '\n'.join([line(header), sep] + [line(r) for r in rows])


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    # mmengine logs every parameter's initialisation at INFO level.
    MMLogger.get_instance('benchmark', log_level='WARNING')
    preprocessor = cfg.model.get('data_preprocessor')
    size = tuple(args.img_size)
    if preprocessor is not None and preprocessor.get(
            'size') is None and preprocessor.get('size_divisor') is None:
        # SegDataPreProcessor needs one of them to batch training images.
        preprocessor.size = size
        print('model.data_preprocessor has neither size nor size_divisor: '
              f'using size={size}')
    elif preprocessor is not None and (preprocessor.get('size') is None or
                                       tuple(preprocessor.size) != size):
        # (A size from --cfg-options is a list: compared as a tuple.)
        print(f'The step mode (and the FLOP count) pads its training '
              f'batches to --img-size {size}, not to the config\'s '
              f"data_preprocessor size={preprocessor.get('size')}, "
              f"size_divisor={preprocessor.get('size_divisor')}; the "
              "loader mode pads the pipeline's images as the config does")
    modes = [m for m in MODES + EXTRA_MODES
             if m in args.mode or ('all' in args.mode and m in MODES)]

    env = environment(args)
    print('Settings: ' + ', '.join(f'{k}={v}' for k, v in env.items()))
    report = dict(settings=env, results=[], skipped=[])
    flops = None
    if args.flops:
        flops = count_flops(cfg, tuple(args.img_size), args.device,
                            args.backbone_type)
        report['flops'] = flops
        parts = ', '.join(
            f'{k} {v:.4g}'
            for k, v in flops['infer_gflop_per_img_by_module'].items())
        print(f"GFLOP per image: train step (forward + backward) "
              f"{flops['step_gflop_per_img']:.4g}, inference "
              f"{flops['infer_gflop_per_img']:.4g}" +
              (f' ({parts})' if parts else ''))

    def add_row(row: dict) -> None:
        report['results'].append(row)
        if args.json:  # after every row: a killed run keeps what it measured
            write_json(report, args.json)

    if args.json:
        # Before the first row too: a run killed in its first (compiling)
        # variant still leaves its settings and FLOP count.
        write_json(report, args.json)

    for switches in variants(args):
        # The accuracy fix comes with `import mmseg_ptx`: undone for the
        # variants (stock included) that do not ask for it.
        with (nullcontext() if switches.get('top1_accuracy') else
              mmseg_accuracy()):
            report['skipped'] += run_variant(cfg, args, switches, modes,
                                             add_row, flops)
        if args.json:
            write_json(report, args.json)
    for line in report['skipped']:
        print(line)
    print(format_table(report['results']))
    mem_kinds = sorted(
        {r['mem_kind']
         for r in report['results'] if 'mem_kind' in r})
    if mem_kinds:
        print(f'peak memory: {", ".join(mem_kinds)}')
    if args.json:
        print(f'JSON written to {args.json}')
    else:
        print(json.dumps(report))
    return report


if __name__ == '__main__':
    main()
