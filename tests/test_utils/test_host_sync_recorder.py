"""HostSyncRecorder: the operations that make the host wait for a GPU,
found on the CPU."""
import pytest
import torch

from mmseg_ptx.utils import AsyncReadback, HostSyncRecorder, mark_host_copy

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='needs CUDA')


def ops(recorder):
    return sorted(op for op, _ in recorder.counts.elements())


def test_records_reads_of_device_values_with_their_line():
    x = torch.randn(16)
    with HostSyncRecorder() as syncs:
        x.sum().item()
        if (x > 0).any():
            pass
        x[x > 0]
        torch.nonzero(x)
        torch.unique(x.round())
        x[x > 0] = 0.0
    assert ops(syncs) == sorted([
        '_local_scalar_dense', '_local_scalar_dense', 'index', 'nonzero',
        '_unique2', 'index_put_'
    ])
    assert all('test_host_sync_recorder.py' in where
               for _, where in syncs.counts), syncs.report()
    assert syncs.total == 6
    lines = syncs.report().splitlines()
    assert len(lines) == 6  # one per (operator, line)
    assert lines[0].split()[:2] == ['1', '_local_scalar_dense']


def test_every_operator_whose_output_size_is_read_is_recorded():
    # Each sizes its output by the values of its input, which a GPU must
    # send to the host first.
    x, i = torch.randn(8), torch.tensor([0, 2, 1])
    mask = x > 0
    calls = {
        'masked_select': lambda: x.masked_select(mask),
        'index_put': lambda: x.index_put((mask, ), torch.tensor(0.0)),
        'bincount': lambda: i.bincount(),
        'unique_consecutive': lambda: i.unique_consecutive(),
        'repeat_interleave': lambda: torch.repeat_interleave(x[:3], i),
        'equal': lambda: torch.equal(x, x),
        'allclose': lambda: torch.allclose(x, x),
        'is_nonzero': lambda: bool(x[:1]),
    }
    for name, call in calls.items():
        with HostSyncRecorder() as syncs:
            call()
        assert syncs.total >= 1, name


def test_device_work_without_reads_records_nothing():
    x = torch.randn(4, 8, requires_grad=True)
    with HostSyncRecorder() as syncs:
        y = torch.where(x > 0, x, 0.5) @ x.t()
        y = y.softmax(-1).index_select(0, torch.arange(2))
        y = y + x.new_full((), 2.0) + x.new_zeros(())
        y.sum().backward()
    assert syncs.total == 0, syncs.report()
    assert syncs.report() == 'no host syncs'


def test_reads_into_python_or_numpy_count_as_copies_to_the_host():
    """On a GPU, .tolist(), .numpy() (after .cpu()) and .cpu() copy to the
    host and wait; the host copies AsyncReadback hands back do not."""
    x = torch.randn(4)
    readback = AsyncReadback()
    readback.push(x.sum().reshape(1))
    with HostSyncRecorder() as syncs:
        x.tolist()
        x.numpy()
        x[:2].cpu()
        for host, _ in readback.poll():
            host.tolist()
            host.numpy()
            host[0].tolist()  # a view of it
            [row.tolist() for row in host]
        mark_host_copy(x.clone()).tolist()
    assert ops(syncs) == ['cpu (host read)', 'numpy (host read)',
                          'tolist (host read)'], syncs.report()
    # In a GPU run (cpu_as_device=False) host tensors are read freely.
    with HostSyncRecorder(cpu_as_device=False) as syncs:
        x.tolist()
        x.numpy()
    assert syncs.total == 0


def test_tensors_made_from_host_data_for_a_device():
    x = torch.randn(3)
    with HostSyncRecorder() as syncs:
        x.new_tensor([1.0, 2.0])
        torch.tensor([1.0], device=x.device)
        torch.as_tensor([1.0], device=x.device)
        torch.tensor([1.0])  # a host tensor: no copy to a device
    assert ops(syncs) == ['as_tensor (host data)', 'new_tensor (host data)',
                          'tensor (host data)']


def test_on_a_gpu_run_only_device_tensors_count():
    """'meta' stands in for a device: reading it fails after the record."""
    host = torch.randn(3)
    with HostSyncRecorder(cpu_as_device=False) as syncs:
        host.sum().item()  # e.g. a non-fused AdamW's step counter
        host.new_tensor([1.0])
        on_device = host.to('meta')  # blocking host-to-device copy
        host.to('meta', non_blocking=True)
        on_device.new_tensor([1.0])
        with pytest.raises(Exception):
            on_device.sum().item()
    assert ops(syncs) == ['_local_scalar_dense', '_to_copy',
                          'new_tensor (host data)']


@needs_cuda
def test_cuda_reads_and_copies():
    x = torch.randn(8, device='cuda')
    pinned = torch.empty(8, pin_memory=True)
    with HostSyncRecorder(cpu_as_device=False) as syncs:
        x.sum().item()
        x.cpu()
        torch.zeros(8).cuda()
        pinned.copy_(x, non_blocking=True)  # no wait
        torch.zeros(8).pin_memory().to('cuda', non_blocking=True)  # no wait
        torch.empty(8).copy_(x, non_blocking=True)  # pageable: waits
    assert ops(syncs) == ['_local_scalar_dense', '_to_copy', '_to_copy',
                          'copy_'], syncs.report()


def test_optimizer_step_counters_on_the_host_are_not_counted():
    """Non-fused AdamW reads its step counters with .item(); they stay on
    the host in a GPU run too. Fused AdamW keeps them on the device and
    reads nothing."""
    for fused in (False, True):
        param = torch.nn.Parameter(torch.randn(4))
        param.grad = torch.randn(4)
        optimizer = torch.optim.AdamW([param], fused=fused)
        with HostSyncRecorder() as syncs:
            optimizer.step()
            optimizer.step()
        assert syncs.total == 0, (fused, syncs.report())


def test_operators_without_arguments():
    with HostSyncRecorder() as syncs:
        torch.ops.aten._make_dep_token.default()
    assert syncs.total == 0
