"""flex_window_attention computes SDPA's window attention with the bias and
shift mask materialised."""
import importlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import needs_flex_attention

from mmseg_ptx import compat
from mmseg_ptx.models.utils import (check_flex_kernel_options,
                                    flex_window_attention)

# The module, which the package's function of the same name hides.
MODULE = importlib.import_module(
    'mmseg_ptx.models.utils.flex_window_attention')

pytestmark = [
    needs_flex_attention,
    pytest.mark.usefixtures('exact_cuda_float32')
]

# Windows of 12x12 tokens and heads of 32 channels, as in this project's
# Swin-B: on CUDA, Inductor's main FlexAttention kernel (below 128 tokens
# it takes its decoding kernel; below 16 channels it has none).
IMAGES, WINDOWS, HEADS, N, HEAD_DIMS = 2, 3, 2, 144, 32


def inputs(device='cpu', requires_grad=False):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(IMAGES * WINDOWS, HEADS, N, HEAD_DIMS,
                           generator=gen).to(device).requires_grad_(
                               requires_grad) for _ in range(3))
    bias = (torch.randn(HEADS, N, N, generator=gen) *
            2).to(device).requires_grad_(requires_grad)
    # A shift mask's pattern: some pairs of tokens may not attend.
    mask = (torch.rand(WINDOWS, N, N, generator=gen) > 0.7).float() * -100.
    return q, k, v, bias, mask.to(device)


def reference(q, k, v, bias, mask, scale):
    """SDPA with the bias (and mask) materialised for every window,
    windows of one image consecutive."""
    full = bias.unsqueeze(0)
    if mask is not None:
        full = (bias.unsqueeze(0) + mask.unsqueeze(1)).repeat(
            IMAGES, 1, 1, 1)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=full, scale=scale)


@pytest.mark.parametrize('shifted', [False, True])
def test_matches_sdpa_with_materialised_bias(shifted):
    q, k, v, bias, mask = inputs()
    mask = mask if shifted else None
    with torch.no_grad():
        out = flex_window_attention(q, k, v, bias, mask=mask, scale=0.3)
        expected = reference(q, k, v, bias, mask, scale=0.3)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # The mask matters here: without it the result differs.
    if shifted:
        unmasked = reference(q, k, v, bias, None, scale=0.3)
        assert not torch.allclose(out, unmasked, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
@pytest.mark.parametrize('shifted', [False, True])
def test_gradients_match_sdpa_on_cuda(shifted):
    """FlexAttention's backward (GPU only) gives q, k, v and the bias the
    gradients of the materialised-bias SDPA."""
    q, k, v, bias, mask = inputs('cuda', requires_grad=True)
    mask = mask if shifted else None
    weights = torch.randn(q.shape, device='cuda')
    compiled = torch.compile(flex_window_attention)
    for fn in (flex_window_attention, compiled):
        out = fn(q, k, v, bias, mask=mask, scale=0.3)
        got = torch.autograd.grad((out * weights).sum(), (q, k, v, bias))
        ref_out = reference(q, k, v, bias, mask, scale=0.3)
        want = torch.autograd.grad((ref_out * weights).sum(),
                                   (q, k, v, bias))
        torch.testing.assert_close(out, ref_out, atol=1e-4, rtol=1e-4)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_batch_not_a_multiple_of_the_windows_refused():
    q, k, v, bias, mask = inputs()
    with pytest.raises(ValueError, match='not a multiple of the mask'):
        flex_window_attention(q[:-1], k[:-1], v[:-1], bias, mask=mask)


def test_scale_and_kernel_options_reach_flex_attention(monkeypatch):
    seen = {}

    def recording(*args, **kwargs):
        seen.update(kwargs)
        return compat.flex_attention(*args, **kwargs)

    monkeypatch.setattr(
        MODULE, 'compat',
        type('compat', (), {'flex_attention': staticmethod(recording)}))
    q, k, v, bias, _ = inputs()
    with torch.no_grad():
        flex_window_attention(
            q, k, v, bias, scale=0.3, kernel_options=dict(BLOCK_M=16))
    assert seen['scale'] == 0.3
    assert seen['kernel_options'] == dict(BLOCK_M=16)


def test_unlisted_kernel_options_warned_about():
    from torch.nn.attention import flex_attention as flex_module
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        check_flex_kernel_options(
            dict(BLOCK_M=64, fwd_BLOCK_N=64, bwd_BLOCK_M1=32))
    if not hasattr(flex_module, 'FlexKernelOptions'):
        pytest.skip('this torch lists no FlexAttention kernel options')
    with pytest.warns(UserWarning, match="\\['BLOCKM'\\] not among"):
        check_flex_kernel_options(dict(BLOCK_M=64, BLOCKM=64))
    with pytest.warns(UserWarning, match="\\['fwd_bwd_BLOCK_M'\\] not"):
        check_flex_kernel_options(dict(fwd_bwd_BLOCK_M=64))


@pytest.mark.parametrize('shifted', [False, True])
def test_bias_gradient_matches_sdpa(shifted):
    """The learned bias's gradient (what needs torch 2.6), on the CPU: it
    takes FlexAttention's backward where q, k and v need none."""
    q, k, v, bias, mask = inputs()
    bias.requires_grad_()
    mask = mask if shifted else None
    weights = torch.randn(q.shape)
    out = flex_window_attention(q, k, v, bias, mask=mask, scale=0.3)
    (got, ) = torch.autograd.grad((out * weights).sum(), bias)
    ref = reference(q, k, v, bias, mask, scale=0.3)
    (want, ) = torch.autograd.grad((ref * weights).sum(), bias)
    assert got.abs().max() > 0
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_without_flex_attention_says_which_torch(monkeypatch):
    monkeypatch.setattr(compat, 'flex_attention', None)
    q, k, v, bias, _ = inputs()
    with pytest.raises(RuntimeError, match='torch >= 2.6'):
        flex_window_attention(q, k, v, bias)
