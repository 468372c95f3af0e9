"""Test runs with BatchNorm folded into the convolutions."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ...models.utils import fuse_conv_bn


@HOOKS.register_module()
class FuseConvBNHook(Hook):
    """Fold the model's BatchNorms into their convolutions
    (:func:`~mmseg_ptx.models.utils.fuse_conv_bn`) before testing.

    For ``tools/test.py``-style runs: ``tools/test.py ... --fuse-conv-bn``
    adds it, or add ``custom_hooks = [dict(type='FuseConvBNHook')]`` to the
    config. It folds in ``before_test``, after the checkpoint is loaded and
    before :class:`InferenceDtypeHook` casts the weights (its priority is
    higher), so the folding is done on the float32 weights.

    In a run that trains, the hook does nothing (and says so once): the
    folded network could not learn its BatchNorms any more.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._trains = False

    def before_train(self, runner) -> None:
        if not self._trains:
            runner.logger.warning(
                'FuseConvBNHook only applies to test runs (tools/test.py); '
                'this run trains, so its BatchNorms stay as they are')
        self._trains = True

    def before_test(self, runner) -> None:
        if self._trains:
            return
        folded = fuse_conv_bn(runner.model)
        runner.logger.info(f'FuseConvBNHook: {folded} BatchNorm layers '
                           'folded into their convolutions')
