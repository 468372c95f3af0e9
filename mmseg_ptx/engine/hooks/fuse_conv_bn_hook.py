"""Test runs with BatchNorm folded into the convolutions."""
from __future__ import annotations

from mmengine.hooks import EMAHook
from mmseg.registry import HOOKS

from ...models.utils import fuse_conv_bn
from .inference_only_hook import InferenceOnlyHook


@HOOKS.register_module()
class FuseConvBNHook(InferenceOnlyHook):
    """Fold the model's BatchNorms into their convolutions
    (:func:`~mmseg_ptx.models.utils.fuse_conv_bn`) before testing.

    For ``tools/test.py``-style runs: ``tools/test.py ... --fuse-conv-bn``
    adds it, or add ``custom_hooks = [dict(type='FuseConvBNHook')]`` to the
    config. It folds in ``before_test``, after the checkpoint is loaded and
    before :class:`InferenceDtypeHook` casts the weights (its priority is
    higher), so the folding is done on the float32 weights.

    In a run that trains, the hook does nothing (and says so once): the
    folded network could not learn its BatchNorms any more. A run with
    mmengine's ``EMAHook`` is refused: its swap of the averaged weights
    pairs parameters by position.
    """

    priority = 'VERY_HIGH'
    kept_in_training = 'its BatchNorms stay as they are'

    def __init__(self) -> None:
        super().__init__()
        self._folded = False

    def prepare_for_test(self, runner) -> None:
        # EMAHook swaps its averaged weights in and out by position, from
        # a copy it made before the folding: the folded model's parameters
        # (a bias for each convolution, no BatchNorm weights) no longer
        # pair up with them.
        ema = [type(h).__name__ for h in getattr(runner, 'hooks', ())
               if isinstance(h, EMAHook)]
        if ema:
            raise RuntimeError(
                f'FuseConvBNHook (--fuse-conv-bn) cannot fold a model whose '
                f'{ema[0]} swaps its averaged weights in for the test; test '
                'without --fuse-conv-bn')
        folded = fuse_conv_bn(runner.model)
        if folded or not self._folded:
            runner.logger.info(f'FuseConvBNHook: {folded} BatchNorm layers '
                               'folded into their convolutions')
        # A second test of the same runner finds them folded already.
        self._folded = self._folded or folded > 0
