"""Read small device tensors back to the host without waiting for the GPU."""
from __future__ import annotations

from collections import deque
from typing import Any, Deque, List, Optional, Tuple

import torch
from torch import Tensor

from .host_sync_recorder import mark_host_copy

__all__ = ['AsyncReadback']


class AsyncReadback:
    """A queue of small tensors on their way from the device to the host.

    ``.item()`` or ``bool()`` of a CUDA tensor makes the host wait until the
    GPU has run everything queued before it; the host then queues nothing
    while it waits, and the GPU idles until the host catches up. A check
    that can be reported a step late (a label out of range, say) does not
    need that wait: :meth:`push` starts a non-blocking copy into pinned
    host memory and records a CUDA event after it, and :meth:`poll` hands
    back, oldest first, the copies that have arrived, asking the event
    without waiting. :meth:`drain` waits for the rest.

    CPU tensors are on the host already: they are ready at once, so the
    same code reports on the CPU in the call that pushed. Other devices
    (MPS, NPU, ...) are copied synchronously.

    The queue belongs to the device work of this process: a copy of the
    object (``copy.deepcopy`` of a model, pickling) starts empty.
    """

    def __init__(self) -> None:
        self._pending: Deque[Tuple[Tensor, Optional[torch.cuda.Event],
                                   Any]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    @torch.compiler.disable
    def push(self, values: Tensor, context: Any = None) -> None:
        """Start reading ``values`` back.

        Args:
            values (Tensor): A small tensor, on any device; it is detached.
            context (Any): Handed back with the values by :meth:`poll`.
        """
        values = values.detach()
        if values.device.type == 'cpu':
            self._pending.append((mark_host_copy(values), None, context))
        elif values.device.type == 'cuda':
            host = torch.empty(values.shape, dtype=values.dtype,
                               pin_memory=True)
            mark_host_copy(host).copy_(values, non_blocking=True)
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(values.device))
            self._pending.append((host, event, context))
        else:
            self._pending.append((mark_host_copy(values.cpu()), None,
                                  context))

    @torch.compiler.disable
    def poll(self) -> List[Tuple[Tensor, Any]]:
        """The ``(values, context)`` pairs that have arrived on the host,
        oldest first, without waiting for the device; they leave the queue.
        A pair that has not arrived holds back the ones pushed after it."""
        ready = []
        while self._pending and (self._pending[0][1] is None
                                 or self._pending[0][1].query()):
            host, _, context = self._pending.popleft()
            ready.append((host, context))
        return ready

    @torch.compiler.disable
    def drain(self, keep: int = 0) -> List[Tuple[Tensor, Any]]:
        """Every pending ``(values, context)`` pair but the newest
        ``keep``, oldest first, waiting for the device where a copy has
        not arrived yet.

        Args:
            keep (int): How many of the newest pairs stay in the queue,
                e.g. to bound what the queue holds without waiting for the
                latest work. Defaults to 0.
        """
        if keep < 0:
            raise ValueError(f'keep must be >= 0, got {keep}')
        ready = []
        while len(self._pending) > keep:
            host, event, context = self._pending.popleft()
            if event is not None:
                event.synchronize()
            ready.append((host, context))
        return ready
