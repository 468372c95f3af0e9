"""Utilities for keeping the GPU busy (reading device values back without
waiting for the GPU, and finding the places where the host does wait),
and for writing files whole."""
from .async_readback import AsyncReadback
from .atomic_write import (atomic_path, remove_leftover_temporaries,
                           write_atomically)
from .device import has_device_backend
from .host_sync_recorder import HostSyncRecorder, mark_host_copy

__all__ = [
    'AsyncReadback', 'HostSyncRecorder', 'mark_host_copy', 'atomic_path',
    'remove_leftover_temporaries', 'write_atomically', 'has_device_backend'
]
