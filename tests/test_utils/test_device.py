"""has_device_backend: the devices mmengine launches and runs AMP on."""
import mmengine.device
import pytest

from mmseg_ptx.utils import has_device_backend

CHECKS = ('is_cuda_available', 'is_npu_available', 'is_mlu_available',
          'is_musa_available')


@pytest.mark.parametrize('available', [None, *CHECKS])
def test_any_of_mmengines_device_backends(monkeypatch, available):
    for name in CHECKS:
        monkeypatch.setattr(mmengine.device, name,
                            lambda name=name: name == available)
    assert has_device_backend() is (available is not None)
