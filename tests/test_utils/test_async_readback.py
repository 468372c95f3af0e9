"""AsyncReadback: small device tensors read back without waiting."""
import copy
import pickle

import pytest
import torch

from mmseg_ptx.utils import AsyncReadback, HostSyncRecorder


def test_cpu_values_are_ready_at_once_in_order():
    readback = AsyncReadback()
    readback.push(torch.tensor([1, 2]), 'first')
    readback.push(torch.tensor(3.5, requires_grad=True) * 1, 'second')
    assert len(readback) == 2
    ready = readback.poll()
    assert [(v.tolist(), c) for v, c in ready] == [([1, 2], 'first'),
                                                   (3.5, 'second')]
    assert not ready[1][0].requires_grad
    assert len(readback) == 0 and readback.poll() == []


def test_drain_hands_back_everything():
    readback = AsyncReadback()
    for i in range(3):
        readback.push(torch.tensor(i), i)
    assert [c for _, c in readback.drain()] == [0, 1, 2]
    assert readback.drain() == []


def test_drain_can_keep_the_newest():
    readback = AsyncReadback()
    for i in range(4):
        readback.push(torch.tensor(i), i)
    assert [c for _, c in readback.drain(keep=3)] == [0]
    assert readback.drain(keep=3) == []
    assert [c for _, c in readback.drain(keep=1)] == [1, 2]
    assert [c for _, c in readback.poll()] == [3]
    with pytest.raises(ValueError, match='keep'):
        readback.drain(keep=-1)


def test_copies_start_empty():
    readback = AsyncReadback()
    readback.push(torch.tensor(1))
    for clone in (copy.deepcopy(readback),
                  pickle.loads(pickle.dumps(readback))):
        assert len(clone) == 0
        clone.push(torch.tensor(2), 'x')
        assert clone.poll()[0][1] == 'x'
    assert len(readback) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_push_and_poll_do_not_wait():
    readback = AsyncReadback()
    x = torch.randn(1000, 1000, device='cuda')
    with HostSyncRecorder(cpu_as_device=False) as syncs:
        for i in range(3):
            x = x @ x / 1000  # keep the GPU busy
            readback.push(x[0, :2], i)
        ready = readback.poll()
    assert syncs.total == 0, syncs.report()
    ready += readback.drain()
    assert [c for _, c in ready] == [0, 1, 2]
    assert ready[-1][0].tolist() == x[0, :2].tolist()
    assert ready[-1][0].is_pinned()
