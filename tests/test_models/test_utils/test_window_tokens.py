"""partition_windows / reverse_windows move exactly what mmseg's pad, roll,
window partition (and back) move, in the forward and the backward pass."""
import os
import shutil

import pytest
import torch
import torch.nn.functional as F
from conftest import needs_recent_dynamo

from mmseg_ptx.models.utils.window_tokens import (partition_windows,
                                                  reverse_windows,
                                                  window_token_index)

# (H, W, window, shift): padded and not, shifted and not, a map smaller
# than one window, 512 px Swin with window 12 (every stage padded).
CASES = [(14, 21, 7, 0), (14, 21, 7, 3), (10, 12, 7, 3), (3, 5, 7, 3),
         (128, 128, 12, 6), (16, 16, 12, 0), (9, 4, 4, 2)]
#: CPU always; CUDA too where there is a GPU (``pytest -k cuda`` there).
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def stock_partition(x, H, W, ws, s):
    """mmseg ShiftWindowMSA's copies before the attention."""
    B, _, C = x.shape
    x = x.view(B, H, W, C)
    pad_r, pad_b = (ws - W % ws) % ws, (ws - H % ws) % ws
    x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    Hp, Wp = H + pad_b, W + pad_r
    if s:
        x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
    x = x.view(B, Hp // ws, ws, Wp // ws, ws, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, -1, C)


def stock_reverse(windows, H, W, ws, s):
    """... and after it."""
    B, _, C = windows.shape
    Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
    x = windows.view(B, Hp // ws, Wp // ws, ws, ws, C).permute(
        0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
    if s:
        x = torch.roll(x, shifts=(s, s), dims=(1, 2))
    return x[:, :H, :W, :].reshape(B, H * W, C)


@pytest.mark.parametrize('H,W,ws,s', CASES)
def test_index_is_a_permutation_plus_padding(H, W, ws, s):
    index, inverse = window_token_index((H, W), ws, s, torch.device('cpu'))
    Hp, Wp = -(-H // ws) * ws, -(-W // ws) * ws
    assert index.shape == (Hp * Wp, ) and inverse.shape == (H * W, )
    real = index < H * W
    assert int(real.sum()) == H * W
    assert (index[~real] == H * W).all()
    assert torch.equal(index[inverse], torch.arange(H * W))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('H,W,ws,s', CASES)
def test_same_values_and_gradients_as_stock_copies(H, W, ws, s, dtype,
                                                   device):
    index, inverse = window_token_index((H, W), ws, s, torch.device(device))
    x = torch.randn(2, H * W, 5, dtype=dtype, device=device)
    x_stock = x.clone().requires_grad_()
    x_ours = x.clone().requires_grad_()

    windows_stock = stock_partition(x_stock, H, W, ws, s)
    windows_ours = partition_windows(x_ours, index, inverse)
    assert windows_ours.dtype == dtype
    assert torch.equal(windows_ours, windows_stock)

    # Something per window position, so that every position's gradient
    # differs; the padding positions' outputs are not zero.
    weight = torch.randn(
        windows_stock.shape[1], 5, dtype=dtype, device=device)
    out_stock = stock_reverse(windows_stock * weight, H, W, ws, s)
    out_ours = reverse_windows(windows_ours * weight, index, inverse)
    assert torch.equal(out_ours, out_stock)

    grad = torch.randn_like(out_stock)
    out_stock.backward(grad)
    out_ours.backward(grad)
    assert x_ours.grad.dtype == dtype
    assert torch.equal(x_ours.grad, x_stock.grad)


def test_cast_in_the_copy_gradient_in_input_dtype():
    """Casting to bf16 in the partition gives what casting first gives;
    the gradient comes back in float32, as through ``Tensor.to``."""
    H, W, ws, s = 10, 12, 7, 3
    index, inverse = window_token_index((H, W), ws, s, torch.device('cpu'))
    x = torch.randn(2, H * W, 4)
    x_cast = x.clone().requires_grad_()
    x_ours = x.clone().requires_grad_()
    expected = stock_partition(x_cast.to(torch.bfloat16), H, W, ws, s)
    got = partition_windows(x_ours, index, inverse, dtype=torch.bfloat16)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, expected)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    got.backward(grad)
    assert x_ours.grad.dtype == torch.float32
    assert torch.equal(x_ours.grad, x_cast.grad)


@pytest.mark.parametrize('H,W,ws,s', [(10, 12, 7, 3), (9, 4, 4, 2)])
def test_gradcheck_and_double_backward(H, W, ws, s):
    index, inverse = window_token_index((H, W), ws, s, torch.device('cpu'))
    x = torch.randn(2, H * W, 3, dtype=torch.float64, requires_grad=True)
    windows = torch.randn(
        2, index.numel(), 3, dtype=torch.float64, requires_grad=True)

    def partition(t):
        return partition_windows(t, index, inverse)

    def reverse(t):
        return reverse_windows(t, index, inverse)

    assert torch.autograd.gradcheck(partition, (x, ))
    assert torch.autograd.gradcheck(reverse, (windows, ))
    assert torch.autograd.gradgradcheck(partition, (x, ))
    assert torch.autograd.gradgradcheck(reverse, (windows, ))


NO_CXX = shutil.which(os.environ.get('CXX', 'g++')) is None


@needs_recent_dynamo
@pytest.mark.parametrize('backend', [
    'aot_eager',
    pytest.param('inductor', marks=pytest.mark.skipif(
        NO_CXX, reason="inductor's CPU backend needs a C++ compiler"))
])
def test_compiled_forward_and_backward(backend):
    """What torch.compile sees: forward and backward graphs through
    AOTAutograd (aot_eager), and inductor's kernels, give the eager values
    and gradients. inductor inlines the index arithmetic into the gather
    kernels; a remainder of a negative number there failed its value
    range analysis (torch 2.13)."""
    torch._dynamo.reset()
    H, W, ws, s = 10, 12, 7, 3

    def round_trip(x, weight):
        index, inverse = window_token_index((H, W), ws, s, x.device)
        windows = partition_windows(x, index, inverse)
        return reverse_windows(windows * weight, index, inverse)

    # float32: in bf16 inductor may skip a cast's rounding, by design.
    x = torch.randn(2, H * W, 4)
    weight = torch.randn(14 * 14, 4)
    results = []
    for fn in (round_trip,
               torch.compile(round_trip, backend=backend, fullgraph=True)):
        x_ = x.clone().requires_grad_()
        out = fn(x_, weight)
        out.square().sum().backward()
        results.append((out.detach(), x_.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
