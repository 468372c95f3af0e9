"""tools/average_checkpoints.py."""
import os

import pytest
import torch
from conftest import PYTHON, run_tool
from tiny_model import build_tiny_model, save_tiny_checkpoint

from mmseg_ptx.models.utils import load_checkpoint_strict


def test_the_average_loads_into_the_model(tmp_path):
    models = [build_tiny_model(seed) for seed in range(2)]
    files = [save_tiny_checkpoint(model, tmp_path / f'epoch_{i}.pth')
             for i, model in enumerate(models)]
    out = tmp_path / 'averaged' / 'mean.pth'
    # A user's file by the name a fixed temporary name would have taken.
    out.parent.mkdir()
    (out.parent / 'mean.pth.partial').write_text('my notes')
    proc = run_tool([PYTHON, 'tools/average_checkpoints.py', *map(str, files),
                     '--out', str(out)])
    assert f'Averaged 2 checkpoints into {out}' in proc.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == [
        'mean.pth', 'mean.pth.partial']
    assert (out.parent / 'mean.pth.partial').read_text() == 'my notes'
    model = build_tiny_model(seed=5)
    meta = load_checkpoint_strict(model, str(out))['meta']
    assert meta['averaged_from'] == ['epoch_0.pth', 'epoch_1.pth']
    assert meta['dataset_meta']['classes'] == ('background', 'pneumothorax')
    weights = [m.state_dict() for m in models]
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(
                value, (weights[0][key] + weights[1][key]) / 2)


def test_usage_errors(tmp_path, tool_main):
    files = [save_tiny_checkpoint(torch.nn.Linear(2, n), tmp_path / f'{n}.pt')
             for n in (1, 2)]
    taken = tmp_path / 'taken.pth'
    taken.write_text('a user file')
    out = str(tmp_path / 'out.pth')
    for args, message in [
        # Before the checkpoints load, not when the average is saved.
        ((*files, '--out', taken / 'out.pth'),
         f'--out {taken / "out.pth"}: {taken} is a file, not a folder'),
        ((files[0], '--out', out), 'give two or more checkpoints'),
        ((files[0], tmp_path / 'none.pth', '--out', out),
         f'Checkpoint file not found: {tmp_path / "none.pth"}'),
        ((*files, '--out', taken),
         f'--out {taken} exists; choose a new file name'),
        ((files[0], files[0], '--out', out),
         f'Checkpoints {files[0]} and {files[0]} hold the same weights'),
        ((*files, '--out', out),
         f'{files[1]} is not a checkpoint of the model of {files[0]}: '
         'weight is torch.float32 (2, 2) there'),
    ]:
        status, _, err = tool_main('average_checkpoints', *args)
        assert status == 2, err
        assert f'error: {message}' in err
        assert 'Traceback' not in err
    assert taken.read_text() == 'a user file'
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        '1.pt', '2.pt', 'taken.pth']


def test_an_interrupted_save_leaves_no_checkpoint(tmp_path, tool_main,
                                                  monkeypatch):
    """Written under a temporary name and renamed: a save stopped half way
    leaves no truncated checkpoint under the name asked for, nor the
    temporary file; the folder of --out is made."""
    files = [save_tiny_checkpoint(torch.nn.Linear(2, 1), tmp_path / f'{n}.pt')
             for n in (1, 2)]
    real_save = torch.save

    def killed_save(obj, path, *args, **kwargs):
        with open(path, 'wb') as f:
            f.write(b'half a checkpoint')
        raise KeyError('stopped')  # not OSError: past the tool's handlers

    monkeypatch.setattr(torch, 'save', killed_save)
    out = tmp_path / 'new' / 'avg.pth'
    with pytest.raises(KeyError, match='stopped'):
        tool_main('average_checkpoints', *files, '--out', out)
    assert os.listdir(out.parent) == []
    monkeypatch.setattr(torch, 'save', real_save)
    status, _, err = tool_main('average_checkpoints', *files, '--out', out)
    assert status == 0, err
    assert os.listdir(out.parent) == ['avg.pth']
