"""ResumeConsistencyHook: a resumed run's shape against the saved one."""
from types import SimpleNamespace

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
