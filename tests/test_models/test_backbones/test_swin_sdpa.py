"""SwinTransformerSDPA computes what mmseg's SwinTransformer computes."""
import pytest
import torch
from conftest import (needs_flex_attention, needs_recent_dynamo,
                      needs_sdpa_kernel)

import mmseg_ptx  # noqa: F401  (registers the backbone)
from mmseg.models.backbones import SwinTransformer
from mmseg.registry import MODELS
from mmseg_ptx.models import (ShiftWindowMSASDPA, SwinTransformerSDPA,
                              WindowMSASDPA)
from mmseg_ptx.models.backbones import swin_sdpa
from mmseg_ptx.models.backbones.swin_sdpa import WINDOW_CACHE
from mmseg_ptx.models.utils import flex_window_attention

TOL = 1e-4
#: CPU always; CUDA too where there is a GPU (SDPA dispatches to another
#: kernel there: the memory-efficient one, which takes the float bias).
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures('exact_cuda_float32')


def tiny_cfg(**overrides):
    cfg = dict(
        pretrain_img_size=64,
        embed_dims=32,
        depths=(2, 2, 2, 2),
        num_heads=(1, 2, 4, 8),
        window_size=7,
        drop_path_rate=0.,
        attn_drop_rate=0.,
        drop_rate=0.)
    cfg.update(overrides)
    return cfg


def randomise(model):
    """Non-trivial weights (init_weights leaves the bias tables at zero),
    with large relative position biases so that they matter."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 1.0 if 'relative_position_bias_table' in name else 0.2
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def stock_and_sdpa(window_size=7, qk_scale=None, **sdpa_options):
    """mmseg's Swin with random weights, and SwinTransformerSDPA (with its
    own ``sdpa_options``) holding the same weights."""
    cfg = tiny_cfg(window_size=window_size, qk_scale=qk_scale)
    stock = randomise(SwinTransformer(**cfg))
    sdpa = SwinTransformerSDPA(**cfg, **sdpa_options)
    sdpa.load_state_dict(stock.state_dict(), strict=True)
    return stock, sdpa


def max_diff(a, b):
    return (a - b).abs().max().item()


def backward_and_compare_gradients(stock, other, out_stock, out_other):
    """Backpropagate a loss that weights every output element differently
    through both models; their parameter gradients must match."""
    weights = [torch.randn_like(o) for o in out_stock]
    sum((o * w).sum() for o, w in zip(out_stock, weights)).backward()
    sum((o * w).sum() for o, w in zip(out_other, weights)).backward()
    grads_other = dict(other.named_parameters())
    for name, p in stock.named_parameters():
        g = grads_other[name].grad
        assert g is not None, name
        scale = max(1.0, p.grad.abs().max().item())
        assert max_diff(p.grad, g) / scale < TOL, name


def test_all_blocks_converted():
    model = SwinTransformerSDPA(**tiny_cfg())
    attns = [b.attn for s in model.stages for b in s.blocks]
    assert len(attns) == 8
    assert all(type(a) is ShiftWindowMSASDPA for a in attns)
    assert all(type(a.w_msa) is WindowMSASDPA for a in attns)
    # Alternate unshifted / shifted blocks, as in mmseg.
    assert [a.shift_size for a in attns[:2]] == [0, 3]
    assert not any(p.is_meta for p in model.parameters())


def test_same_seed_same_init():
    """Conversion draws nothing from the RNG: same seed, same weights."""
    torch.manual_seed(0)
    stock = SwinTransformer(**tiny_cfg())
    stock.init_weights()
    torch.manual_seed(0)
    sdpa = SwinTransformerSDPA(**tiny_cfg())
    sdpa.init_weights()
    for key, value in stock.state_dict().items():
        assert torch.equal(value, sdpa.state_dict()[key]), key


def test_parameters_shared_not_copied(monkeypatch):
    """The SDPA modules own the very parameters of the blocks."""
    # Each stock attention module the backbone converts, with its
    # parameters as they were: a copy would have the same names and
    # values, but not be the same tensors.
    converted = []
    from_stock = ShiftWindowMSASDPA.from_stock.__func__

    def recording(cls, stock):
        params = dict(stock.named_parameters())
        new = from_stock(cls, stock)
        converted.append((params, new))
        return new

    monkeypatch.setattr(ShiftWindowMSASDPA, 'from_stock',
                        classmethod(recording))
    model = SwinTransformerSDPA(**tiny_cfg())
    names = {n for n, _ in model.named_parameters()}
    stock_names = {
        n
        for n, _ in SwinTransformer(**tiny_cfg()).named_parameters()
    }
    assert names == stock_names
    blocks = [block for stage in model.stages for block in stage.blocks]
    assert [new for _, new in converted] == [b.attn for b in blocks]
    in_model = {id(p) for p in model.parameters()}
    for params, new in converted:
        assert 'w_msa.qkv.weight' in params
        assert 'w_msa.relative_position_bias_table' in params
        new_params = dict(new.named_parameters())
        assert new_params.keys() == params.keys()
        for name, param in params.items():
            assert new_params[name] is param, name
            assert id(param) in in_model, name


def test_state_dict_keys_interchangeable():
    stock = SwinTransformer(**tiny_cfg())
    sdpa = SwinTransformerSDPA(**tiny_cfg())
    assert list(stock.state_dict()) == list(sdpa.state_dict())
    assert any(
        k.endswith('relative_position_index') for k in sdpa.state_dict())
    # strict=True raises on any missing or unexpected key.
    result = sdpa.load_state_dict(stock.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    result = stock.load_state_dict(sdpa.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('size', [(70, 90), (56, 56)])
@pytest.mark.parametrize('train', [False, True])
def test_outputs_and_gradients_match(size, train, device):
    """All 4 stages, shifted + unshifted blocks, padded and unpadded maps
    (70x90 is divisible by neither the patch size 4 nor the window 7)."""
    stock, sdpa = (m.to(device) for m in stock_and_sdpa())
    stock.train(train)
    sdpa.train(train)
    x = torch.randn(2, 3, *size, device=device)
    x_stock = x.clone().requires_grad_()
    x_sdpa = x.clone().requires_grad_()

    out_stock = stock(x_stock)
    out_sdpa = sdpa(x_sdpa)
    assert len(out_stock) == len(out_sdpa) == 4
    for a, b in zip(out_stock, out_sdpa):
        assert a.shape == b.shape
        assert max_diff(a, b) < TOL

    backward_and_compare_gradients(stock, sdpa, out_stock, out_sdpa)
    assert max_diff(x_stock.grad, x_sdpa.grad) < TOL


@pytest.mark.parametrize('attn_impl', [
    'sdpa', pytest.param('flex', marks=needs_flex_attention)])
def test_a_configured_qk_scale_is_used(attn_impl):
    """qk_scale other than SDPA's default head_dims ** -0.5."""
    stock, sdpa = stock_and_sdpa(qk_scale=0.05, attn_impl=attn_impl)
    stock.eval()
    sdpa.eval()
    x = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        for a, b in zip(stock(x), sdpa(x)):
            assert max_diff(a, b) < TOL


def test_window_cache_shared_by_blocks_and_bounded(monkeypatch):
    """The shifted blocks of a stage share one mask; images of many sizes
    keep at most WINDOW_CACHE.maxsize entries, and an evicted entry is
    rebuilt the same."""
    model = SwinTransformerSDPA(**tiny_cfg(depths=(2, 4, 2, 2)))
    model.eval()  # mmseg's Swin train() returns None
    cpu = torch.device('cpu')
    first, second = (model.stages[1].blocks[i].attn for i in (1, 3))
    WINDOW_CACHE.clear()
    monkeypatch.setattr(WINDOW_CACHE, 'maxsize', 20)
    mask = first.shift_mask(35, 35, torch.float32, cpu)
    assert second.shift_mask(35, 35, torch.float32, cpu) is mask
    with torch.no_grad():
        for size in (64, 96, 128):  # 3 sizes, 12 entries each
            model(torch.randn(1, 3, size, size))
    assert len(WINDOW_CACHE) == 20
    rebuilt = first.shift_mask(35, 35, torch.float32, cpu)
    assert rebuilt is not mask
    assert torch.equal(rebuilt, mask)


def test_window_cache_from_several_threads():
    """Lookups and evictions from several threads at once (a threaded
    server's forwards) raise nothing and return what was built."""
    import random
    import sys
    import threading

    from mmseg_ptx.models.backbones.swin_sdpa import _WindowCache
    cache = _WindowCache(maxsize=8)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    errors = []

    def work(seed):
        rnd = random.Random(seed)
        try:
            for _ in range(5000):
                key = rnd.randrange(40)
                assert cache.get(('x', key), lambda: key) == key
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(repr(err))

    threads = [threading.Thread(target=work, args=(i, )) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == [] and len(cache) == 8


def test_shift_mask_cached_and_matches_stock_mask():
    model = SwinTransformerSDPA(**tiny_cfg())
    attn = model.stages[0].blocks[1].attn
    assert attn.shift_size > 0
    mask = attn.shift_mask(21, 14, torch.float32, torch.device('cpu'))
    assert attn.shift_mask(21, 14, torch.float32,
                           torch.device('cpu')) is mask
    assert mask.shape == (6, 49, 49)
    assert set(mask.unique().tolist()) == {0.0, -100.0}
    # The last window row/column straddles the shifted regions; the first
    # window does not.
    assert (mask[0] == 0).all()
    assert (mask[-1] != 0).any()


def test_attention_dropout_active_in_training():
    torch.manual_seed(0)
    model = SwinTransformerSDPA(**tiny_cfg(attn_drop_rate=0.5))
    model.init_weights()
    x = torch.randn(1, 3, 56, 56)
    model.eval()
    with torch.no_grad():
        eval_1 = model(x)[0]
        eval_2 = model(x)[0]
    assert torch.equal(eval_1, eval_2)
    model.train()
    torch.manual_seed(1)
    train_1 = model(x)[0]
    torch.manual_seed(2)
    train_2 = model(x)[0]
    assert max_diff(train_1, train_2) > 1e-3


def test_pretrained_init_cfg_loads_mmseg_checkpoint(tmp_path):
    """The inherited Pretrained path (prefix stripping) loads a stock
    checkpoint into the SDPA backbone."""
    stock = randomise(SwinTransformer(**tiny_cfg()))
    path = tmp_path / 'swin.pth'
    torch.save(
        {
            'state_dict':
            {f'backbone.{k}': v
             for k, v in stock.state_dict().items()}
        }, path)
    sdpa = SwinTransformerSDPA(
        **tiny_cfg(), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    sdpa.init_weights()
    for key, value in stock.state_dict().items():
        assert torch.equal(value, sdpa.state_dict()[key]), key


def test_build_from_registry():
    model = MODELS.build(dict(type='SwinTransformerSDPA', **tiny_cfg()))
    assert isinstance(model, SwinTransformerSDPA)
    assert isinstance(model, SwinTransformer)


def test_bf16_autocast_finite():
    _, sdpa = stock_and_sdpa()
    sdpa.eval()
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = sdpa(x)
    assert len(outs) == 4
    assert all(torch.isfinite(o.float()).all() for o in outs)


@pytest.mark.parametrize('shift', [False, True])
def test_autocast_casts_before_window_copies(monkeypatch, shift):
    """Under autocast the windows reach the qkv linear already in bf16
    (cast before pad, roll and partition), and output and input gradient
    are bit for bit those of casting in the linear, as autocast would."""
    from mmseg_ptx.models.backbones import swin_sdpa
    _, sdpa = stock_and_sdpa()
    attn = sdpa.stages[0].blocks[int(shift)].attn
    assert (attn.shift_size > 0) == shift
    qkv_input_dtypes = []
    attn.w_msa.qkv.register_forward_pre_hook(
        lambda module, args: qkv_input_dtypes.append(args[0].dtype))
    hw_shape = (10, 12)  # not multiples of the window: padded
    query = torch.randn(2, 120, 32)

    def run():
        x = query.clone().requires_grad_()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = attn(x, hw_shape)
        out.float().square().sum().backward()
        return out, x.grad

    out, grad = run()
    monkeypatch.setattr(swin_sdpa, 'autocast_dtype', lambda device: None)
    ref_out, ref_grad = run()
    assert qkv_input_dtypes == [torch.bfloat16, torch.float32]
    assert out.dtype == ref_out.dtype == torch.bfloat16
    assert grad.dtype == torch.float32
    assert torch.equal(out, ref_out)
    assert torch.equal(grad, ref_grad)


@needs_recent_dynamo
def test_torch_compile_traces_without_graph_breaks():
    """Dynamo traces the whole backbone (fullgraph) and the traced shift
    mask path leaves the eager cache alone."""
    torch._dynamo.reset()  # see test_sdpa_backends_trace_without_graph_breaks
    stock, sdpa = stock_and_sdpa()
    x = torch.randn(1, 3, 70, 90)
    WINDOW_CACHE.clear()
    compiled = torch.compile(sdpa, backend='eager', fullgraph=True)
    with torch.no_grad():
        for a, b in zip(stock(x), compiled(x)):
            assert max_diff(a, b) < TOL
        # The autocast query folds into the graph as well.
        with torch.autocast('cpu', dtype=torch.bfloat16):
            compiled(x)
    assert len(WINDOW_CACHE) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_swin_b_at_512_matches_on_cuda():
    """The configs' backbone (Swin-B, window 7, 512x512), with
    init_weights' weights: float32 outputs within TOL of stock."""
    cfg = tiny_cfg(
        pretrain_img_size=224,
        embed_dims=128,
        depths=(2, 2, 18, 2),
        num_heads=(4, 8, 16, 32))
    torch.manual_seed(0)
    stock = SwinTransformer(**cfg)
    stock.init_weights()
    sdpa = SwinTransformerSDPA(**cfg)
    sdpa.load_state_dict(stock.state_dict(), strict=True)
    # Not chained: mmseg's SwinTransformer.train() returns None, and so
    # does eval().
    stock, sdpa = stock.cuda(), sdpa.cuda()
    stock.eval()
    sdpa.eval()
    x = torch.randn(2, 3, 512, 512, device='cuda')
    with torch.no_grad():
        out_stock, out_sdpa = stock(x), sdpa(x)
        diffs = [max_diff(a, b) for a, b in zip(out_stock, out_sdpa)]
        # The float32 noise floor: the same stock model on the CPU.
        floor = [
            max_diff(a.cpu(), b)
            for a, b in zip(out_stock, stock.cpu()(x.cpu()))
        ]
    print(f'Swin-B 512 fp32 max abs diff per stage: SDPA vs stock on CUDA '
          f'{diffs}; stock CUDA vs stock CPU {floor}')
    assert max(diffs) < TOL, (diffs, floor)


@needs_sdpa_kernel
@pytest.mark.parametrize('backends', [['math'], ['efficient', 'math']])
def test_sdpa_backends_same_outputs(backends):
    """Restricting the kernels changes nothing but speed (CPU: the math
    kernel runs where another is not available)."""
    stock, sdpa = stock_and_sdpa(sdpa_backends=backends)
    stock.eval()
    sdpa.eval()
    assert all(b.attn.w_msa.sdpa_backends for s in sdpa.stages
               for b in s.blocks)
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        for a, b in zip(stock(x), sdpa(x)):
            assert max_diff(a, b) < TOL


def test_sdpa_backends_checked():
    with pytest.raises(ValueError, match="unknown \\['fast'\\]"):
        SwinTransformerSDPA(**tiny_cfg(), sdpa_backends=['fast'])
    with pytest.raises(ValueError, match='empty list'):
        SwinTransformerSDPA(**tiny_cfg(), sdpa_backends=[])


@needs_sdpa_kernel
def test_sdpa_backends_trace_without_graph_breaks():
    # A fresh dynamo cache: a second input size for the same code would
    # trace again with symbolic shapes, which takes minutes here.
    torch._dynamo.reset()
    stock, sdpa = stock_and_sdpa(sdpa_backends=['math'])
    x = torch.randn(1, 3, 56, 56)
    compiled = torch.compile(sdpa, backend='eager', fullgraph=True)
    with torch.no_grad():
        for a, b in zip(stock(x), compiled(x)):
            assert max_diff(a, b) < TOL


def test_cache_filled_in_inference_mode_then_training():
    """The cached index and mask are ordinary tensors even when the first
    forward ran under torch.inference_mode()."""
    _, sdpa = stock_and_sdpa()
    x = torch.randn(1, 3, 70, 90)
    sdpa.eval()
    with torch.inference_mode():
        expected = sdpa(x)
    sdpa.train()
    outs = sdpa(x)
    sum(o.sum() for o in outs).backward()
    for a, b in zip(expected, outs):
        torch.testing.assert_close(a, b.detach())


def count_flex_calls(monkeypatch):
    """Count the backbone's calls of flex_window_attention, by mask."""
    calls = {'shifted': 0, 'unshifted': 0}

    def counting(*args, mask=None, **kwargs):
        calls['unshifted' if mask is None else 'shifted'] += 1
        return flex_window_attention(*args, mask=mask, **kwargs)

    monkeypatch.setattr(swin_sdpa, 'flex_window_attention', counting)
    return calls


@needs_flex_attention
@pytest.mark.parametrize('window_size,size', [(7, (70, 90)), (7, (56, 56)),
                                              (12, (96, 96))])
def test_flex_outputs_match(monkeypatch, window_size, size):
    """attn_impl='flex': stock's outputs, shifted and unshifted blocks,
    padded and unpadded maps, windows of 49 and 144 tokens (inference: its
    backward needs a GPU), every block's attention through FlexAttention."""
    stock, flex = stock_and_sdpa(window_size, attn_impl='flex')
    calls = count_flex_calls(monkeypatch)
    stock.eval()
    flex.eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        for a, b in zip(stock(x), flex(x)):
            assert max_diff(a, b) < TOL
    assert calls == {'shifted': 4, 'unshifted': 4}


@needs_flex_attention
@needs_recent_dynamo
def test_flex_traces_without_graph_breaks():
    """Dynamo traces the backbone with FlexAttention whole (fullgraph), as
    CompileModulesHook compiles it."""
    torch._dynamo.reset()  # see test_sdpa_backends_trace_without_graph_breaks
    stock, flex = stock_and_sdpa(
        attn_impl='flex', flex_kernel_options=dict(BLOCK_M=16))
    stock.eval()
    flex.eval()
    x = torch.randn(1, 3, 56, 56)
    compiled = torch.compile(flex, backend='eager', fullgraph=True)
    with torch.no_grad():
        for a, b in zip(stock(x), compiled(x)):
            assert max_diff(a, b) < TOL


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
@needs_flex_attention
@pytest.mark.parametrize('window_size', [7, 12])
@pytest.mark.parametrize('compiled', [False, True])
def test_flex_outputs_and_gradients_match_on_cuda(monkeypatch, compiled,
                                                  window_size):
    """Training with attn_impl='flex' on a GPU, eager and compiled by
    Inductor (the fused kernels; 144-token windows take its main kernel,
    49-token ones its decoding kernel): stock's outputs and gradients."""
    stock, flex = (m.cuda()
                   for m in stock_and_sdpa(window_size, attn_impl='flex'))
    calls = count_flex_calls(monkeypatch)
    run = torch.compile(flex) if compiled else flex
    x = torch.randn(2, 3, 70, 90, device='cuda')
    out_stock, out_flex = stock(x), run(x)
    for a, b in zip(out_stock, out_flex):
        assert max_diff(a, b) < TOL
    backward_and_compare_gradients(stock, flex, out_stock, out_flex)
    assert calls['shifted'] > 0 and calls['unshifted'] > 0


def test_attn_impl_checked():
    with pytest.raises(ValueError, match="'fast' is not one of"):
        SwinTransformerSDPA(**tiny_cfg(), attn_impl='fast')
    with pytest.raises(ValueError, match="needs attn_impl='flex'"):
        SwinTransformerSDPA(
            **tiny_cfg(), flex_kernel_options=dict(BLOCK_M=64))


@needs_flex_attention
def test_flex_settings_checked():
    with pytest.raises(ValueError, match='SDPA does not run'):
        SwinTransformerSDPA(
            **tiny_cfg(), attn_impl='flex', sdpa_backends=['math'])
    with pytest.raises(ValueError, match='attn_drop_rate is 0.1'):
        SwinTransformerSDPA(
            **tiny_cfg(attn_drop_rate=0.1), attn_impl='flex')
    # Unlisted tile options are warned about (where torch lists them).
    from torch.nn.attention import flex_attention as flex_module
    if hasattr(flex_module, 'FlexKernelOptions'):
        with pytest.warns(UserWarning, match="\\['BLOCKM'\\] not among"):
            SwinTransformerSDPA(
                **tiny_cfg(), attn_impl='flex',
                flex_kernel_options=dict(BLOCKM=64))


def test_flex_refused_without_flex_attention(monkeypatch):
    monkeypatch.setattr('mmseg_ptx.compat.flex_attention', None)
    with pytest.raises(ValueError, match='torch >= 2.6'):
        SwinTransformerSDPA(**tiny_cfg(), attn_impl='flex')
