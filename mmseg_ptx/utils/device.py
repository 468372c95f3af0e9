"""Whether mmengine has a device backend on this machine."""
from __future__ import annotations

__all__ = ['has_device_backend']


def has_device_backend() -> bool:
    """Whether mmengine has a device backend here: CUDA, or on Ascend,
    Cambricon or Moore Threads hosts (no CUDA either) an NPU, MLU or MUSA.
    There its launcher sets the device and picks nccl/hccl/cncl/mccl, and
    its ``AmpOptimWrapper`` runs. Apple's MPS is none of them: mmengine
    trains on it, but without AMP, and launches it as a CPU (it would call
    ``torch.cuda.set_device``).

    Returns:
        bool: Whether one of those devices is available.
    """
    from mmengine.device import (is_cuda_available, is_mlu_available,
                                 is_musa_available, is_npu_available)
    return (is_cuda_available() or is_npu_available() or is_mlu_available()
            or is_musa_available())
