"""CompileModulesHook / compile_modules compile the network's forwards."""
import copy
import re
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MMLogger
from mmseg.registry import HOOKS
from conftest import (PYTHON, needs_recent_dynamo, run_tool,
                      write_tiny_run_config)
from tiny_model import build_tiny_model

from mmseg_ptx.engine.hooks import compile_modules


def is_plain(module: torch.nn.Module) -> bool:
    """Whether ``forward`` is still the class's own method."""
    return getattr(module.forward, '__func__', None) is type(module).forward


def compile_tiny_model(*args, **kwargs):
    """The tiny model after ``compile_modules(model, *args, **kwargs)``
    and the names compiled; its logits must equal the eager ones."""
    # A fresh dynamo cache: the same Swin code traced before at another
    # input size would be traced again with symbolic shapes (minutes).
    torch._dynamo.reset()
    model = build_tiny_model(size=64)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x, mode='tensor')
        # backend='eager': dynamo traces the graphs, no C++ build on CI.
        names = compile_modules(model, *args, backend='eager', **kwargs)
        got = model(x, mode='tensor')
    torch.testing.assert_close(got, expected)
    return model, names


def test_compile_modules_same_outputs():
    model, names = compile_tiny_model()
    # The tiny UPerNet has no neck.
    assert names == ['backbone', 'decode_head', 'auxiliary_head']
    assert not any(is_plain(getattr(model, n)) for n in names)


def test_copy_of_compiled_model_runs_its_own_weights():
    """A deep copy (mmengine's EMAHook makes one) computes with the copy's
    weights, not with those of the model it was copied from."""
    model, _ = compile_tiny_model()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for param in twin.parameters():
            param.mul_(0.5)
        x = torch.randn(1, 3, 64, 64)
        original = model(x, mode='tensor')
        got = twin(x, mode='tensor')
        eager = copy.deepcopy(twin)
        for name in ('backbone', 'decode_head', 'auxiliary_head'):
            del getattr(eager, name).forward  # back to the class's own
        expected = eager(x, mode='tensor')
    assert all(is_plain(getattr(eager, n)) for n in ('backbone',
                                                     'decode_head'))
    assert not torch.allclose(got, original)
    torch.testing.assert_close(got, expected)


def test_hook_compiles_once():
    model = build_tiny_model(size=64)
    runner = SimpleNamespace(
        model=model, logger=MMLogger.get_instance('compile_modules_test'))
    hook = HOOKS.build(
        dict(type='CompileModulesHook', modules=['backbone'],
             backend='eager'))
    hook.before_run(runner)
    compiled = model.backbone.forward
    assert not is_plain(model.backbone)
    assert is_plain(model.decode_head)
    hook.before_run(runner)  # a later run (test after train) keeps it
    assert model.backbone.forward is compiled


@needs_recent_dynamo
def test_compile_blocks_one_by_one():
    model, names = compile_tiny_model(['backbone', 'decode_head'],
                                      blocks=['SwinBlock'])
    blocks = [n for n in names if n.startswith('backbone.')]
    # The nano config's depths 2-2-2-2.
    assert len(blocks) == 8 and blocks[0] == 'backbone.stages.0.blocks.0'
    assert names[-1] == 'decode_head'
    for path in blocks:
        block = model.get_submodule(path)
        assert block._compiled_call_impl is not None
        assert is_plain(block)
    assert is_plain(model.backbone)  # the glue runs eagerly
    assert not is_plain(model.decode_head)
    assert torch._dynamo.config.recompile_limit >= 4 * 8


def test_compiled_with_static_shapes_by_default(monkeypatch):
    """dynamic=False unless asked: a symbolic batch size would compile
    every block anew for minutes."""
    calls = []
    monkeypatch.setattr(torch.nn.Module, 'compile',
                        lambda self, **kwargs: calls.append(kwargs))
    monkeypatch.setattr(torch, 'compile',
                        lambda fn, **kwargs: calls.append(kwargs) or fn)
    compile_modules(build_tiny_model(size=64), ['backbone', 'decode_head'],
                    blocks=['SwinBlock'], backend='eager')
    assert len(calls) == 9  # 8 blocks and the head
    assert all(kwargs['dynamic'] is False for kwargs in calls)


@needs_recent_dynamo
def test_allow_recompiles_raises_both_limits_only():
    from mmseg_ptx.engine.hooks import allow_recompiles
    config = torch._dynamo.config
    with config.patch(recompile_limit=8, accumulated_recompile_limit=256):
        allow_recompiles(96)
        assert config.recompile_limit == 96
        assert config.accumulated_recompile_limit == 256
        allow_recompiles(300)
        assert config.recompile_limit == 300
        assert config.accumulated_recompile_limit == 300
        allow_recompiles(10)  # lower limits never
        assert config.recompile_limit == 300


def test_blocks_need_module_compile(monkeypatch):
    """nn.Module.compile arrived in torch 2.2; setup.cfg admits 2.1."""
    monkeypatch.delattr(torch.nn.Module, 'compile')
    with pytest.raises(RuntimeError, match=r'torch >= 2\.2'):
        compile_modules(build_tiny_model(), ['backbone'],
                        blocks=['SwinBlock'])


def test_hook_logs_blocks():
    model = build_tiny_model(size=64)
    logger = MMLogger.get_instance('compile_blocks_test')
    runner = SimpleNamespace(model=model, logger=logger)
    hook = HOOKS.build(
        dict(type='CompileModulesHook', modules=['backbone', 'decode_head'],
             blocks=['SwinBlock'], backend='eager'))
    messages = []
    logger.info = messages.append
    hook.before_run(runner)
    assert messages == ['torch.compile: decode_head, 8 blocks']


def test_hook_reaches_tta_and_ensemble_members():
    # tools/test.py --tta --extra-model: a TTA model around an ensemble.
    from mmseg_ptx.models import EnsembleSegmentor, SegTTAModelWithLogits
    members = [build_tiny_model(seed=i, size=64) for i in range(2)]
    model = SegTTAModelWithLogits(module=EnsembleSegmentor(models=members))
    logger = MMLogger.get_instance('compile_members_test')
    messages = []
    logger.info = messages.append
    hook = HOOKS.build(
        dict(type='CompileModulesHook', modules=['backbone'],
             backend='eager'))
    hook.before_run(SimpleNamespace(model=model, logger=logger))
    assert all(not is_plain(m.backbone) for m in members)
    assert all(is_plain(m.decode_head) for m in members)
    assert messages == ['torch.compile in 2 segmentors: backbone']


def test_hook_compiles_other_segmentors():
    # Not an EncoderDecoder (e.g. mmseg's MultimodalEncoderDecoder): the
    # hook compiles its modules of the configured names.
    from mmseg.models.segmentors import BaseSegmentor

    class OtherSegmentor(BaseSegmentor):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Conv2d(3, 2, 1)

        extract_feat = encode_decode = loss = predict = _forward = None

    from mmseg_ptx.models import SegTTAModelWithLogits
    for wrap in (lambda m: m, lambda m: SegTTAModelWithLogits(module=m)):
        model = OtherSegmentor()
        hook = HOOKS.build(dict(type='CompileModulesHook', backend='eager'))
        hook.before_run(SimpleNamespace(
            model=wrap(model),
            logger=MMLogger.get_instance('compile_other_test')))
        assert not is_plain(model.backbone)


def test_hook_warns_when_nothing_compiles():
    model = build_tiny_model(size=64)
    logger = MMLogger.get_instance('compile_nothing_test')
    warnings = []
    logger.warning = warnings.append
    hook = HOOKS.build(dict(type='CompileModulesHook', modules=['neck']))
    hook.before_run(SimpleNamespace(model=model, logger=logger))
    assert warnings and 'compiled nothing' in warnings[0]


def test_training_run_compiles_sdpa_blocks(tmp_path, demo_root):
    """tools/train.py with the hook, as docs/training.md adds it to the
    fast config (with ChannelsLastHook, DeferredRuntimeInfoHook and
    non-blocking copies): one epoch and a validation through the compiled
    blocks (dynamo's eager backend: traced, no C++ build)."""
    work_dir = tmp_path / 'work'
    cfg = write_tiny_run_config(tmp_path / 'cfg.py', demo_root, extra="""
model = dict(backbone=dict(type='SwinTransformerSDPA'),
             data_preprocessor=dict(non_blocking=True))
default_hooks = dict(runtime_info=dict(type='DeferredRuntimeInfoHook'))
custom_hooks = [
    dict(type='TrainSegMetricsHook'),
    dict(type='ChannelsLastHook'),
    dict(type='CompileModulesHook', blocks=['SwinBlock'], backend='eager'),
]
""")
    proc = run_tool([PYTHON, 'tools/train.py', str(cfg), '--work-dir',
                     str(work_dir)])
    log = proc.stdout + proc.stderr
    assert 'torch.compile: decode_head, auxiliary_head, 8 blocks' in log
    assert re.search(r'ChannelsLastHook: [1-9]\d* convolution weights', log)
    assert 'Epoch(val) [1]' in log and 'dice' in log
    assert (work_dir / 'epoch_1.pth').is_file()
