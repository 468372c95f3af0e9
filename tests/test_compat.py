"""The stack fixes in mmseg_ptx.compat."""
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import needs_safe_globals

import mmseg_ptx
from mmseg_ptx import compat


def _last_line_of(code: str) -> str:
    """The last line ``code`` prints, run in a new interpreter (for
    patches applied at import time); its failure fails the test."""
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_mmseg_registers_with_mmcv_lite():
    from mmseg.utils import register_all_modules
    register_all_modules()
    from mmseg.registry import MODELS
    assert MODELS.get('UPerHead') is not None
    assert MODELS.get('SwinTransformer') is not None


@pytest.mark.skipif(compat.compiled_mmcv_ops_available(),
                    reason='full mmcv installed: the stand-in is inactive')
def test_mmcv_ops_stand_in():
    import mmcv.ops
    # A pure-PyTorch op comes from mmcv's own file.
    feats = torch.arange(16.).view(1, 1, 4, 4)
    points = torch.tensor([[[0.5, 0.5]]])
    assert mmcv.ops.point_sample(feats, points).shape == (1, 1, 1)
    # Compiled ops raise what mmseg's guarded imports catch.
    with pytest.raises(ModuleNotFoundError, match='compiled ops'):
        from mmcv.ops import CrissCrossAttention  # noqa: F401
    from mmseg.models.decode_heads import cc_head
    assert cc_head.CrissCrossAttention is None


def test_sigmoid_focal_loss_matches_definition():
    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    target = torch.tensor([0, 1, 2, 3, 1, 0])  # 3 == "no class"
    gamma, alpha = 2.0, 0.25
    loss = compat.sigmoid_focal_loss(logits, target, gamma, alpha, None,
                                     'none')
    p = logits.sigmoid()
    t = torch.zeros(6, 3)
    t[torch.arange(5), target[:5].clamp(max=2)] = 0
    for i, c in enumerate(target.tolist()):
        if c < 3:
            t[i, c] = 1
    expected = (-alpha * t * (1 - p)**gamma * p.log() -
                (1 - alpha) * (1 - t) * p**gamma * (1 - p).log())
    torch.testing.assert_close(loss, expected)
    mean = compat.sigmoid_focal_loss(logits, target, gamma, alpha)
    torch.testing.assert_close(mean, expected.sum() / 6)
    weight = torch.tensor([1.0, 2.0, 3.0])
    weighted = compat.sigmoid_focal_loss(logits, target, gamma, alpha, weight,
                                         'none')
    row_w = torch.tensor([1.0, 2.0, 3.0, 1.0, 2.0, 1.0]).unsqueeze(1)
    torch.testing.assert_close(weighted, expected * row_w)


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    from mmengine.logging import HistoryBuffer
    buf = HistoryBuffer()
    buf.update(np.float64(0.5))
    ckpt = dict(
        state_dict=dict(w=torch.ones(2)),
        message_hub=dict(log_scalars=dict(loss=buf),
                         runtime_info=dict(arr=np.arange(3), f=np.float32(1))))
    path = tmp_path / 'ckpt.pth'
    torch.save(ckpt, path)
    from mmengine.runner.checkpoint import _load_checkpoint
    loaded = _load_checkpoint(str(path), map_location='cpu')
    assert loaded['message_hub']['log_scalars']['loss'].current() == 0.5
    np.testing.assert_array_equal(
        loaded['message_hub']['runtime_info']['arr'], np.arange(3))


@needs_safe_globals
def test_checkpoints_load_across_numpy_1_and_2(tmp_path):
    """numpy 1.x pickles its arrays and scalars through
    numpy.core.multiarray, numpy 2 through numpy._core.multiarray: a
    checkpoint written under either loads under the other."""
    from mmengine.runner.checkpoint import _load_checkpoint
    here = np.ndarray.__reduce__(np.arange(1))[0].__module__
    other = ('numpy.core.multiarray' if here == 'numpy._core.multiarray'
             else 'numpy._core.multiarray')
    path = tmp_path / 'ckpt.pth'
    # The legacy format: its pickle is a plain byte stream, so a module's
    # name can change length.
    torch.save(dict(meta=dict(arr=np.arange(3), f=np.float32(1.5))), path,
               _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    assert data.count(f'{here}\n'.encode()) == 2
    path.write_bytes(data.replace(f'{here}\n'.encode(),
                                  f'{other}\n'.encode()))
    loaded = _load_checkpoint(str(path), map_location='cpu')['meta']
    np.testing.assert_array_equal(loaded['arr'], np.arange(3))
    assert loaded['f'] == np.float32(1.5)


@pytest.mark.parametrize('version,pairs', [('2.6.0a0+ecf3bae', True),
                                           ('2.13.0+cpu', True),
                                           ('2.5.1', False)])
def test_numpy_names_as_pairs_from_torch_2_6(monkeypatch, version, pairs):
    # torch 2.6 (NGC's pre-releases too) takes (global, name) pairs;
    # 2.5, which loads without weights_only by default, only globals.
    monkeypatch.setattr(torch, '__version__', version)
    named = [g for g in compat._mmengine_checkpoint_globals()
             if isinstance(g, tuple)]
    if not pairs:
        assert named == []
        return
    assert sorted(name for _, name in named) == [
        'numpy._core.multiarray._reconstruct',
        'numpy._core.multiarray.scalar',
        'numpy.core.multiarray._reconstruct', 'numpy.core.multiarray.scalar']


class _Untrusted:
    pass


@needs_safe_globals
def test_weights_only_still_refuses_other_objects(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint
    path = tmp_path / 'evil.pth'
    torch.save({'x': _Untrusted()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(str(path), map_location='cpu')


@needs_safe_globals
def test_getattr_not_allowed_outside_mmengine_loader(tmp_path):
    """A plain torch.load (as for downloaded weights) stays strict."""
    from mmengine.logging import HistoryBuffer
    path = tmp_path / 'hb.pth'
    torch.save({'hub': HistoryBuffer()}, path)
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        torch.load(path, weights_only=True)


def test_torch_2_4_without_the_safe_globals_context(tmp_path):
    """torch 2.4 has add_safe_globals but not the safe_globals context
    (2.5), and needs no fix (weights_only is off by default before 2.6):
    checkpoints must load as they are."""
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}}, path)
    code = (
        'import torch.serialization as s\n'
        'del s.safe_globals  # as in torch 2.4\n'
        'import mmseg_ptx\n'
        'from mmengine.runner.checkpoint import CheckpointLoader\n'
        f'ckpt = CheckpointLoader.load_checkpoint({str(path)!r}, '
        "map_location='cpu')\n"
        "print(sorted(ckpt['state_dict']))\n")
    assert _last_line_of(code) == "['w']"


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only fix')
def test_cpu_distributed_init_uses_gloo():
    code = (
        'import os, mmseg_ptx, torch.distributed as d\n'
        'from mmengine.dist import init_dist\n'
        "os.environ.update(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', "
        "MASTER_ADDR='127.0.0.1', MASTER_PORT='29611')\n"
        "init_dist('pytorch', backend='nccl')\n"
        'print(d.get_backend())\n')
    assert _last_line_of(code) == 'gloo'


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only fix')
def test_cpu_distributed_fix_leaves_other_accelerators_alone():
    """On an Ascend (or Cambricon, Moore Threads) host CUDA is absent too;
    mmengine's own launcher, which sets the NPU and picks hccl, stays."""
    code = (
        'import mmengine.dist.utils as utils\n'
        'from mmengine.model import MMDistributedDataParallel as DDP\n'
        'launcher, ddp_init = utils._init_dist_pytorch, DDP.__init__\n'
        # After mmengine's imports, which would import torch_npu.
        'import mmengine.device as device\n'
        'device.is_npu_available = lambda: True\n'
        'import mmseg_ptx\n'
        'print(utils._init_dist_pytorch is launcher, '
        'DDP.__init__ is ddp_init)\n')
    assert _last_line_of(code) == 'True True'


def test_check_pkg_resources_passes_with_pinned_setuptools():
    compat.check_pkg_resources()


def test_version():
    assert mmseg_ptx.__version__


# 0: an ignore_index that is a class (mmseg allows any value).
@pytest.mark.parametrize('ignore_index', [None, 255, 0])
@pytest.mark.parametrize('topk', [1, (1, )])
def test_top1_accuracy_matches_mmseg(ignore_index, topk):
    from mmseg.models.losses.accuracy import accuracy
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 4, 16, 16, generator=gen)
    target = torch.randint(0, 4, (3, 16, 16), generator=gen)
    target[0, :4] = 255  # ignored pixels (counted as wrong without index)
    got = compat.top1_accuracy(pred, target, topk, ignore_index=ignore_index)
    expected = accuracy(pred, target, topk, ignore_index=ignore_index)
    if topk == (1, ):
        assert isinstance(got, list) and len(got) == 1
        got, expected = got[0], expected[0]
    assert got.shape == expected.shape == (1, )
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-5)
    assert 10 < got.item() < 60  # ~25 % right by chance, not 0 or 100


def test_top1_accuracy_of_an_empty_batch_is_mmsegs():
    from mmseg.models.losses.accuracy import accuracy
    pred = torch.zeros(0, 2, 4, 4)
    target = torch.zeros(0, 4, 4, dtype=torch.long)
    assert compat.top1_accuracy(pred, target).item() == \
        accuracy(pred, target).item() == 0


def test_top1_accuracy_other_cases_use_mmseg():
    from mmseg.models.losses.accuracy import accuracy
    # (N, C) scores: mmseg's thresh branch only works for 2-D predictions.
    pred = torch.randn(64, 3)
    target = torch.randint(0, 3, (64, ))
    for kwargs in (dict(topk=(1, 2)), dict(thresh=0.5)):
        got = compat.top1_accuracy(pred, target, **kwargs)
        expected = accuracy(pred, target, **kwargs)
        torch.testing.assert_close(got, expected)


def test_decode_heads_use_top1_accuracy():
    import mmseg.models.decode_heads.decode_head as decode_head
    assert decode_head.accuracy is compat.top1_accuracy


@pytest.mark.parametrize('version,learns', [
    ('2.5.1', False), ('2.5.1+cu124', False), ('2.6.0', True),
    ('2.6.0a0+ecf3bae40a', True), ('2.6.0rc1', True),
    ('2.6.0.dev20241201', True), ('2.10.0', True), ('2.13.0+cpu', True)
])
def test_flex_attention_learns_bias_from_2_6(version, learns):
    """torch 2.6 and its pre-releases (NGC builds), compared as versions:
    2.10 is after 2.6."""
    assert compat.flex_attention_learns_bias(version) is learns


def test_autocast_dtype_per_device():
    assert compat.autocast_dtype('cpu') is None
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert compat.autocast_dtype('cpu') == torch.bfloat16
        # Autocast on one device says nothing about another.
        assert compat.autocast_dtype('cuda') is None
    assert compat.autocast_dtype('cpu') is None


@pytest.mark.parametrize('non_blocking', [None, False, True])
def test_seg_data_preprocessor_takes_non_blocking(monkeypatch, non_blocking):
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    cfg = dict(type='SegDataPreProcessor', mean=[0.0] * 3, std=[1.0] * 3,
               size=(4, 4))
    if non_blocking is not None:
        cfg['non_blocking'] = non_blocking
    preprocessor = MODELS.build(cfg)
    calls = []
    to = torch.Tensor.to

    def recording_to(self, *args, **kwargs):
        calls.append(kwargs.get('non_blocking'))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, 'to', recording_to)
    sample = SegDataSample()
    sample.gt_sem_seg = PixelData(data=torch.zeros(1, 4, 4, dtype=torch.long))
    out = preprocessor(dict(inputs=[torch.zeros(3, 4, 4, dtype=torch.uint8)],
                            data_samples=[sample]), training=True)
    # The image and the label map both travel with the setting.
    assert calls == [bool(non_blocking)] * 2
    assert out['inputs'].shape == (1, 3, 4, 4)


def test_seg_data_preprocessor_fix_applies_once():
    import inspect

    from mmseg.models.data_preprocessor import SegDataPreProcessor
    init = SegDataPreProcessor.__init__
    compat.apply_all()
    assert SegDataPreProcessor.__init__ is init
    assert list(inspect.signature(init).parameters).count('non_blocking') == 1


@pytest.mark.parametrize('bits', [8, 16])
def test_voi_lut_dataset_leaves_the_data_set_alone(bits):
    """Fix 8 changes a copy, and only for 8-bit entries; the lookup then
    reaches entries past 255."""
    import pydicom
    from pydicom.pixels import apply_voi
    lut = pydicom.Dataset()
    lut.add_new(0x00283002, 'US', [1024, 0, bits])  # LUTDescriptor
    lut.add_new(0x00283006, 'US', [i // 4 for i in range(1024)])  # LUTData
    ds = pydicom.Dataset()
    ds.VOILUTSequence = pydicom.Sequence([lut])
    view = compat.voi_lut_dataset(ds)
    assert list(ds.VOILUTSequence[0].LUTDescriptor) == [1024, 0, bits]
    assert (view is ds) == (bits == 16 or
                            not compat._pydicom_wraps_8bit_voi_lut())
    assert apply_voi(np.array([1000]), view).tolist() == [250]


def test_checkpoints_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A save killed before it finished leaves the earlier checkpoint (and
    last_checkpoint, which names it), not a truncated file that --resume
    cannot read (fix 9)."""
    import os

    from mmengine.fileio.backends.local_backend import LocalBackend
    from mmengine.runner.checkpoint import save_checkpoint
    path = tmp_path / 'work' / 'epoch_3.pth'
    last = path.parent / 'last_checkpoint'
    save_checkpoint(dict(meta=dict(epoch=3)), str(path))
    LocalBackend().put_text(str(path), str(last))
    assert torch.load(path)['meta'] == dict(epoch=3)
    before = path.read_bytes()

    class Killed(BaseException):
        """The process stopped before the rename."""

    def killed(*args):
        raise Killed

    monkeypatch.setattr(os, 'replace', killed)
    with pytest.raises(Killed):
        save_checkpoint(dict(meta=dict(epoch=3), best=True), str(path))
    with pytest.raises(Killed):
        LocalBackend().put_text('', str(last))
    assert path.read_bytes() == before
    assert last.read_text() == str(path)
    assert sorted(p.name for p in path.parent.iterdir()) == [
        'epoch_3.pth', 'last_checkpoint']
    # Applied once, whatever the number of imports.
    compat.apply_all()
    assert not hasattr(LocalBackend.put.__wrapped__, '__wrapped__')


def test_a_resumed_save_removes_the_killed_saves_leftovers(tmp_path):
    """The temporary files of saves killed in an earlier process go when
    the requeued run first saves into that folder (fix 9); the folder is
    looked at once, not at every file written."""
    import os

    from mmengine.runner.checkpoint import save_checkpoint
    leftovers = [tmp_path / f'.{name}.{"0" * 32}.tmp'
                 for name in ('epoch_3.pth', 'best_dice_epoch_2.pth')]
    for leftover in leftovers:
        leftover.write_bytes(b'half a checkpoint')
        os.utime(leftover, (1000, 1000))  # written before this process
    # Another process's save still running (tools/test.py's work dir that
    # a training run writes into): written since this process started.
    running = tmp_path / f'.epoch_9.pth.{"c" * 32}.tmp'
    running.write_bytes(b'being written')
    save_checkpoint(dict(meta=dict(epoch=3)), str(tmp_path / 'epoch_3.pth'))
    assert sorted(os.listdir(tmp_path)) == [running.name, 'epoch_3.pth']
    running.unlink()
    assert torch.load(tmp_path / 'epoch_3.pth')['meta'] == dict(epoch=3)
    leftovers[0].write_bytes(b'')
    os.utime(leftovers[0], (1000, 1000))
    save_checkpoint(dict(meta=dict(epoch=4)), str(tmp_path / 'epoch_4.pth'))
    assert leftovers[0].exists()


@pytest.mark.parametrize('resumed', [False, True])
def test_a_resumed_run_saves_its_steps_after_a_new_best(tmp_path, resumed):
    """mmengine does not restore CheckpointHook.last_ckpt on resume, and
    without it a new best's step gets no checkpoint: a later resume would
    start before that best, naming a best checkpoint since deleted (fix
    10)."""
    from types import SimpleNamespace

    from mmengine.hooks import CheckpointHook
    from mmengine.logging import MessageHub, MMLogger
    hub = MessageHub.get_instance(f'compat_last_ckpt_{resumed}')
    hub.update_info('last_ckpt', str(tmp_path / 'epoch_4.pth'))
    runner = SimpleNamespace(work_dir=str(tmp_path), message_hub=hub,
                             logger=MMLogger.get_current_instance(),
                             iter=8 if resumed else 0)
    hook = CheckpointHook(interval=4, save_best='dice', rule='greater')
    hook.before_train(runner)
    assert hook.last_ckpt == (str(tmp_path / 'epoch_4.pth')
                              if resumed else None)


def test_the_test_record_keeps_integer_metrics(tmp_path):
    """mmengine's LoggerHook writes tools/test.py's JSON record without
    numpy integers: the message hub gives every count back as one, and
    ``num_images`` was null (fix 11)."""
    from mmengine.hooks import LoggerHook
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('compat_test_record')
    hub.update_scalar('test/num_images', 7)
    hub.update_scalar('test/dice', 0.5)
    tags = {key: hub.get_scalar(key).current()
            for key in ('test/num_images', 'test/dice')}
    tags['nested'] = {'flags': (np.bool_(True), np.int32(3))}
    assert isinstance(tags['test/num_images'], np.integer)
    processed = LoggerHook._process_tags(tags)
    assert processed == {'test/num_images': 7, 'test/dice': 0.5,
                         'nested': {'flags': [True, 3]}}
    assert type(processed['test/num_images']) is int


@pytest.mark.parametrize('warm_up_steps', [1, 2, 3])
def test_a_one_step_warm_up_ends(warm_up_steps):
    """mmengine's LinearLR spanning one step (a warm-up of one epoch of one
    batch) stayed at start_factor, and so did the cosine schedule chained
    after it: the whole run trained at a hundredth of its learning rate
    (fix 12). Longer warm-ups are mmengine's."""
    from mmengine.optim import CosineAnnealingLR, LinearLR
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))],
                                lr=1e-3)
    schedulers = [
        LinearLR(optimizer, start_factor=1e-2, begin=0, end=warm_up_steps,
                 by_epoch=False),
        CosineAnnealingLR(optimizer, eta_min=1e-5, begin=warm_up_steps,
                          end=10 * warm_up_steps, by_epoch=False)]
    lrs = []
    for _ in range(10 * warm_up_steps):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    ramp = [1e-5 + (1e-3 - 1e-5) * k / (warm_up_steps - 1)
            for k in range(warm_up_steps - 1)]
    assert lrs[:warm_up_steps] == pytest.approx(ramp + [1e-3])
    assert lrs[warm_up_steps + 1] < lrs[warm_up_steps]  # the cosine
    assert lrs[-1] == pytest.approx(1e-5, abs=1e-4)


def test_a_one_step_warm_up_ends_at_its_end_factor():
    from mmengine.optim import LinearLR
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))],
                                lr=1e-3)
    LinearLR(optimizer, start_factor=1e-2, end_factor=0.5, begin=0, end=1,
             by_epoch=False)
    assert optimizer.param_groups[0]['lr'] == pytest.approx(5e-4)
