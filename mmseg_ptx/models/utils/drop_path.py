"""Stochastic depth that torch.compile traces once for every rate."""
from __future__ import annotations

import torch
from mmcv.cnn.bricks.drop import DropPath
from mmseg.registry import MODELS
from torch import Tensor

from ...compat import is_compiling


@MODELS.register_module()
class TensorDropPath(DropPath):
    """:class:`~mmcv.cnn.bricks.DropPath` whose rate is a graph input under
    :func:`torch.compile`.

    mmcv's ``DropPath`` keeps its rate as a Python float, a constant that
    dynamo specialises on. Swin's stochastic depth gives every block its own
    rate, so compiling the blocks one by one (regional compilation) compiles
    each block separately in training: 24 graphs for Swin-B instead of the 8
    distinct ones. Under compilation this module reads the keep probability
    from a non-persistent buffer instead, so blocks that differ only in
    their rate share one graph. Run eagerly it is mmcv's ``drop_path`` with
    the Python float, bit for bit. The buffer is not saved, so
    ``state_dict`` keys are unchanged.

    Args:
        drop_prob (float): Probability of the path to be zeroed.
            Default: 0.1.
    """

    def __init__(self, drop_prob: float = 0.1) -> None:
        super().__init__(drop_prob)
        self.register_buffer(
            'keep_prob', torch.tensor(1.0 - drop_prob), persistent=False)

    @classmethod
    def from_stock(cls, stock: DropPath) -> 'TensorDropPath':
        """A ``TensorDropPath`` with the rate and mode of ``stock``.

        Args:
            stock (DropPath): The module to replace.

        Returns:
            TensorDropPath: A module computing the same function.
        """
        new = cls(stock.drop_prob)
        new.train(stock.training)
        return new

    def forward(self, x: Tensor) -> Tensor:
        if not is_compiling():
            return super().forward(x)
        if not self.training:
            return x
        # mmcv's drop_path with the rate as a tensor (a zero rate keeps
        # every path: floor(1 + U[0, 1)) == 1).
        shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
        keep = torch.rand(shape, dtype=x.dtype, device=x.device)
        keep = (self.keep_prob + keep).floor()
        return x.div(self.keep_prob) * keep
