"""InferenceDtypeHook casts for test runs and leaves training runs alone."""
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.model import MMDistributedDataParallel
from mmseg.registry import HOOKS
from tiny_model import build_tiny_model


def make_runner(model, name):
    return SimpleNamespace(model=model, logger=MMLogger.get_instance(name))


def weight_dtype(model):
    return model.decode_head.conv_seg.weight.dtype


def test_before_test_casts():
    model = build_tiny_model(size=64)
    hook = HOOKS.build(dict(type='InferenceDtypeHook'))
    hook.before_test(make_runner(model, 'inference_dtype_test'))
    assert weight_dtype(model) == torch.bfloat16
    assert model.backbone.patch_embed.projection.weight.dtype == \
        torch.bfloat16
    assert model.data_preprocessor.mean.dtype == torch.float32


def test_unwraps_model_wrapper():
    model = build_tiny_model(size=64)
    # A DDP wrapper without a process group: only ``.module`` is used.
    wrapper = MMDistributedDataParallel.__new__(MMDistributedDataParallel)
    torch.nn.Module.__init__(wrapper)
    wrapper.module = model
    hook = HOOKS.build(dict(type='InferenceDtypeHook', dtype='float16'))
    hook.before_test(make_runner(wrapper, 'inference_dtype_ddp'))
    assert weight_dtype(model) == torch.float16


def test_training_run_keeps_float32():
    model = build_tiny_model(size=64)
    runner = make_runner(model, 'inference_dtype_train')
    runner.logger = mock.Mock(wraps=runner.logger)
    hook = HOOKS.build(dict(type='InferenceDtypeHook'))
    hook.before_train(runner)
    hook.before_train(runner)
    assert runner.logger.warning.call_count == 1
    assert 'only applies to test runs' in \
        runner.logger.warning.call_args.args[0]
    # Validation during training and a test after it: nothing is cast.
    hook.before_val(runner)
    hook.before_test(runner)
    assert weight_dtype(model) == torch.float32


def test_bad_dtype():
    with pytest.raises(ValueError, match='Unsupported inference dtype'):
        HOOKS.build(dict(type='InferenceDtypeHook', dtype='int8'))
