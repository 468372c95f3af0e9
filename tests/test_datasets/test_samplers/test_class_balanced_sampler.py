from collections import Counter
from unittest import mock

import pytest
import torch
from mmengine.registry import DefaultScope
from mmengine.runner import Runner

import mmseg_ptx  # noqa: F401  (registers the sampler)
from mmseg.registry import DATA_SAMPLERS
from mmseg_ptx.datasets import ClassBalancedSampler


class FakeDataset:
    """Minimal dataset: data infos with a ``has_pneumothorax`` flag."""

    def __init__(self, flags, key='has_pneumothorax'):
        self.flags = list(flags)
        self.key = key
        self.calls = 0

    def __len__(self):
        return len(self.flags)

    def get_data_info(self, idx):
        self.calls += 1
        return {'img_path': f'img_{idx}.png', self.key: self.flags[idx]}

    def __getitem__(self, idx):
        raise AssertionError('the sampler must not load samples')


def make_dataset(num_pos=20, num_neg=80):
    return FakeDataset([True] * num_pos + [False] * num_neg)


def test_positive_share_matches_pos_weight():
    dataset = make_dataset(num_pos=20, num_neg=80)
    pos_weight = 3.0
    sampler = ClassBalancedSampler(
        dataset, pos_weight=pos_weight, num_samples=50_000, seed=0,
        rank=0, world_size=1)
    draw = list(sampler)
    assert len(draw) == 50_000
    share = sum(dataset.flags[i] for i in draw) / len(draw)
    expected = 20 * pos_weight / (20 * pos_weight + 80)  # 0.4286
    # Binomial std is ~0.0022 at 50k draws; 0.01 is > 4 sigma.
    assert abs(share - expected) < 0.01
    # The natural share (0.2) must be clearly rejected.
    assert abs(share - 0.2) > 0.1
    # Within each class, samples are drawn uniformly.
    counts = Counter(draw)
    pos_counts = [counts[i] for i in range(20)]
    assert min(pos_counts) > 0.7 * max(pos_counts)


def test_log_gives_the_positive_share():
    dataset = make_dataset(num_pos=20, num_neg=80)
    target = 'mmseg_ptx.datasets.samplers.class_balanced_sampler.print_log'
    with mock.patch(target) as log:
        ClassBalancedSampler(dataset, pos_weight=3.0, seed=0, rank=0,
                             world_size=1)
    assert ('expected positive share 0.4286 (natural share 0.2000)'
            in log.call_args.args[0])
    with mock.patch(target) as log:
        ClassBalancedSampler(dataset, pos_weight=3.0, replacement=False,
                             num_samples=50, seed=0, rank=0, world_size=1)
    assert ('positive share (without replacement) between 0.4286 and the '
            'natural share 0.2000') in log.call_args.args[0]


def test_pos_weight_one_is_uniform():
    dataset = make_dataset(num_pos=10, num_neg=90)
    sampler = ClassBalancedSampler(
        dataset, pos_weight=1.0, num_samples=40_000, seed=1, world_size=1,
        rank=0)
    share = sum(dataset.flags[i] for i in sampler) / 40_000
    assert abs(share - 0.1) < 0.01


def test_flags_read_once_from_data_info():
    dataset = make_dataset(num_pos=3, num_neg=5)
    sampler = ClassBalancedSampler(dataset, seed=0, rank=0, world_size=1)
    assert sampler.positive_flags.tolist() == dataset.flags
    calls = dataset.calls
    assert calls == len(dataset)
    list(sampler)
    sampler.set_epoch(1)
    list(sampler)
    assert dataset.calls == calls


def test_deterministic_for_seed_and_epoch():
    dataset = make_dataset()
    a = ClassBalancedSampler(dataset, seed=7, rank=0, world_size=1)
    b = ClassBalancedSampler(dataset, seed=7, rank=0, world_size=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    # Iterating twice in the same epoch gives the same draw.
    assert list(a) == list(a)
    c = ClassBalancedSampler(dataset, seed=8, rank=0, world_size=1)
    c.set_epoch(3)
    assert list(c) != list(a)


def test_neighbouring_seeds_share_no_epochs():
    """Seeded from seed + epoch, seed 8 would draw at epoch 0 what seed 7
    draws at epoch 1: a seed sweep's runs would share all epochs but one.
    A negative seed draws too."""
    dataset = make_dataset()

    def draws(seed, epochs=4):
        sampler = ClassBalancedSampler(dataset, seed=seed, rank=0,
                                       world_size=1)
        out = []
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            out.append(tuple(sampler))
        return out

    seven, eight = draws(7), draws(8)
    assert not set(seven) & set(eight)
    assert len(set(seven)) == 4
    assert draws(-3, epochs=1) != draws(3, epochs=1)


def test_set_epoch_changes_draw():
    dataset = make_dataset()
    sampler = ClassBalancedSampler(dataset, seed=0, rank=0, world_size=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert first != second
    sampler.set_epoch(0)
    assert list(sampler) == first


@pytest.mark.parametrize('replacement', [True, False])
@pytest.mark.parametrize('num_samples', [97, 61])
def test_ddp_shards_partition_the_epoch_draw(replacement, num_samples):
    dataset = make_dataset(num_pos=20, num_neg=80)
    world_size = 3
    shards = []
    for rank in range(world_size):
        sampler = ClassBalancedSampler(
            dataset, pos_weight=1.5, replacement=replacement,
            num_samples=num_samples, seed=5, rank=rank,
            world_size=world_size)
        sampler.set_epoch(2)
        shards.append(list(sampler))
        assert len(sampler) == len(shards[-1])
    per_rank = -(-num_samples // world_size)
    assert [len(s) for s in shards] == [per_rank] * world_size

    single = ClassBalancedSampler(
        dataset, pos_weight=1.5, replacement=replacement,
        num_samples=num_samples, seed=5, rank=0, world_size=1)
    single.set_epoch(2)
    draw = list(single)
    assert len(draw) == num_samples

    # Interleave the shards (rank r holds positions r, r + 3, ...): that
    # is the epoch draw, padded by wrapping around to a multiple of 3.
    interleaved = [shards[pos % world_size][pos // world_size]
                   for pos in range(per_rank * world_size)]
    padded = (draw * 2)[:per_rank * world_size]
    assert interleaved == padded
    if not replacement:
        # Each index appears at most once in the draw, so the shards are
        # disjoint as sets too (except for the wrap-around padding).
        assert len(set(interleaved[:num_samples])) == num_samples


def test_without_replacement_has_no_duplicates():
    dataset = make_dataset(num_pos=20, num_neg=80)
    sampler = ClassBalancedSampler(
        dataset, pos_weight=1.0, replacement=False, seed=0, rank=0,
        world_size=1)
    draw = list(sampler)
    assert sorted(draw) == list(range(100))
    # The whole dataset without replacement is a permutation: a pos_weight
    # would change nothing but the order.
    with pytest.raises(ValueError, match='change only the order'):
        ClassBalancedSampler(
            dataset, replacement=False, seed=0, rank=0, world_size=1)
    sampler = ClassBalancedSampler(
        dataset, pos_weight=20.0, replacement=False, num_samples=30, seed=0,
        rank=0, world_size=1)
    draw = list(sampler)
    assert len(draw) == len(set(draw)) == 30
    # Positives are strongly favoured: most of the 20 are in the draw.
    assert sum(dataset.flags[i] for i in draw) >= 15
    with pytest.raises(ValueError, match='num_samples=101'):
        ClassBalancedSampler(
            dataset, replacement=False, num_samples=101, seed=0, rank=0,
            world_size=1)


def test_build_through_registry():
    dataset = make_dataset()
    sampler = DATA_SAMPLERS.build(
        dict(type='ClassBalancedSampler', dataset=dataset, seed=0))
    assert isinstance(sampler, ClassBalancedSampler)
    # Not distributed here: rank 0 of 1 and the whole draw.
    assert (sampler.rank, sampler.world_size) == (0, 1)
    assert len(sampler) == len(dataset) == len(list(sampler))
    assert sampler.pos_weight == 1.5


def test_built_by_mmengine_runner_dataloader():
    # The path a config takes: Runner.build_dataloader with the mmseg
    # scope, passing dataset= and the runner's seed as default arguments.
    dataset = make_dataset(num_pos=4, num_neg=6)
    with DefaultScope.overwrite_default_scope('mmseg'):
        loader = Runner.build_dataloader(
            dict(dataset=dataset, batch_size=2, num_workers=0,
                 sampler=dict(type='ClassBalancedSampler', pos_weight=2.0)),
            seed=3)
    assert isinstance(loader.sampler, ClassBalancedSampler)
    assert loader.sampler.seed == 3
    assert loader.sampler.pos_weight == 2.0


def test_seed_none_uses_synced_seed(monkeypatch):
    """Without a seed every rank takes rank 0's random one (mmengine's
    sync_random_seed), so the ranks shard the same permutation."""
    from mmseg_ptx.datasets.samplers import class_balanced_sampler
    monkeypatch.setattr(class_balanced_sampler, 'sync_random_seed',
                        lambda: 12345)
    sampler = ClassBalancedSampler(make_dataset(), rank=0, world_size=1)
    assert sampler.seed == 12345
    assert list(sampler) == list(
        ClassBalancedSampler(make_dataset(), rank=0, world_size=1,
                             seed=12345))


def test_missing_key_error_names_key_and_dataset():
    dataset = FakeDataset([True, False], key='label')
    with pytest.raises(KeyError, match="has_pneumothorax.*FakeDataset"):
        ClassBalancedSampler(dataset, seed=0)


def test_ambiguous_flag_is_rejected():
    dataset = FakeDataset([True, 'masks/a.png'])
    with pytest.raises(ValueError, match='must be a bool'):
        ClassBalancedSampler(dataset, seed=0)


@pytest.mark.parametrize('pos_weight', [0, -1.0, float('nan')])
def test_bad_pos_weight(pos_weight):
    with pytest.raises(ValueError, match='pos_weight'):
        ClassBalancedSampler(make_dataset(), pos_weight=pos_weight, seed=0)


def test_bad_num_samples_and_rank():
    with pytest.raises(ValueError, match='num_samples'):
        ClassBalancedSampler(make_dataset(), num_samples=0, seed=0)
    with pytest.raises(ValueError, match='rank'):
        ClassBalancedSampler(make_dataset(), seed=0, rank=3, world_size=3)


def test_works_in_a_dataloader():
    dataset = make_dataset(num_pos=4, num_neg=6)
    sampler = ClassBalancedSampler(dataset, seed=0, rank=1, world_size=2)
    loader = torch.utils.data.DataLoader(
        list(range(10)), batch_size=2, sampler=sampler)
    batches = list(loader)
    assert sum(len(b) for b in batches) == len(sampler) == 5
