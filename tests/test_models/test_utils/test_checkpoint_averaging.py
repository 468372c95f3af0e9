"""Checkpoint averaging (mmseg_ptx.models.utils.average_checkpoints)."""
from pathlib import Path

import pytest
import torch
from torch import nn

from mmseg_ptx.models.utils import average_checkpoints


def _net(seed: int, dtype=torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)).to(dtype)
    net[1].running_mean.uniform_()
    net[1].running_var.uniform_(0.5, 2)
    return net


def _save(path: Path, net: nn.Module, iteration=None, **meta) -> str:
    """An mmengine-style checkpoint of ``net`` after ``iteration`` steps."""
    state_dict = net.state_dict()
    if iteration is not None:
        state_dict['1.num_batches_tracked'].fill_(iteration)
        meta.update(iter=iteration, epoch=iteration // 10)
    torch.save(dict(meta=meta, state_dict=state_dict,
                    optimizer=dict(state={})), path)
    return str(path)


def test_floating_tensors_are_averaged_and_counters_come_from_the_newest(
        tmp_path):
    nets = [_net(seed) for seed in range(3)]
    # Given out of order (a shell glob sorts epoch_30 before epoch_5): the
    # newest, neither first nor last, is found by its iteration.
    files = [_save(tmp_path / f'{i}.pth', net, iteration=it,
                   dataset_meta=dict(classes=('bg', 'ptx')), run=i)
             for i, (net, it) in enumerate(zip(nets, (100, 300, 200)))]
    seen = []
    checkpoint = average_checkpoints(files, progress=seen.append)
    assert seen == files
    assert set(checkpoint) == {'meta', 'state_dict'}
    state_dict = checkpoint['state_dict']
    assert list(state_dict) == list(nets[0].state_dict())
    for key, value in nets[0].state_dict().items():
        if value.is_floating_point():
            expected = sum(net.state_dict()[key].double()
                           for net in nets) / 3
            assert state_dict[key].dtype == torch.float32
            torch.testing.assert_close(state_dict[key], expected.float(),
                                       rtol=0, atol=0)
    assert state_dict['1.num_batches_tracked'].item() == 300
    meta = checkpoint['meta']
    assert meta['iter'] == 300 and meta['run'] == 1
    assert meta['dataset_meta'] == dict(classes=('bg', 'ptx'))
    assert meta['averaged_from'] == ['0.pth', '1.pth', '2.pth']


def test_without_iterations_the_last_checkpoint_is_the_newest(tmp_path):
    files = [_save(tmp_path / f'{i}.pth', _net(i), run=i) for i in range(2)]
    checkpoint = average_checkpoints(files)
    assert checkpoint['meta']['run'] == 1


def test_dtype_is_kept_and_the_sum_is_float64(tmp_path):
    """bf16 weights come back in bf16; summing in float64 keeps the mean
    of values whose bf16 sum would round."""
    nets = [_net(0, torch.bfloat16), _net(1, torch.bfloat16)]
    with torch.no_grad():
        nets[0][0].bias.fill_(256)
        nets[1][0].bias.fill_(1)  # 257 is not a bf16 number
    files = [_save(tmp_path / f'{i}.pth', net) for i, net in enumerate(nets)]
    bias = average_checkpoints(files)['state_dict']['0.bias']
    assert bias.dtype == torch.bfloat16
    assert torch.all(bias == 128.5)


def test_ddp_prefix_is_dropped(tmp_path):
    net = _net(1)
    plain = _save(tmp_path / 'plain.pth', _net(0))
    wrapped = str(tmp_path / 'ddp.pth')
    torch.save(dict(state_dict={f'module.{k}': v
                                for k, v in net.state_dict().items()}),
               wrapped)
    state_dict = average_checkpoints([plain, wrapped])['state_dict']
    assert list(state_dict) == list(net.state_dict())


@pytest.mark.parametrize('change, message', [
    (lambda sd: sd.pop('0.bias'), 'missing keys 0.bias, unexpected keys '
     'none'),
    (lambda sd: sd.update(extra=torch.zeros(1)), 'missing keys none, '
     'unexpected keys extra'),
    (lambda sd: sd.update({'0.bias': torch.zeros(4)}),
     '0.bias is torch.float32 (4,) there and torch.float32 (3,) here'),
    (lambda sd: sd.update({'0.bias': torch.zeros(3, dtype=torch.float64)}),
     '0.bias is torch.float64 (3,) there and torch.float32 (3,) here'),
    (lambda sd: sd.update(index=sd['index'] + 1),
     'its integer tensor index has other values'),
])
def test_checkpoints_of_other_models_are_refused(tmp_path, change, message):
    state_dicts = [_net(i).state_dict() for i in range(2)]
    for state_dict in state_dicts:
        state_dict['index'] = torch.arange(4)
    change(state_dicts[1])
    files = []
    for i, state_dict in enumerate(state_dicts):
        files.append(str(tmp_path / f'{i}.pth'))
        torch.save(dict(state_dict=state_dict), files[-1])
    with pytest.raises(ValueError) as err:
        average_checkpoints(files)
    assert str(err.value) == (f'{files[1]} is not a checkpoint of the model '
                              f'of {files[0]}: {message}')


def test_the_same_weights_twice_are_refused(tmp_path):
    """Two files of one model (best_dice_epoch_200.pth and epoch_200.pth,
    say) would count it twice."""
    net = _net(0)
    files = [_save(tmp_path / 'best.pth', net),
             _save(tmp_path / 'other.pth', _net(1)),
             _save(tmp_path / 'last.pth', net)]
    with pytest.raises(ValueError, match='Checkpoints .*best.pth and '
                       '.*last.pth hold the same weights'):
        average_checkpoints(files)


@pytest.mark.parametrize('content, message', [
    ({'state_dict': {}}, '{bad} holds no state_dict of weights'),
    ({'state_dict': {'a': 1.0}}, "{bad}: 'a' in its state_dict is a float, "
     'not a tensor'),
])
def test_files_without_weights_are_refused(tmp_path, content, message):
    good = _save(tmp_path / 'good.pth', _net(0))
    bad = str(tmp_path / 'bad.pth')
    torch.save(content, bad)
    with pytest.raises(ValueError) as err:
        average_checkpoints([good, bad])
    assert str(err.value) == message.format(bad=bad)


def test_one_checkpoint_is_refused(tmp_path):
    with pytest.raises(ValueError, match='two or more checkpoints, got 1'):
        average_checkpoints([_save(tmp_path / 'a.pth', _net(0))])
