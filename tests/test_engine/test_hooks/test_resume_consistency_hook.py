"""ResumeConsistencyHook: a resumed run's shape against the saved one."""
import logging
from types import SimpleNamespace

import pytest
import torch
from mmengine.model import BaseModel

import mmseg_ptx  # noqa: F401  (registers the hook)
from mmseg.registry import HOOKS
from mmseg_ptx.engine.hooks import resume_consistency_hook
from mmseg_ptx.engine.hooks.resume_consistency_hook import (shape_difference,
                                                            train_shape)


class Dataset(list):

    def get_data_info(self, index):
        return self[index]


class Loader:
    """What the hook reads of a data loader: batch size, data set and
    length in batches."""

    def __init__(self, batch_size, ids):
        self.batch_size = batch_size
        self.dataset = Dataset(dict(image_id=i) for i in ids)

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)


def training_runner(batch_size, ids, resume=True):
    return SimpleNamespace(_train_loop=SimpleNamespace(), _resume=resume,
                           train_dataloader=Loader(batch_size, ids))


def test_train_shape_records_the_world_size(monkeypatch):
    """A resume on another GPU count is warned about: the shape holds the
    process count."""
    monkeypatch.setattr(resume_consistency_hook, 'get_world_size', lambda: 3)
    assert train_shape(training_runner(2, ['a']))['world_size'] == 3


def test_train_shape_and_its_differences():
    shape = train_shape(training_runner(2, ['a', 'b', 'c']))
    assert {k: v for k, v in shape.items() if k != 'train_ids_sha256'} == \
        dict(world_size=1, batch_size=2, iters_per_epoch=2)
    assert shape_difference(shape, shape) is None
    other = train_shape(training_runner(4, ['a', 'b', 'd']))
    assert shape_difference(shape, other) == (
        'other batch size per process (2, now 4), iterations per epoch (2, '
        'now 1), training images')
    # Entries one side lacks (an older record) are not compared.
    assert shape_difference(dict(batch_size=2), dict(world_size=3)) is None


def test_warns_on_resume_only(monkeypatch):
    hook = HOOKS.build(dict(type='ResumeConsistencyHook'))
    checkpoint = {}
    hook.before_save_checkpoint(training_runner(2, ['a', 'b']), checkpoint)
    assert checkpoint['meta']['train_shape']['batch_size'] == 2
    logged = []
    monkeypatch.setattr(resume_consistency_hook, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    hook.after_load_checkpoint(training_runner(2, ['a', 'b']), checkpoint)
    assert logged == []
    # load_from: a new run may change anything.
    hook.after_load_checkpoint(
        training_runner(1, ['a', 'b'], resume=False), checkpoint)
    assert logged == []
    hook.after_load_checkpoint(training_runner(1, ['a', 'b']), checkpoint)
    (message, ) = logged
    assert message.startswith('Resuming with other batch size per process '
                              '(2, now 1), iterations per epoch (1, now 2) '
                              'than the checkpoint was trained with')
    # A checkpoint saved without the hook is not checked.
    hook.after_load_checkpoint(training_runner(1, ['a']), {'meta': {}})
    assert len(logged) == 1


class SeededLoader(Loader):
    """A loader whose sampler draws from a seed, as ClassBalancedSampler
    and mmengine's DefaultSampler do."""

    def __init__(self, seed):
        super().__init__(2, ['a', 'b'])
        self.sampler = SimpleNamespace(seed=seed)


def resumed_runner(loader, sampler_cfg_seed=None, resume=True):
    cfg = dict(train_dataloader=dict(
        sampler=dict(type='ClassBalancedSampler', seed=sampler_cfg_seed)))
    return SimpleNamespace(_resume=resume, train_dataloader=loader, cfg=cfg)


@pytest.mark.parametrize('configured', [None, 7])
def test_the_sampler_seed_is_resumed(monkeypatch, configured):
    """mmengine builds the sampler before it resumes the global seed: a
    requeued run without a fixed seed drew other images after the resume
    (a new random seed); the checkpoint's seed comes back, with a warning
    where the config set another."""
    hook = HOOKS.build(dict(type='ResumeConsistencyHook'))
    saved = SimpleNamespace(_train_loop=SimpleNamespace(),
                            train_dataloader=SeededLoader(1234))
    checkpoint = {}
    hook.before_save_checkpoint(saved, checkpoint)
    assert checkpoint['meta']['sampler_seed'] == 1234
    logged = []
    monkeypatch.setattr(
        resume_consistency_hook, 'print_log',
        lambda message, **kwargs: logged.append((message, kwargs['level'])))
    loader = SeededLoader(configured or 98765)
    # load_from: a new run keeps its own seed.
    hook.after_load_checkpoint(
        resumed_runner(loader, configured, resume=False), checkpoint)
    assert loader.sampler.seed == (configured or 98765) and not logged
    hook.after_load_checkpoint(resumed_runner(loader, configured), checkpoint)
    assert loader.sampler.seed == 1234
    (message, level), = logged
    assert message.startswith(
        "Resumed the training sampler's seed 1234 from the checkpoint (this "
        f"run's was {configured or 98765}"
        + (', set in the config)' if configured else ')'))
    assert level == (logging.WARNING if configured else logging.INFO)
    # The same seed, or a checkpoint without one: nothing to say.
    hook.after_load_checkpoint(resumed_runner(loader, configured),
                               checkpoint)
    hook.after_load_checkpoint(resumed_runner(SeededLoader(5)), {'meta': {}})
    assert len(logged) == 1
    # A loader whose sampler has no seed (the sampler type changed since the
    # checkpoint, say): nothing to give back.
    seedless = SeededLoader(None)
    hook.after_load_checkpoint(resumed_runner(seedless), checkpoint)
    seedless.sampler = None
    hook.after_load_checkpoint(resumed_runner(seedless), checkpoint)
    assert len(logged) == 1


class IndexDataset(torch.utils.data.Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, index):
        return dict(inputs=torch.tensor([float(index)]), index=index)


class RecordingModel(BaseModel):
    """Records the indices of each training batch."""

    def __init__(self, batches):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)
        self.batches = batches

    def forward(self, inputs, index=None, mode='tensor'):
        if mode == 'loss':
            self.batches.append([int(i) for i in index])
            return dict(loss=self.linear(inputs).mean())
        return self.linear(inputs)


def train_iters(work_dir, max_iters, seed, resume_from=None):
    """The training batches of an iteration-based run (InfiniteSampler,
    two worker processes, its seed drawn from the run's), checkpoints every
    4 iterations."""
    from mmengine.runner import Runner

    from conftest import process_state_kept
    batches = []
    with process_state_kept():
        Runner(
            model=RecordingModel(batches),
            work_dir=str(work_dir),
            train_dataloader=dict(
                dataset=IndexDataset(),
                sampler=dict(type='InfiniteSampler', shuffle=True),
                batch_size=4, num_workers=2,
                collate_fn=dict(type='default_collate')),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
            train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
            default_hooks=dict(checkpoint=dict(
                type='CheckpointHook', interval=4, by_epoch=False)),
            custom_hooks=[dict(type='ResumeConsistencyHook')],
            resume=resume_from is not None, load_from=resume_from,
            randomness=dict(seed=seed), default_scope='mmseg',
            log_level='WARNING').train()
    return batches


def test_an_iteration_based_resume_draws_what_the_stopped_run_would(
        tmp_path):
    """IterBasedTrainLoop makes its data iterator, and its worker
    processes draw ahead, before the checkpoint is loaded: the iterator is
    made again with the resumed seed. (The requeued run's own seed differs,
    as an unset one would.)"""
    whole = train_iters(tmp_path / 'a', 12, seed=1)
    resumed = train_iters(tmp_path / 'b', 12, seed=2,
                          resume_from=str(tmp_path / 'a' / 'iter_4.pth'))
    assert len(resumed) == 8
    assert resumed == whole[4:]
