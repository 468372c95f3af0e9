"""Strict checkpoint loading (mmseg_ptx.models.utils.checkpoint)."""
import json
import re

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import free_port
from mmengine.runner import load_checkpoint
from mmengine.utils import digit_version

from mmseg_ptx.models.utils import (CheckpointError, load_checkpoint_strict,
                                    load_runner_checkpoints_strictly)


class _Runner:
    """The part of mmengine's Runner that load_runner_checkpoints_strictly
    wraps: ``load_checkpoint`` loads into ``model``, rank-0 checks and
    all, through mmengine's own function."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model

    def load_checkpoint(self, filename, map_location='cpu', strict=False):
        return load_checkpoint(self.model, filename,
                               map_location=map_location, strict=strict)


def _load_on_rank(rank, world_size, port, checkpoint, out_dir):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world_size)
    try:
        runner = _Runner(torch.nn.Linear(2, 1))
        load_runner_checkpoints_strictly(runner)
        try:
            runner.load_checkpoint(checkpoint)
            outcome = 'loaded'
        except Exception as err:
            outcome = f'{type(err).__name__}: {err}'
        with open(f'{out_dir}/rank{rank}.json', 'w') as f:
            json.dump(outcome, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(240, method='thread')
def test_every_rank_stops_on_a_mismatch(tmp_path):
    """mmengine raises its strict-loading error on rank 0 only: rank 1
    would go on with random weights (and later wait for rank 0 at a
    collective). Each rank must stop, and say why."""
    good, bad = tmp_path / 'good.pth', tmp_path / 'bad.pth'
    torch.save({'state_dict': torch.nn.Linear(2, 1).state_dict()}, good)
    torch.save({'state_dict': torch.nn.Linear(3, 1).state_dict()}, bad)
    outcomes = {}
    for checkpoint in (good, bad):
        # spawn, not fork: forked children can deadlock in torch's pool.
        mp.spawn(_load_on_rank,
                 args=(2, free_port(), str(checkpoint), str(tmp_path)),
                 nprocs=2)
        outcomes[checkpoint.stem] = [
            json.loads((tmp_path / f'rank{r}.json').read_text())
            for r in range(2)]
    assert outcomes['good'] == ['loaded', 'loaded']
    rank0, rank1 = outcomes['bad']
    assert rank0.startswith(f'CheckpointError: Checkpoint {bad} does not fit '
                            'the model (Linear)'), rank0
    assert 'size mismatch for weight' in rank0
    assert rank1 == (f'RuntimeError: Checkpoint {bad} could not be loaded '
                     'on another process (its error says why); this one '
                     'stops too')


def test_single_process_mismatch_and_match(tmp_path):
    model = torch.nn.Linear(2, 1)
    path = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 3}},
               path)
    other = torch.nn.Linear(2, 1)
    assert load_checkpoint_strict(other, str(path))['meta'] == {'epoch': 3}
    assert torch.equal(other.weight, model.weight)
    with pytest.raises(ValueError, match='missing keys in source'):
        load_checkpoint_strict(torch.nn.Sequential(model), str(path))


class Unlisted:
    """A class torch.load(weights_only=True) does not allow."""


def test_a_file_that_is_no_checkpoint_is_named(tmp_path, monkeypatch):
    """torch's own errors name neither the file nor the problem (a cut
    zip archive: 'failed finding central directory'; a CSV: 'Weights
    only load failed ... weights_only=False will likely succeed', or
    before torch 2.6 'could not convert string to int')."""
    import pickle
    import zipfile
    good = tmp_path / 'good.pth'
    torch.save({'state_dict': torch.nn.Linear(2, 1).state_dict()}, good)
    data = good.read_bytes()
    other_zip = tmp_path / 'other.zip'
    with zipfile.ZipFile(other_zip, 'w') as archive:
        archive.writestr('notes.txt', 'not a checkpoint')
    cases = {
        'empty.pth': (b'', 'the file is empty$'),
        'cut.pth': (data[:len(data) // 2],
                    r'a zip archive cut short \(an interrupted save or '
                    r'copy\?\)'),
        'other.pth': (other_zip.read_bytes(),
                      'not a complete PyTorch checkpoint'),
        'labels.csv': (b'ImageId,EncodedPixels\n1.2.3,-1\n',
                       r'not a PyTorch checkpoint \(neither a zip archive '
                       r'nor a pickle\)'),
        'plain.pkl': (pickle.dumps({'a': 1}, protocol=4),
                      '(a pickle, but )?not a PyTorch checkpoint'),
    }
    load = torch.load
    # As before torch 2.6 too, where torch.load unpickles anything.
    for weights_only in (None, False):
        if weights_only is False:
            monkeypatch.setattr(
                torch, 'load', lambda *args, **kwargs: load(
                    *args, **dict(kwargs, weights_only=False)))
        for name, (content, why) in cases.items():
            path = tmp_path / name
            path.write_bytes(content)
            with pytest.raises(CheckpointError,
                               match=f'^{re.escape(f"Checkpoint {path}")} '
                               f'could not be read: {why}'):
                load_checkpoint_strict(torch.nn.Linear(2, 1), str(path))
    monkeypatch.undo()
    # A real checkpoint that holds another class's object keeps torch's
    # advice on allowing it (torch >= 2.6 loads with weights_only=True).
    if digit_version(torch.__version__) < digit_version('2.6'):
        return
    custom = tmp_path / 'custom.pth'
    torch.save({'state_dict': {}, 'extra': Unlisted()}, custom)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint_strict(torch.nn.Linear(2, 1), str(custom))
    assert str(refused.value).startswith(f'Checkpoint {custom} could not')
    assert 'add_safe_globals' in str(refused.value)


def test_init_model_strict_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    """mmseg's init_model loads non-strictly: reporting's pictures would
    show the predictions of random weights."""
    from tiny_model import build_tiny_model, save_tiny_checkpoint

    from conftest import TINY_CONFIG
    from mmseg_ptx.models.utils import init_model_strict
    model = build_tiny_model()
    state = model.state_dict()
    good = save_tiny_checkpoint(model, tmp_path / 'tiny.pth')
    loaded = init_model_strict(str(TINY_CONFIG), str(good), 'cpu')
    assert not loaded.training
    assert loaded.dataset_meta['classes'] == ('background', 'pneumothorax')
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    other_width = dict(state, **{
        'decode_head.conv_seg.weight': torch.zeros(2, 7, 1, 1)})
    no_head = {k: v for k, v in state.items()
               if not k.startswith('decode_head.')}
    for name, state_dict, detail in [
            ('other_width.pth', other_width,
             'size mismatch for decode_head.conv_seg.weight'),
            ('no_head.pth', no_head,
             'missing keys in source state_dict: decode_head.')]:
        path = tmp_path / name
        torch.save({'state_dict': state_dict}, path)
        with pytest.raises(ValueError) as info:
            init_model_strict(str(TINY_CONFIG), str(path), 'cpu')
        message = str(info.value)
        assert message.startswith(f'Checkpoint {path} does not fit the '
                                  'model (EncoderDecoder)'), message
        assert detail in message
