"""FuseConvBNHook folds for test runs, before the weights are cast, and
leaves training runs alone."""
from types import SimpleNamespace
from unittest import mock

import pytest
from mmengine.hooks import EMAHook
from mmengine.logging import MMLogger
from mmengine.runner import get_priority
from mmseg.registry import HOOKS
from tiny_model import build_tiny_model
from torch import nn


def norms_left(model) -> int:
    return sum(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        for m in model.modules())


def test_test_run_folds_training_run_does_not():
    for trains in (False, True):
        model = build_tiny_model(size=64)
        before = norms_left(model)
        logger = mock.Mock(wraps=MMLogger.get_instance('fuse_conv_bn_hook'))
        runner = SimpleNamespace(model=model, logger=logger)
        hook = HOOKS.build(dict(type='FuseConvBNHook'))
        if trains:
            hook.before_train(runner)
            hook.before_train(runner)
            assert logger.warning.call_count == 1
        hook.before_test(runner)
        assert norms_left(model) == (before if trains else 0) and before
        if not trains:
            assert f'{before} BatchNorm layers folded' in \
                logger.info.call_args.args[0]
            # A second test of the runner: nothing left to fold, and no
            # "0 BatchNorm layers folded".
            hook.before_test(runner)
            assert logger.info.call_count == 1


def test_refused_with_ema():
    """EMAHook swaps its averaged weights in by position, from a copy made
    before the folding: said before anything is folded."""
    model = build_tiny_model(size=64)
    before = norms_left(model)
    runner = SimpleNamespace(model=model, logger=mock.Mock(),
                             hooks=[EMAHook()])
    with pytest.raises(RuntimeError, match='cannot fold a model whose '
                       'EMAHook swaps'):
        HOOKS.build(dict(type='FuseConvBNHook')).before_test(runner)
    assert norms_left(model) == before


def test_runs_before_the_dtype_cast():
    """Hooks run in priority order: folding float32 weights first."""
    fuse = HOOKS.build(dict(type='FuseConvBNHook'))
    cast = HOOKS.build(dict(type='InferenceDtypeHook'))
    assert get_priority(fuse.priority) < get_priority(cast.priority)
