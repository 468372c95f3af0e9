"""Positive-oversampling sampler that keeps working under DDP."""
from __future__ import annotations

import math
import numbers
from typing import Iterator, Optional, Sized

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import print_log
from torch.utils.data import Sampler

from mmseg.registry import DATA_SAMPLERS

__all__ = ['ClassBalancedSampler']

#: The data-info key that marks a positive (pneumothorax) sample.
POSITIVE_KEY = 'has_pneumothorax'


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of an epoch's draw: both numbers hashed together
    (numpy's ``SeedSequence``).

    ``seed + epoch`` (mmengine's ``DefaultSampler``) would give seed
    ``s + 1`` the draws of seed ``s`` one epoch later: the runs of a seed
    sweep would share all epochs but one.

    Args:
        seed (int): The sampler's seed; a negative one is taken modulo
            2**64.
        epoch (int): The epoch.

    Returns:
        int: A seed for ``torch.Generator.manual_seed``.
    """
    state = np.random.SeedSequence([seed % 2**64, epoch]).generate_state(
        1, dtype=np.uint64)
    return int(state[0])


@DATA_SAMPLERS.register_module()
class ClassBalancedSampler(Sampler):
    """Draw positive samples ``pos_weight`` times as often as negatives.

    The reference run meant to oversample positives with PyTorch's
    ``WeightedRandomSampler``, but on several GPUs it was silently replaced
    by a plain ``DistributedSampler``. This sampler does the weighted draw
    itself and then shards it: each epoch, every rank draws the SAME
    ``num_samples`` indices from a generator seeded from ``(seed, epoch)``,
    pads the draw to a multiple of the world size by wrapping around (like
    ``DistributedSampler``), and keeps positions ``rank::world_size``. The
    shards are therefore disjoint in positions, equal in length, and
    together form the epoch's draw.

    A sample is positive when ``dataset.get_data_info(i)['has_pneumothorax']``
    is true. The flags are read once at construction from the data infos
    (no image or mask is loaded and no pipeline runs). With ``p`` positives
    and ``n`` negatives the expected positive share of a draw with
    replacement is ``p * pos_weight / (p * pos_weight + n)``. Without
    replacement it lies between that and the natural share ``p / (p + n)``,
    nearer the natural share the more of the dataset an epoch draws; a draw
    of the whole dataset is a permutation (an error unless
    ``pos_weight == 1``).

    Args:
        dataset (Sized): The dataset. It must implement ``get_data_info``
            whose dicts contain the boolean key ``has_pneumothorax``.
        pos_weight (float): Sampling weight of a positive sample relative to
            a negative one (weight 1.0). Must be > 0. Defaults to 1.5.
        replacement (bool): Draw with replacement (``torch.multinomial``,
            as ``WeightedRandomSampler``). If False, a weighted draw
            without replacement: no index appears twice in an epoch and
            ``num_samples`` must be below ``len(dataset)`` (equal only with
            ``pos_weight == 1``). Defaults to True.
        num_samples (int, optional): Number of indices drawn per epoch over
            all ranks (before padding). Defaults to None, meaning
            ``len(dataset)``.
        seed (int, optional): Random seed; must be the same on all ranks.
            Defaults to None, meaning ``mmengine.dist.sync_random_seed()``
            (rank 0's random seed broadcast to all ranks), as mmengine's
            ``DefaultSampler`` does.
        rank (int, optional): Rank of this process. Defaults to None,
            meaning ``mmengine.dist.get_dist_info()``.
        world_size (int, optional): Number of processes. Defaults to None,
            meaning ``mmengine.dist.get_dist_info()``.
    """

    def __init__(self,
                 dataset: Sized,
                 pos_weight: float = 1.5,
                 replacement: bool = True,
                 num_samples: Optional[int] = None,
                 seed: Optional[int] = None,
                 rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        if (not isinstance(pos_weight, numbers.Real)
                or not math.isfinite(pos_weight) or pos_weight <= 0):
            raise ValueError(
                f'pos_weight must be a finite number > 0, got {pos_weight!r}')
        dataset_len = len(dataset)
        if dataset_len == 0:
            raise ValueError(
                f'ClassBalancedSampler got an empty dataset '
                f'({type(dataset).__name__}).')
        if num_samples is None:
            num_samples = dataset_len
        if (isinstance(num_samples, bool)
                or not isinstance(num_samples, numbers.Integral)
                or num_samples <= 0):
            raise ValueError(
                f'num_samples must be a positive integer, got {num_samples!r}')
        if not replacement and num_samples > dataset_len:
            raise ValueError(
                f'num_samples={num_samples} exceeds the dataset length '
                f'{dataset_len}: without replacement each index can be drawn '
                'at most once.')
        if (not replacement and num_samples == dataset_len
                and pos_weight != 1):
            raise ValueError(
                f'replacement=False with num_samples={num_samples}, the '
                'whole dataset, draws every index once per epoch: '
                f'pos_weight={pos_weight:g} would change only the order, not '
                'the positive share. Use replacement=True, or a num_samples '
                'below the dataset length.')

        dist_rank, dist_world_size = get_dist_info()
        rank = dist_rank if rank is None else rank
        world_size = dist_world_size if world_size is None else world_size
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f'Invalid rank {rank} for world_size '
                             f'{world_size}.')

        self.dataset = dataset
        self.pos_weight = float(pos_weight)
        self.replacement = bool(replacement)
        self.num_samples = int(num_samples)
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.total_size = (
            math.ceil(self.num_samples / world_size) * world_size)

        self.positive_flags = self._read_positive_flags(dataset)
        num_pos = int(self.positive_flags.sum())
        num_neg = dataset_len - num_pos
        self.weights = torch.where(
            torch.from_numpy(self.positive_flags),
            torch.tensor(self.pos_weight, dtype=torch.float64),
            torch.tensor(1.0, dtype=torch.float64))
        weighted_share = num_pos * self.pos_weight / (
            num_pos * self.pos_weight + num_neg)
        natural_share = num_pos / dataset_len
        share = (f'expected positive share {weighted_share:.4f} (natural '
                 f'share {natural_share:.4f})' if self.replacement else
                 'positive share (without replacement) between '
                 f'{weighted_share:.4f} and the natural share '
                 f'{natural_share:.4f}')
        print_log(
            f'ClassBalancedSampler: {num_pos} positive and {num_neg} '
            f'negative samples, pos_weight={self.pos_weight:g}; {share}, '
            f'{self.num_samples} draws per epoch, {len(self)} per rank.',
            logger='current')

    @staticmethod
    def _read_positive_flags(dataset: Sized) -> np.ndarray:
        """Read ``has_pneumothorax`` of every sample from its data info."""
        name = type(dataset).__name__
        if not hasattr(dataset, 'get_data_info'):
            raise TypeError(
                f'ClassBalancedSampler needs a dataset with get_data_info() '
                f'returning {POSITIVE_KEY!r}; {name} has no get_data_info.')
        flags = np.zeros(len(dataset), dtype=bool)
        for idx in range(len(dataset)):
            info = dataset.get_data_info(idx)
            if POSITIVE_KEY not in info:
                raise KeyError(
                    f'ClassBalancedSampler needs the key {POSITIVE_KEY!r} in '
                    f'the data info of every sample, but {name}.'
                    f'get_data_info({idx}) has only {sorted(info)}.')
            value = info[POSITIVE_KEY]
            # Only an unambiguous boolean is accepted: a mask path or a
            # pixel count here would mean the key is filled wrongly.
            if isinstance(value, (bool, np.bool_)) or (
                    isinstance(value, numbers.Integral) and value in (0, 1)):
                flags[idx] = bool(value)
            else:
                raise ValueError(
                    f'{name}.get_data_info({idx})[{POSITIVE_KEY!r}] must be '
                    f'a bool (or 0/1), got {value!r}.')
        return flags

    def _epoch_draw(self) -> list:
        """The whole epoch's draw, identical on every rank."""
        generator = torch.Generator()
        generator.manual_seed(epoch_seed(self.seed, self.epoch))
        # Without replacement, multinomial draws successively in proportion
        # to the remaining weights: a weighted random permutation prefix.
        return torch.multinomial(
            self.weights,
            self.num_samples,
            replacement=self.replacement,
            generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        """Iterate over this rank's shard of the epoch's draw."""
        indices = self._epoch_draw()
        # Pad by wrapping around so that every rank gets the same number of
        # indices, as DistributedSampler / DefaultSampler(round_up=True) do.
        repeats = self.total_size // len(indices) + 1
        indices = (indices * repeats)[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.world_size])

    def __len__(self) -> int:
        """Number of indices this rank yields per epoch."""
        return self.total_size // self.world_size

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch so that the next iteration draws anew.

        mmengine's ``DistSamplerSeedHook`` and its iteration-based loop call
        this; the draw depends only on ``seed`` and ``epoch``.

        Args:
            epoch (int): Epoch number.
        """
        self.epoch = epoch
