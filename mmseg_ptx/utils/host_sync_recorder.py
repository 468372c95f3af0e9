"""Find the operations that make the host wait for the device."""
from __future__ import annotations

import collections
import os
import traceback
from typing import Any, Callable, Counter, List, Optional, Tuple

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ['HostSyncRecorder', 'mark_host_copy']

#: Set on tensors that are the host's copies of device values (see
#: :func:`mark_host_copy`).
_HOST_COPY = '_ptx_host_copy'

#: Tensor methods that read a tensor's values into Python or NumPy, or
#: copy them to the host: on a GPU each waits for the device. Of a CPU
#: tensor they are no operator the dispatcher sees.
_HOST_READS = ('tolist', 'numpy', 'cpu')

#: Operators whose result (or output size) the host must read from the
#: device before it can go on: ``.item()``/``bool()``/``int()`` of a
#: tensor (``_local_scalar_dense``), data-dependent output shapes.
_SYNC_OPS = frozenset({
    '_local_scalar_dense', 'is_nonzero', 'equal', 'allclose', 'nonzero',
    'masked_select', 'unique', 'unique_dim', '_unique', '_unique2',
    'unique_consecutive', 'bincount', 'repeat_interleave'
})

# Frames of these packages are skipped in a sync's location, so that it
# names the caller's line rather than torch's internals.
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_THIS_FILE = os.path.abspath(__file__)
_TORCH_OPTIM_DIR = os.path.join(_TORCH_DIR, 'optim') + os.sep


def _has_bool_index(indices: Any) -> bool:
    return any(isinstance(index, torch.Tensor) and index.dtype == torch.bool
               for index in (indices or ()) if index is not None)


def _device_of(value: Any) -> Optional[torch.device]:
    return value.device if isinstance(value, torch.Tensor) else None


def _is_blocking_transfer(name: str, args: tuple, kwargs: dict) -> bool:
    """A copy between the host and a device that the host waits for."""
    if name == '_to_copy':
        source = _device_of(args[0])
        target = kwargs.get('device')
        non_blocking = kwargs.get('non_blocking', False)
    elif name == 'copy_':
        target, source = _device_of(args[0]), _device_of(args[1])
        non_blocking = args[2] if len(args) > 2 else kwargs.get(
            'non_blocking', False)
    else:
        return False
    if source is None or target is None:
        return False
    target = torch.device(target)
    if source.type == target.type:
        return False
    if not non_blocking:
        return True
    # A non-blocking copy into pageable host memory still waits for it.
    return (name == 'copy_' and target.type == 'cpu'
            and not args[0].is_pinned())


def _counts(device: Any, cpu_as_device: bool) -> bool:
    """Whether a read of (or copy to) ``device`` makes the host wait."""
    return device is not None and (cpu_as_device
                                   or torch.device(device).type != 'cpu')


class _Recording:
    """What both recording modes hold: where to record, and how."""

    def __init__(self, record: Callable[[str], None],
                 cpu_as_device: bool) -> None:
        super().__init__()
        self.record = record
        self.cpu_as_device = cpu_as_device


class _DispatchRecorder(_Recording, TorchDispatchMode):

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name.split('::')[-1]
        reads = name in _SYNC_OPS or (
            name in ('index', 'index_put', 'index_put_')
            and _has_bool_index(args[1]))
        device = _device_of(args[0]) if args else None
        if ((reads and _counts(device, self.cpu_as_device)
             and not (device.type == 'cpu' and _in_torch_optim()))
                or _is_blocking_transfer(name, args, kwargs)):
            self.record(name)
        return func(*args, **kwargs)


def _in_torch_optim() -> bool:
    """Whether torch.optim is running: its non-fused, non-capturable
    optimizers keep their step counters on the host (made with
    ``device='cpu'``, read with ``.item()``), also in a GPU run, so on the
    CPU these are no stand-in for a GPU's waits."""
    return any(
        os.path.abspath(frame.filename).startswith(_TORCH_OPTIM_DIR)
        for frame in traceback.extract_stack())


def mark_host_copy(tensor: torch.Tensor) -> torch.Tensor:
    """Mark ``tensor`` as the host's copy of device values, which the host
    reads without waiting: :class:`HostSyncRecorder` then does not count
    its ``.tolist()``, ``.numpy()`` or ``.cpu()``. On the CPU such a copy
    is the device tensor itself, so only the mark tells it apart.

    Args:
        tensor (Tensor): A host tensor, not one the caller uses otherwise
            (e.g. a ``detach()`` or a copy).

    Returns:
        Tensor: ``tensor``.
    """
    setattr(tensor, _HOST_COPY, True)
    return tensor


def _host_read(func: Callable, args: tuple) -> Optional[str]:
    """The name of a read of a CPU tensor's values into Python or NumPy
    (or its ``.cpu()``), unless the tensor is a marked host copy."""
    name = getattr(func, '__name__', None)
    if name not in _HOST_READS or func is not getattr(torch.Tensor, name):
        return None
    tensor = args[0]
    # A view (a row, an element) of a host copy is one too.
    base = tensor._base if tensor._base is not None else tensor
    if tensor.device.type != 'cpu' or getattr(base, _HOST_COPY, False):
        return None
    return f'{name} (host read)'


class _FunctionRecorder(_Recording, TorchFunctionMode):
    """Tensors made from Python data for a device happen above the
    dispatcher: ``x.new_tensor([...])``, ``torch.tensor(..., device=d)``.
    On a GPU each is a blocking host-to-device copy. So, on a CPU tensor,
    do ``.tolist()``, ``.numpy()`` and ``.cpu()``, which on a GPU copy
    to the host and wait."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        read = _host_read(func, args) if self.cpu_as_device else None
        if read is not None and not _in_torch_optim():
            self.record(read)
        # The rest are the functions that make tensors from host data.
        if func is torch.Tensor.new_tensor:
            device = kwargs.get('device') or _device_of(args[0])
        elif func in (torch.tensor, torch.as_tensor):
            device = kwargs.get('device')
        else:
            device = None
        if _counts(device, self.cpu_as_device) and not (
                torch.device(device).type == 'cpu' and _in_torch_optim()):
            self.record(f'{func.__name__} (host data)')
        return func(*args, **kwargs)


class HostSyncRecorder:
    """Records, while active, each operation that makes the host wait for
    the device, with the line of code that called it.

    On a GPU the host queues kernels ahead of the device; an operation
    whose result the host must read (``tensor.item()``, ``if tensor:``,
    boolean indexing, ``nonzero``, ``unique``, a device-to-host copy) or
    that copies host data to the device without ``non_blocking`` drains
    that queue, and the GPU idles until the host has queued new work.

    The recorder hooks into PyTorch's dispatcher and its
    ``__torch_function__`` layer. With ``cpu_as_device=True`` it counts
    these operations on CPU tensors as if the CPU were the GPU, so that
    tests can assert on the CPU that code would not make the host wait on
    a GPU: a tensor made from Python data for a device
    (``x.new_tensor(...)``, ``torch.tensor(..., device=...)``) counts as
    the host-to-device copy it is on a GPU, and ``.tolist()``,
    ``.numpy()`` or ``.cpu()`` of a CPU tensor as the device-to-host copy
    it is (except of the host copies that
    :class:`~mmseg_ptx.utils.AsyncReadback` hands back, marked with
    :func:`mark_host_copy`). It then also counts reads of
    tensors that stay on the host in a GPU run, except the step counters
    that ``torch.optim``'s non-fused optimizers keep there. It cannot
    see a host tensor moved with ``.to(x.device)`` where ``x`` is on the
    CPU too (e.g. ``torch.tensor(values).to(x.device)``), nor explicit
    waits (``torch.cuda.synchronize()``, ``Event.synchronize()``). With
    ``cpu_as_device=False`` (for runs on a GPU) only operations on device
    tensors and copies between host and device count.

    Args:
        cpu_as_device (bool): Count operations on CPU tensors as if they
            were on the GPU. Defaults to True.

    Example:
        >>> with HostSyncRecorder() as syncs:
        ...     model.train_step(batch, optim_wrapper)
        >>> print(syncs.report())

    Attributes:
        counts (Counter[tuple[str, str]]): Number of calls per
            ``(operator, location)``, where location is
            ``'file:line in function'`` of the innermost caller outside
            torch.
    """

    def __init__(self, cpu_as_device: bool = True) -> None:
        self.cpu_as_device = cpu_as_device
        self.counts: Counter[Tuple[str, str]] = collections.Counter()
        self._modes: List[Any] = []

    def __enter__(self) -> 'HostSyncRecorder':
        self._modes = [
            _FunctionRecorder(self._record, self.cpu_as_device),
            _DispatchRecorder(self._record, self.cpu_as_device)
        ]
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc_info)
        self._modes = []

    def _record(self, name: str) -> None:
        self.counts[(name, self._caller())] += 1

    @staticmethod
    def _caller() -> str:
        for frame in reversed(traceback.extract_stack()):
            path = os.path.abspath(frame.filename)
            if path != _THIS_FILE and not path.startswith(_TORCH_DIR):
                return f'{frame.filename}:{frame.lineno} in {frame.name}'
        return '<torch>'

    @property
    def total(self) -> int:
        """The number of recorded operations."""
        return sum(self.counts.values())

    def report(self) -> str:
        """One line per ``(operator, location)``, most frequent first."""
        if not self.counts:
            return 'no host syncs'
        lines: List[str] = [
            f'{count:6d}  {name:<22s} {where}'
            for (name, where), count in self.counts.most_common()
        ]
        return '\n'.join(lines)
