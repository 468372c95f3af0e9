"""Work-arounds for OpenMMLab on today's stack, all in one place.

Each fix names the upstream problem it covers and is applied only when that
problem is present (always applied: fix 4, a speed-up of mmseg's code,
and fix 9, whose problem no version or probe shows), so it can be deleted
once upstream releases a fix.
``mmseg_ptx/__init__.py`` imports this module before anything from mmseg.

Fixes:

1. ``mmcv.ops`` without compiled ops (mmcv-lite). mmseg 1.2.2 imports
   ``point_sample`` and ``sigmoid_focal_loss`` from ``mmcv.ops`` at import time
   (mmseg/utils/mask_classification.py, models/losses/focal_loss.py, ...) and
   ``mmcv/ops/__init__.py`` loads ``mmcv._ext``, which mmcv-lite lacks; mmseg's
   guarded imports catch ``ModuleNotFoundError`` only (reported e.g. as
   open-mmlab/mmdetection3d#3093, "No module named 'mmcv._ext'"). We
   install a stand-in ``mmcv.ops`` package that loads mmcv's
   own pure-PyTorch submodules, provides ``sigmoid_focal_loss`` in PyTorch,
   and raises ``ModuleNotFoundError`` for every other compiled op, so
   mmseg's guards work. Inactive when ``mmcv._ext`` exists (full mmcv).
2. ``torch.load(weights_only=True)`` is the default since torch 2.6, and
   mmengine 0.10.7 cannot load its own checkpoints (``HistoryBuffer`` and
   numpy objects in ``message_hub``): "Weights only load failed". Reported as
   open-mmlab/mmengine#1655; fixed only on mmengine's unreleased main. We keep
   ``weights_only=True``: the plain-data types mmengine writes are
   allow-listed (numpy's helpers under their numpy 1.x and 2.x names, so
   checkpoints load across the two), and ``getattr`` (HistoryBuffer pickles
   its statistics methods by name) only inside mmengine's local-file
   checkpoint loader, so downloaded pretrained weights are loaded as
   strictly as before.
3. CPU-only distributed runs: mmengine's pytorch launcher calls
   ``torch.cuda.set_device`` and the runner wraps DDP with ``device_ids``;
   both fail without CUDA (mmengine 0.10.7, dist/utils.py and
   runner.wrap_model), and DDP refuses SyncBatchNorm on the CPU. Without
   CUDA we initialise the process group with gloo, wrap DDP with
   ``device_ids=None`` and make SyncBatchNorm layers per-process
   BatchNorm (with a warning). Inactive when CUDA is available.
4. ``acc_seg`` of every training step (mmseg 1.2.2,
   ``BaseDecodeHead.loss_by_feat`` calling ``models/losses/accuracy.py``)
   takes the top-1 class with ``topk`` over the class dimension, a sort
   kernel that was 5 % of an H200's train step for UPerNet + Swin-B, and
   drops ignored pixels with boolean indexing, which makes the host wait
   for the GPU twice per head and step. For the top-1, unthresholded case
   mmseg uses there, :func:`top1_accuracy` computes the same value with a
   ``max`` over the classes and masked sums, without waiting for the GPU.
   Other ``topk``/``thresh`` arguments go to mmseg's function. Applied
   whatever the version (no mmseg release has a faster ``accuracy``).

5. Older torch. setup.cfg admits torch >= 2.1 so that GPU users keep
   their build, but ``torch.nn.attention.sdpa_kernel`` and
   ``torch.compiler.is_compiling`` are newer (torch 2.1 has neither, so
   ``import mmseg_ptx`` failed there). :data:`sdpa_kernel` and
   :data:`SDPBackend` are None where torch lacks them (SDPA then picks its
   kernel itself), :data:`is_compiling` falls back to
   ``torch._dynamo.is_compiling``, :func:`math_sdpa` uses the older
   ``torch.backends.cuda.sdp_kernel``, and :func:`autocast_dtype` the
   per-device autocast queries that ``torch.get_autocast_dtype``
   (torch 2.4) replaced. :data:`flex_attention` is None before torch 2.6:
   FlexAttention came in 2.5, but only 2.6 takes a ``score_mod`` tensor
   that needs a gradient, as Swin's learned bias does (2.5 fails in the
   first training forward; ``attn_impl='flex'`` says so at once).
6. ``SegDataPreProcessor(non_blocking=True)``. mmengine's
   ``BaseDataPreprocessor`` takes ``non_blocking`` (copy the batch to the
   GPU without the host waiting for the copy), but mmseg 1.2.2's
   ``SegDataPreProcessor.__init__`` neither accepts nor forwards it, so a
   config cannot set it and every image and label map of every batch is a
   blocking copy: the host waits until the GPU has finished all the work
   queued before it. We accept the argument and set what mmengine's
   ``cast_data`` reads. Inactive when mmseg's signature has it.
7. ``runner.val()`` without training, with ``save_best``. mmengine
   0.10.7's ``CheckpointHook`` sets its ``file_backend`` in
   ``before_train`` but uses it in ``after_val_epoch`` to save a best
   checkpoint, so a validation alone (``runner.val()``) on a config with
   ``save_best`` (every config here, and many of mmseg's) ended in
   "'CheckpointHook' object has no attribute 'file_backend'" after its
   metrics were computed. Outside training there is no checkpoint to
   keep: we skip that step when ``before_train`` has not run. Inactive
   when a new ``CheckpointHook`` has ``file_backend``.
8. VOI LUTs with 8 bits per entry. pydicom 3.0's ``apply_voi``
   (``pixels/processing.py``) builds the table's index array in the LUT's
   own dtype, ``uint8`` for 8-bit entries, so a stored value above 255
   wraps modulo 256 before the lookup: a 12-bit image with such a LUT
   (allowed by PS3.3 C.11.2.1.1) came out as a flat grey image, without
   an error. :func:`voi_lut_dataset` hands pydicom a copy whose LUT
   declares 16 bits per entry: the same entries, indexed as ``uint16``.
   Inactive where pydicom's lookup does not wrap.
9. Checkpoints written in place. mmengine 0.10.7's ``LocalBackend.put``
   (``fileio/backends/local_backend.py``), through which
   ``Runner.save_checkpoint`` writes, opens the file with ``'wb'`` and
   writes into it. A job killed while saving (pre-emption, a time limit)
   leaves a truncated checkpoint that ``last_checkpoint`` names, and
   ``--resume`` then fails on "PytorchStreamReader failed reading zip
   archive" on every requeue; after a new best, ``CheckpointHook`` even
   rewrites a complete ``epoch_N.pth`` in place, so the kill destroys a
   good checkpoint (``put_text``, which writes ``last_checkpoint``, the
   same). We write a temporary file beside it and rename it
   over the file (atomic on one file system): the file is then either
   the old one or the whole new one. A killed write leaves the temporary
   file, which a later process removes when it first writes into that
   folder (a resumed run, at its first checkpoint). Delete when mmengine
   writes atomically.
10. ``CheckpointHook.last_ckpt`` after a resume. mmengine 0.10.7's
    ``CheckpointHook.before_train`` restores the best checkpoint's path
    from the resumed message hub but not ``last_ckpt``, which
    ``after_val_epoch`` needs to save the step of a new best again
    (``_save_checkpoint_with_step``): after a resume a new best gets no
    checkpoint of its step, and a later resume starts before that best,
    from a message hub that names a best checkpoint since deleted. We set
    it from the message hub in a resumed run (``runner.iter > 0``).
    Inactive when mmengine's ``before_train`` reads ``last_ckpt``.
11. Integer metrics in the test record. mmengine 0.10.7's
    ``LoggerHook.after_test_epoch`` writes the test metrics to
    ``<timestamp>.json`` through ``LoggerHook._process_tags``, which keeps
    Python and numpy-array values and drops everything else as ``null``.
    The message hub gives scalars back as numpy scalars, and
    ``np.float64`` is a Python float but ``np.int64`` is no int: every
    count (``num_images``, ``num_pixels``, ...) of ``tools/test.py``'s
    record was ``null`` while the console printed it. We convert numpy
    scalars with ``.item()``. Inactive when mmengine keeps them.
12. A linear warm-up of one step. mmengine 0.10.7's
    ``LinearParamScheduler`` (``LinearLR``, ``LinearMomentum``) multiplies
    by ``start_factor`` at its first step and reaches ``end_factor`` at
    its last, ``end - begin - 1`` steps later: a warm-up spanning one step
    (``end=1`` epoch converted to iterations where an epoch has one
    batch, or an epoch-based ``begin=0, end=1``) never gets past
    ``start_factor``, and the chained scheduler after it works from that
    value, so the whole run trained at ``start_factor`` times the learning
    rate. Its one step is its last: we give it ``end_factor``, as
    mmengine's does to the last step of a longer warm-up. Inactive when
    mmengine's gets there.

One work-around lives outside this module, because it needs what only a
hook sees (the checkpoint being saved and loaded): mmengine 0.10.7's
``Runner.resume`` resumes the global seed but not the training sampler's,
built before it; ``ResumeConsistencyHook`` records the sampler's seed in
each checkpoint and gives it back on ``--resume``.

``mmseg::`` config inheritance needs ``pkg_resources`` (removed in
setuptools 82); that is handled by the ``setuptools<82`` requirement,
:func:`check_pkg_resources` turns the failure into an actionable message,
and the deprecation warning setuptools 81 prints on every mmengine import
is silenced (it is what the requirement already answers).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import os
import sys
import types
import warnings
from typing import TYPE_CHECKING, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    import pydicom

__all__ = [
    'apply_all', 'compiled_mmcv_ops_available', 'sigmoid_focal_loss',
    'check_pkg_resources', 'top1_accuracy', 'mmseg_accuracy', 'SDPBackend',
    'sdpa_kernel',
    'is_compiling', 'math_sdpa', 'autocast_dtype', 'flex_attention',
    'flex_attention_learns_bias', 'voi_lut_dataset'
]


# --------------------------------------------------------------------------
# 1. mmcv.ops stand-in for mmcv-lite
# --------------------------------------------------------------------------
def compiled_mmcv_ops_available() -> bool:
    """Whether mmcv's compiled extension ``mmcv._ext`` is installed."""
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except ModuleNotFoundError:  # mmcv itself is missing
        return False


def sigmoid_focal_loss(input: torch.Tensor,
                       target: torch.Tensor,
                       gamma: float = 2.0,
                       alpha: float = 0.25,
                       weight: Optional[torch.Tensor] = None,
                       reduction: str = 'mean') -> torch.Tensor:
    """PyTorch version of ``mmcv.ops.sigmoid_focal_loss``.

    Same contract as mmcv's CUDA kernel: ``input`` is (N, C) logits,
    ``target`` (N,) class indices where ``C`` means "no class"; ``weight``
    (C,) is looked up by target class; ``'mean'`` divides the sum by N.

    Args:
        input (Tensor): Logits of shape (N, C).
        target (Tensor): Class indices of shape (N,), values in [0, C].
        gamma (float): Focusing parameter. Defaults to 2.0.
        alpha (float): Weight of the positive term. Defaults to 0.25.
        weight (Tensor, optional): Per-class weight of shape (C,).
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
    """
    num_classes = input.size(1)
    one_hot = F.one_hot(target.long(), num_classes + 1)[:, :num_classes]
    one_hot = one_hot.to(input.dtype)
    prob = input.sigmoid()
    # log(p) and log(1-p) through logsigmoid for numerical stability.
    pos = -alpha * (1 - prob).pow(gamma) * F.logsigmoid(input)
    neg = -(1 - alpha) * prob.pow(gamma) * F.logsigmoid(-input)
    loss = one_hot * pos + (1 - one_hot) * neg
    if weight is not None:
        weight = weight.to(input)
        # mmcv indexes the weight by the target class of each sample.
        padded = torch.cat([weight, weight.new_ones(1)])
        loss = loss * padded[target.long()].unsqueeze(1)
    if reduction == 'mean':
        return loss.sum() / input.size(0)
    if reduction == 'sum':
        return loss.sum()
    if reduction == 'none':
        return loss
    raise ValueError(f'Unknown reduction {reduction!r}')


class _MissingCompiledOpsModule(types.ModuleType):
    """``mmcv.ops`` for mmcv-lite: real pure-PyTorch submodules, stand-ins
    for the two functions mmseg imports at import time, and a
    ``ModuleNotFoundError`` (what mmseg's guarded imports catch) for every
    op that needs ``mmcv._ext``."""

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        raise ModuleNotFoundError(
            f'mmcv.ops.{name} needs mmcv\'s compiled ops (mmcv._ext), which '
            'mmcv-lite does not ship. Install full mmcv (see '
            'docs/installation.md) to use it.',
            name='mmcv._ext')


def _install_mmcv_ops_stand_in() -> None:
    if compiled_mmcv_ops_available() or 'mmcv.ops' in sys.modules:
        return
    mmcv_spec = importlib.util.find_spec('mmcv')
    if mmcv_spec is None or not mmcv_spec.submodule_search_locations:
        return
    ops_dir = os.path.join(list(mmcv_spec.submodule_search_locations)[0],
                           'ops')
    module = _MissingCompiledOpsModule('mmcv.ops')
    # A package path lets `import mmcv.ops.point_sample` load mmcv's own
    # pure-PyTorch file without running the __init__ that needs mmcv._ext.
    module.__path__ = [ops_dir]
    module.__file__ = os.path.join(ops_dir, '__init__.py')
    module.__package__ = 'mmcv.ops'
    sys.modules['mmcv.ops'] = module
    import mmcv
    mmcv.ops = module
    from mmcv.ops.point_sample import point_sample
    module.point_sample = point_sample
    module.sigmoid_focal_loss = sigmoid_focal_loss


# --------------------------------------------------------------------------
# 2. mmengine checkpoints under torch.load(weights_only=True)
# --------------------------------------------------------------------------
def _torch_2_6_or_later(version: str) -> bool:
    """Whether torch ``version`` is 2.6 or later, its pre-releases (NGC's
    ``2.6.0a0+...``, release candidates, nightlies) included: compared
    with '2.6.0' they would sort below it."""
    return torch.torch_version.TorchVersion(version) >= '2.6.0.dev0'


def _mmengine_checkpoint_globals() -> list:
    """The plain-data types mmengine 0.10.x pickles into its checkpoints."""
    import numpy as np
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = {type(np.dtype(t)) for t in np.sctypeDict.values()}
    # A checkpoint names numpy's pickling helpers as the numpy that wrote
    # it does: numpy.core.multiarray (1.x) or numpy._core.multiarray (2.x).
    # Both names are allowed, so checkpoints move between the two (a GPU
    # node with numpy 2, a workstation with 1.26); torch 2.5, which loads
    # without weights_only by default, takes no (global, name) pairs.
    helpers: list = [_reconstruct, scalar]
    if _torch_2_6_or_later(torch.__version__):
        helpers = [(f, f'numpy.{core}.multiarray.{f.__name__}')
                   for f in helpers for core in ('core', '_core')]
    # `bytes`: protocol 2 pickles an empty numpy buffer as bytes().
    return [HistoryBuffer, ConfigDict, *helpers, np.ndarray, np.dtype, bytes,
            *dtype_classes]


def _allow_mmengine_checkpoints() -> None:
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    # torch 2.4 has add_safe_globals but not the safe_globals context below;
    # before 2.6 torch.load does not default to weights_only anyway.
    if add_safe_globals is None or not hasattr(torch.serialization,
                                               'safe_globals'):
        return
    # Plain data (numpy arrays and scalars, HistoryBuffer, ConfigDict):
    # allowed everywhere, it cannot run code.
    add_safe_globals(_mmengine_checkpoint_globals())

    from mmengine.runner.checkpoint import CheckpointLoader
    local_loader = CheckpointLoader._schemes.get('')
    if getattr(local_loader, '_mmseg_ptx', False):
        return

    def load_from_local(filename, map_location):
        # HistoryBuffer pickles its statistics methods by name, which needs
        # `getattr`; that is allowed only while mmengine reads a local file
        # (resume, load_from, tools/test.py), never for downloaded weights.
        with torch.serialization.safe_globals([getattr]):
            return local_loader(filename, map_location)

    load_from_local._mmseg_ptx = True
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local, force=True)


# --------------------------------------------------------------------------
# 3. CPU-only distributed runs
# --------------------------------------------------------------------------
def _patch_cpu_distributed() -> None:
    # Not where mmengine's launcher has a device backend (it sets the
    # device and picks nccl/hccl/cncl/mccl). Apple's MPS has none there
    # (mmengine would call torch.cuda.set_device): gloo, as on a CPU.
    from mmseg_ptx.utils.device import has_device_backend
    if has_device_backend():
        return
    import mmengine.dist.utils as dist_utils
    from mmengine.model import MMDistributedDataParallel

    if getattr(dist_utils._init_dist_pytorch, '_mmseg_ptx_cpu', False):
        return

    def _init_dist_pytorch_cpu(backend: str = 'gloo',
                               init_backend: str = 'torch',
                               **kwargs) -> None:
        # nccl and torch.cuda.set_device need a GPU; gloo runs on CPU.
        torch.distributed.init_process_group(backend='gloo', **kwargs)

    _init_dist_pytorch_cpu._mmseg_ptx_cpu = True
    dist_utils._init_dist_pytorch = _init_dist_pytorch_cpu

    ddp_init = MMDistributedDataParallel.__init__

    def ddp_init_cpu(self, module, detect_anomalous_params=False, **kwargs):
        # DDP of a CPU module must not be given device_ids, and it refuses
        # SyncBatchNorm ("SyncBatchNorm layers only work with GPU modules"),
        # which the recipe's heads have (mmseg's upernet_swin base).
        kwargs['device_ids'] = None
        kwargs.pop('output_device', None)
        synced = sum(isinstance(m, torch.nn.SyncBatchNorm)
                     for m in module.modules())
        if synced:
            from mmengine.logging import print_log
            from mmengine.model import revert_sync_batchnorm
            module = revert_sync_batchnorm(module)
            print_log(
                f'CPU-only distributed run: the {synced} SyncBatchNorm '
                'layers, which need CUDA, are per-process BatchNorm',
                logger='current', level=30)  # logging.WARNING
        ddp_init(self, module, detect_anomalous_params, **kwargs)

    MMDistributedDataParallel.__init__ = ddp_init_cpu


# --------------------------------------------------------------------------
# 4. acc_seg without a sort and without host syncs
# --------------------------------------------------------------------------
def top1_accuracy(pred: torch.Tensor,
                  target: torch.Tensor,
                  topk: Union[int, Tuple[int, ...]] = 1,
                  thresh: Optional[float] = None,
                  ignore_index: Optional[int] = None
                  ) -> Union[torch.Tensor, List[torch.Tensor]]:
    """mmseg's ``accuracy`` (percent of correct pixels), top-1 by ``max``.

    Same arguments and result as ``mmseg.models.losses.accuracy``, including
    its ``eps`` terms and result shape ``(1,)``; for ``topk`` other than 1
    or with ``thresh``, mmseg's function is called. Where two classes tie
    for the top score, ``max`` and ``topk`` may pick different ones.

    Args:
        pred (torch.Tensor): Scores, (N, C, ...).
        target (torch.Tensor): Labels, (N, ...).
        topk (int | tuple[int]): As mmseg's. Defaults to 1.
        thresh (float, optional): As mmseg's. Defaults to None.
        ignore_index (int, optional): Label left out of the count.
            Defaults to None.

    Returns:
        torch.Tensor | list[torch.Tensor]: The accuracy in percent, shape
        (1,); a list of it where ``topk`` is a tuple.
    """
    from mmseg.models.losses.accuracy import accuracy
    if topk not in (1, (1, )) or thresh is not None or pred.size(0) == 0:
        return accuracy(pred, target, topk, thresh, ignore_index)
    assert pred.ndim == target.ndim + 1 and pred.size(0) == target.size(0)
    eps = torch.finfo(torch.float32).eps
    # max().indices: on CPU, argmax over a non-last dim is 20x slower.
    correct = pred.max(dim=1).indices == target
    if ignore_index is None:
        total = target.numel() + eps
    else:
        valid = target != ignore_index
        correct &= valid
        total = valid.sum() + eps
    acc = (correct.sum().float().reshape(1) + eps) * (100.0 / total)
    return acc if isinstance(topk, int) else [acc]


def _patch_decode_head_accuracy() -> None:
    import mmseg.models.decode_heads.decode_head as decode_head
    decode_head.accuracy = top1_accuracy


@contextlib.contextmanager
def mmseg_accuracy() -> Iterator[None]:
    """mmseg's own ``acc_seg`` (``topk``, boolean indexing) in the block,
    instead of :func:`top1_accuracy`: what a stock mmseg run computes, for
    ``tools/benchmark.py``'s variants without ``--top1-accuracy``."""
    import mmseg.models.decode_heads.decode_head as decode_head
    from mmseg.models.losses import accuracy
    patched = decode_head.accuracy
    decode_head.accuracy = accuracy
    try:
        yield
    finally:
        decode_head.accuracy = patched


# --------------------------------------------------------------------------
# setuptools >= 82 has no pkg_resources
# --------------------------------------------------------------------------
def check_pkg_resources() -> None:
    """Raise an actionable error when ``mmseg::`` inheritance cannot work.

    mmengine 0.10.x resolves ``mmseg::`` config paths with
    ``pkg_resources``, removed in setuptools 82.
    """
    try:
        import pkg_resources  # noqa: F401
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            'Configs that inherit from `mmseg::` need pkg_resources, which '
            'setuptools >= 82 removed. Run: pip install "setuptools<82"',
            name='pkg_resources') from err


# --------------------------------------------------------------------------
# 5. Older torch (setup.cfg admits torch >= 2.1)
# --------------------------------------------------------------------------
try:
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # SDPA picks its kernel itself
    SDPBackend = sdpa_kernel = None


def flex_attention_learns_bias(version: str) -> bool:
    """Whether torch ``version``'s FlexAttention takes a ``score_mod``
    tensor that needs a gradient (torch 2.6). Its pre-releases (NGC's
    ``2.6.0a0+...``, release candidates, nightlies) count: compared with
    (2, 6) they would sort below it.

    Args:
        version (str): A torch version string.

    Returns:
        bool: Whether it is 2.6 or later, pre-releases included.
    """
    return _torch_2_6_or_later(version)


flex_attention = None
if flex_attention_learns_bias(torch.__version__):
    from torch.nn.attention.flex_attention import flex_attention


#: Whether dynamo is tracing the caller (constant-folded under tracing).
is_compiling = getattr(torch.compiler, 'is_compiling', None)
if is_compiling is None:
    import torch._dynamo
    is_compiling = torch._dynamo.is_compiling


if hasattr(torch, 'get_autocast_dtype'):  # torch >= 2.4
    def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
        """The dtype autocast casts matmul inputs to on ``device_type``
        (``'cuda'``, ``'cpu'``), or None where autocast is off."""
        if not torch.is_autocast_enabled(device_type):
            return None
        return torch.get_autocast_dtype(device_type)
else:
    def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
        """The dtype autocast casts matmul inputs to on ``device_type``
        (``'cuda'``, ``'cpu'``), or None where autocast is off."""
        if device_type == 'cuda' and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        if device_type == 'cpu' and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        return None


def math_sdpa():
    """A context in which ``scaled_dot_product_attention`` runs its math
    path (matmuls and a softmax) instead of a fused kernel."""
    if sdpa_kernel is not None:
        return sdpa_kernel([SDPBackend.MATH])
    return torch.backends.cuda.sdp_kernel(
        enable_flash=False, enable_mem_efficient=False, enable_math=True)


# --------------------------------------------------------------------------
# 6. SegDataPreProcessor drops mmengine's non_blocking
# --------------------------------------------------------------------------
def _accept_seg_data_preprocessor_non_blocking() -> None:
    from mmseg.models.data_preprocessor import SegDataPreProcessor
    init = SegDataPreProcessor.__init__
    if 'non_blocking' in inspect.signature(init).parameters:
        return  # mmseg forwards it itself (or this ran already)

    @functools.wraps(init)
    def __init__(self, *args, non_blocking: Optional[bool] = False,
                 **kwargs) -> None:
        init(self, *args, **kwargs)
        # What mmengine's BaseDataPreprocessor(non_blocking) sets and
        # cast_data reads.
        self._non_blocking = non_blocking

    __init__.__signature__ = inspect.signature(init).replace(parameters=[
        *inspect.signature(init).parameters.values(),
        inspect.Parameter('non_blocking', inspect.Parameter.KEYWORD_ONLY,
                          default=False, annotation=Optional[bool])
    ])
    SegDataPreProcessor.__init__ = __init__


# --------------------------------------------------------------------------
# 7. CheckpointHook's save_best in a validation without training
# --------------------------------------------------------------------------
def _skip_best_checkpoint_outside_training() -> None:
    from mmengine.hooks import CheckpointHook
    after_val_epoch = CheckpointHook.after_val_epoch
    if (hasattr(CheckpointHook(), 'file_backend')
            or hasattr(after_val_epoch, '__wrapped__')):
        return  # mmengine sets it up front, or this ran already

    @functools.wraps(after_val_epoch)
    def after_val_epoch_in_training(self, runner, metrics=None) -> None:
        if not hasattr(self, 'file_backend'):
            return  # before_train has not run: no training to checkpoint
        after_val_epoch(self, runner, metrics)

    CheckpointHook.after_val_epoch = after_val_epoch_in_training


# --------------------------------------------------------------------------
# 8. pydicom's VOI LUT lookup with 8 bits per entry
# --------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _pydicom_wraps_8bit_voi_lut() -> bool:
    """Whether pydicom's ``apply_voi`` wraps input values above 255 when
    the LUT has 8 bits per entry (found by looking one up)."""
    import numpy as np
    import pydicom
    from pydicom.pixels import apply_voi
    item = pydicom.Dataset()
    item.add_new(0x00283002, 'US', [512, 0, 8])  # LUTDescriptor
    item.add_new(0x00283006, 'US', [i // 2 for i in range(512)])  # LUTData
    ds = pydicom.Dataset()
    ds.VOILUTSequence = pydicom.Sequence([item])
    return int(apply_voi(np.array([300]), ds)[0]) != 150


def voi_lut_dataset(ds: pydicom.Dataset) -> pydicom.Dataset:
    """``ds`` for pydicom's VOI LUT functions (fix 8).

    Args:
        ds (pydicom.Dataset): A DICOM data set.

    Returns:
        pydicom.Dataset: ``ds`` itself, or, where its first VOI LUT has 8
        bits per entry and pydicom wraps such a lookup, a copy whose
        first VOI LUT declares 16 bits per entry.
    """
    import copy
    seq = ds.get('VOILUTSequence')
    if not seq or 'LUTDescriptor' not in seq[0]:
        return ds
    descriptor = list(seq[0].LUTDescriptor)
    if len(descriptor) != 3 or descriptor[2] != 8 or \
            not _pydicom_wraps_8bit_voi_lut():
        return ds
    # Deep: a shallow copy of a pydicom Dataset shares its elements.
    view = copy.deepcopy(ds)
    view.VOILUTSequence[0].LUTDescriptor = descriptor[:2] + [16]
    return view


# --------------------------------------------------------------------------
# 9. Local files (checkpoints) written in place
# --------------------------------------------------------------------------
def _write_local_files_atomically() -> None:
    from mmengine.fileio.backends.local_backend import LocalBackend
    put = LocalBackend.put
    if hasattr(put, '__wrapped__'):
        return  # this ran already

    from mmseg_ptx.utils.atomic_write import (remove_leftover_temporaries,
                                              write_atomically)

    cleaned = set()

    @functools.wraps(put)
    def put_atomically(self, obj: bytes, filepath) -> None:
        write_atomically(filepath, obj)
        # Once per folder (not a scan per file written): a requeued run's
        # work dir at its first checkpoint.
        folder = os.path.dirname(os.path.abspath(filepath))
        if folder not in cleaned:
            cleaned.add(folder)
            remove_leftover_temporaries(folder)

    @functools.wraps(LocalBackend.put_text)
    def put_text_atomically(self, obj: str, filepath,
                            encoding: str = 'utf-8') -> None:
        # last_checkpoint, which names the checkpoint to resume from.
        put_atomically(self, obj.encode(encoding), filepath)

    LocalBackend.put = put_atomically
    LocalBackend.put_text = put_text_atomically


# --------------------------------------------------------------------------
# 10. CheckpointHook.last_ckpt after a resume
# --------------------------------------------------------------------------
def _restore_last_checkpoint_on_resume() -> None:
    from mmengine.hooks import CheckpointHook
    before_train = CheckpointHook.before_train
    if (hasattr(before_train, '__wrapped__')
            or 'last_ckpt' in inspect.getsource(before_train)):
        return  # this ran already, or mmengine restores it

    @functools.wraps(before_train)
    def before_train_resumed(self, runner) -> None:
        before_train(self, runner)
        if runner.iter > 0 and self.last_ckpt is None:
            self.last_ckpt = runner.message_hub.get_info('last_ckpt')

    CheckpointHook.before_train = before_train_resumed


# --------------------------------------------------------------------------
# 11. Integer metrics in the test record
# --------------------------------------------------------------------------
def _keep_numpy_scalars_in_test_record() -> None:
    import numpy as np
    from mmengine.hooks import LoggerHook
    process_tags = LoggerHook._process_tags
    if (hasattr(process_tags, '__wrapped__')
            or process_tags({'n': np.int64(1)})['n'] is not None):
        return  # this ran already, or mmengine keeps them

    def item(value):
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, (list, tuple)):
            return [item(v) for v in value]
        if isinstance(value, dict):
            return {k: item(v) for k, v in value.items()}
        return value

    @functools.wraps(process_tags)
    def process_tags_with_numpy_scalars(tags: dict):
        return process_tags(item(tags))

    LoggerHook._process_tags = staticmethod(process_tags_with_numpy_scalars)


# --------------------------------------------------------------------------
# 12. A linear warm-up of one step
# --------------------------------------------------------------------------
def _one_step_linear_warm_up_ends() -> bool:
    """Whether mmengine's one-step ``LinearLR`` ends at ``end_factor``."""
    from mmengine.optim import LinearLR
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    LinearLR(optimizer, start_factor=0.5, begin=0, end=1, by_epoch=False)
    return optimizer.param_groups[0]['lr'] == 1.0


def _end_one_step_linear_warm_ups() -> None:
    from mmengine.optim.scheduler.param_scheduler import \
        LinearParamScheduler
    get_value = LinearParamScheduler._get_value
    if (hasattr(get_value, '__wrapped__')
            or _one_step_linear_warm_up_ends()):
        return  # this ran already, or mmengine's warm-up ends

    @functools.wraps(get_value)
    def get_value_ending_one_step(self) -> list:
        if self.total_iters == 0:  # one step, the first and the last
            return [group[self.param_name] * self.end_factor
                    for group in self.optimizer.param_groups]
        return get_value(self)

    LinearParamScheduler._get_value = get_value_ending_one_step


def apply_all() -> None:
    """Apply every fix that the installed stack needs (idempotent)."""
    warnings.filterwarnings(
        'ignore', message='pkg_resources is deprecated', category=UserWarning)
    if not compiled_mmcv_ops_available():
        # mmcv-lite: mmcv.cnn warns on import about an op UPerNet never uses.
        warnings.filterwarnings(
            'ignore', message='Fail to import ``MultiScaleDeformableAttention',
            category=UserWarning)
    _install_mmcv_ops_stand_in()
    _allow_mmengine_checkpoints()
    _patch_cpu_distributed()
    _patch_decode_head_accuracy()
    _accept_seg_data_preprocessor_non_blocking()
    _skip_best_checkpoint_outside_training()
    _write_local_files_atomically()
    _restore_last_checkpoint_on_resume()
    _keep_numpy_scalars_in_test_record()
    _end_one_step_linear_warm_ups()
