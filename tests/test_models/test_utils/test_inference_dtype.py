"""cast_for_inference: a segmentor held in bfloat16 for inference."""
import pytest
import torch
from mmcv.cnn import ConvModule
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from tiny_model import build_tiny_model

from conftest import TINY_CONFIG

from mmseg_ptx.models import (EnsembleSegmentor, SegTTAModelWithLogits,
                              cast_for_inference)

#: The tiny model's padded input and the original size it resizes back to
#: (not the input size, so that the resize runs).
SIZE = 64
ORI_SHAPE = (96, 96)


def make_batch() -> dict:
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, SIZE, SIZE), generator=g,
                        dtype=torch.uint8)
    sample = SegDataSample(
        metainfo=dict(img_shape=(SIZE, SIZE), ori_shape=ORI_SHAPE))
    return dict(inputs=[img], data_samples=[sample])


def seg_logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.test_step(make_batch())[0].seg_logits.data


def network_tensors(model):
    for name, child in model.named_children():
        if name != 'data_preprocessor':
            yield from child.named_parameters(prefix=name)
            yield from child.named_buffers(prefix=name)


@pytest.fixture(scope='module')
def logits():
    """fp32, autocast-bf16 and bf16-weight logits of one random model."""
    model = build_tiny_model(size=SIZE)
    fp32 = seg_logits(model)
    with torch.autocast('cpu', torch.bfloat16):
        autocast = seg_logits(model).float()
    assert cast_for_inference(model) is model
    return dict(fp32=fp32, autocast=autocast, bf16=seg_logits(model))


def test_weights_cast_preprocessor_kept():
    model = build_tiny_model(size=SIZE)
    cast_for_inference(model, torch.bfloat16)
    tensors = dict(network_tensors(model))
    floating = {n: t.dtype for n, t in tensors.items()
                if t.is_floating_point()}
    assert any(n.startswith('backbone.') for n in floating)
    assert any(n.startswith('decode_head.') for n in floating)
    assert any(n.startswith('auxiliary_head.') for n in floating)
    assert set(floating.values()) == {torch.bfloat16}
    # Integer buffers are no weights: BN's counter stays int64.
    assert tensors['decode_head.bottleneck.bn.num_batches_tracked'].dtype \
        == torch.int64
    pre = model.data_preprocessor
    assert pre.mean.dtype == torch.float32
    # bf16 would hold 123.5.
    assert pre.mean.flatten()[0].item() == pytest.approx(123.675, abs=1e-4)


def test_logits_float32_and_close_to_fp32(logits):
    fp32, autocast, bf16 = logits['fp32'], logits['autocast'], logits['bf16']
    assert bf16.dtype == torch.float32
    assert bf16.shape == fp32.shape == (2, ) + ORI_SHAPE
    err = (bf16 - fp32).abs()
    autocast_err = (autocast - fp32).abs()
    # bf16 keeps 8 significant bits (unit roundoff 2**-9 = 0.2 %), and the
    # error grows through the layers. Autocast, the accepted bf16 switch,
    # is the yardstick: on the CPU it runs LayerNorm and the elementwise
    # ops in bf16 as well (on CUDA LayerNorm stays fp32), so the two differ
    # here mainly in the resize to ORI_SHAPE, bf16 under autocast and fp32
    # with cast_for_inference (measured: 0.0943 against autocast's 0.0942
    # at most, logits up to 4.5; torch 2.13). Allow 1.5x autocast's error,
    # and at most 3 % of the largest logit (about 15 roundoffs).
    assert err.max() <= 1.5 * autocast_err.max()
    assert err.mean() <= 1.5 * autocast_err.mean()
    assert err.max() <= 0.03 * fp32.abs().max()


def test_predictions_agree(logits):
    fp32, bf16 = logits['fp32'], logits['bf16']
    differ = fp32.argmax(0) != bf16.argmax(0)
    assert differ.float().mean() <= 0.01
    # A pixel may change class only where fp32 itself was within rounding
    # of a tie: its margin below twice the largest logit error.
    margin = (fp32[1] - fp32[0]).abs()
    assert (margin[differ] <= 2 * (bf16 - fp32).abs().max()).all()


def test_copies_run_their_own_weights(logits):
    """A deep copy of a cast model (one per device, an EMA) runs its own
    layers in bf16 with float32 logits, and a pickled one loads and gives
    the same logits."""
    import copy
    import pickle
    model = cast_for_inference(build_tiny_model(size=SIZE))
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.decode_head.conv_seg.weight.zero_()
        twin.decode_head.conv_seg.bias.fill_(5)
    copied = seg_logits(twin)
    assert copied.dtype == torch.float32
    assert (copied == 5).all()
    assert torch.equal(seg_logits(model), logits['bf16'])
    loaded = pickle.loads(pickle.dumps(model))
    assert torch.equal(seg_logits(loaded), logits['bf16'])


def test_a_head_without_conv_seg_is_refused_before_any_cast():
    model = build_tiny_model(size=SIZE)
    del model.decode_head.conv_seg
    with pytest.raises(TypeError, match='UPerHead has none'):
        cast_for_inference(model)
    assert {t.dtype for _, t in network_tensors(model)
            if t.is_floating_point()} == {torch.float32}


def test_second_call_is_noop_and_casting_back_refused():
    model = build_tiny_model(size=SIZE)
    cast_for_inference(model)
    head_hooks = dict(model.decode_head.conv_seg._forward_hooks)
    hooks = dict(model.backbone._forward_pre_hooks)
    cast_for_inference(model, 'bfloat16')
    assert dict(model.decode_head.conv_seg._forward_hooks) == head_hooks
    assert dict(model.backbone._forward_pre_hooks) == hooks
    with pytest.raises(ValueError, match='cannot recover'):
        cast_for_inference(model, 'float32')
    with pytest.raises(ValueError, match='cannot recover'):
        cast_for_inference(model, torch.float16)


def test_float32_leaves_model_unchanged():
    model = build_tiny_model(size=SIZE)
    cast_for_inference(model, 'float32')
    assert {t.dtype for _, t in network_tensors(model)
            if t.is_floating_point()} == {torch.float32}
    assert not model.decode_head.conv_seg._forward_hooks
    assert not model.backbone._forward_pre_hooks
    # Not a cast: bf16 afterwards is still allowed.
    cast_for_inference(model, 'bfloat16')
    assert model.decode_head.conv_seg.weight.dtype == torch.bfloat16


@pytest.mark.parametrize('dtype', ['int8', 'float64', torch.float64,
                                   torch.int32, 'bf16', None])
def test_bad_dtype(dtype):
    model = build_tiny_model(size=SIZE)
    with pytest.raises(ValueError, match='Unsupported inference dtype'):
        cast_for_inference(model, dtype)
    assert model.decode_head.conv_seg.weight.dtype == torch.float32


def test_not_a_segmentor_or_not_float32():
    with pytest.raises(TypeError, match='EncoderDecoder'):
        cast_for_inference(torch.nn.Linear(2, 2))
    model = build_tiny_model(size=SIZE)
    model.decode_head.half()
    with pytest.raises(ValueError, match='expects float32 weights'):
        cast_for_inference(model)


def test_wrappers_and_ensembles_cast_every_segmentor():
    tta = SegTTAModelWithLogits(module=build_tiny_model(size=SIZE))
    assert cast_for_inference(tta) is tta
    assert tta.module.backbone.patch_embed.projection.weight.dtype == \
        torch.bfloat16

    first, second = build_tiny_model(size=SIZE), build_tiny_model(size=SIZE)
    cast_for_inference(first)
    ensemble = EnsembleSegmentor(models=[second, first])
    # The first member is refused: nothing is cast, not even the second.
    with pytest.raises(ValueError, match='cannot recover'):
        cast_for_inference(ensemble, 'float16')
    assert second.decode_head.conv_seg.weight.dtype == torch.float32
    cast_for_inference(ensemble, 'bfloat16')
    assert second.decode_head.conv_seg.weight.dtype == torch.bfloat16


@pytest.mark.parametrize('norm', ['BN', 'SyncBN'])
def test_conv_bn_runs_in_bf16_eval(norm):
    # UPerHead's blocks; SyncBN in eval mode normalises with its running
    # statistics, without a process group.
    torch.manual_seed(0)
    block = ConvModule(4, 8, 3, padding=1, norm_cfg=dict(type=norm)).eval()
    block.bn.running_mean.uniform_(-1, 1)
    block.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        expected = block(x)
        got = block.to(torch.bfloat16)(x.bfloat16())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected, atol=0.05, rtol=0.02)


def test_sdpa_backbone_in_bf16():
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(TINY_CONFIG))
    cfg.model.backbone.type = 'SwinTransformerSDPA'
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(x, mode='tensor')
        with torch.autocast('cpu', torch.bfloat16):
            autocast = model(x, mode='tensor').float()
        got = cast_for_inference(model)(x, mode='tensor')
    assert got.dtype == torch.float32
    # As test_logits_float32_and_close_to_fp32. Without the resize (tensor
    # mode) the CPU's autocast rounds exactly the same way (equal here on
    # torch 2.13); the bound leaves room for other kernels.
    err = (got - expected).abs().max()
    assert err <= 1.5 * (autocast - expected).abs().max()
    assert err <= 0.05 * expected.abs().max()
