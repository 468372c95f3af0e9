"""fuse_conv_bn: BatchNorm folded into ConvModule convolutions computes
what the eval-mode network computes."""
import copy

import pytest
import torch
from mmcv.cnn import ConvModule
from tiny_model import build_tiny_model
from torch import nn

from mmseg_ptx.models import cast_for_inference, fuse_conv_bn


def randomise_statistics(model):
    """Running statistics and affine parameters far from the identity, so
    that an unfolded or wrongly folded norm shows."""
    gen = torch.Generator().manual_seed(3)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen))
            module.running_var.copy_(torch.rand(n, generator=gen) * 3 + 0.1)
            with torch.no_grad():
                module.weight.copy_(torch.randn(n, generator=gen))
                module.bias.copy_(torch.randn(n, generator=gen))
    return model


def logits(model, x):
    with torch.no_grad():
        return model(x, mode='tensor')


def test_uperhead_folded_same_logits():
    model = randomise_statistics(build_tiny_model(size=64))
    x = torch.randn(2, 3, 64, 64)
    expected = logits(model, x)
    norms = sum(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        for m in model.modules())
    assert fuse_conv_bn(model) == norms > 0
    assert not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        for m in model.modules())
    torch.testing.assert_close(logits(model, x), expected, rtol=1e-4,
                               atol=1e-4)
    assert fuse_conv_bn(model) == 0  # nothing left to fold


def test_folds_eval_statistics_even_in_train_mode():
    module = randomise_statistics(
        ConvModule(3, 4, 3, padding=1, norm_cfg=dict(type='BN')))
    x = torch.randn(2, 3, 8, 8)
    expected = module.eval()(x)
    module.train()
    assert fuse_conv_bn(module) == 1
    torch.testing.assert_close(module(x), expected)


@pytest.mark.parametrize('order, folded', [
    (('conv', 'norm', 'act'), 1),
    (('act', 'conv', 'norm'), 1),
    (('conv', 'act', 'norm'), 0),  # the norm sees the activation
    (('norm', 'conv', 'act'), 0),  # the norm sees the input
])
def test_only_a_norm_right_after_its_conv(order, folded):
    module = randomise_statistics(
        ConvModule(4, 4, 3, padding=1, norm_cfg=dict(type='BN'),
                   order=order)).eval()
    x = torch.randn(2, 4, 8, 8)
    expected = module(x)
    assert fuse_conv_bn(module) == folded
    torch.testing.assert_close(module(x), expected, rtol=1e-5, atol=1e-5)


def test_conv_bias_affine_free_norm_and_no_statistics():
    with_bias = randomise_statistics(
        ConvModule(3, 4, 1, bias=True, norm_cfg=dict(type='BN'))).eval()
    # ConvModule initialises the bias to 0, which would fold any way.
    with torch.no_grad():
        with_bias.conv.bias.uniform_(-1, 1)
    no_affine = ConvModule(
        3, 4, 1, norm_cfg=dict(type='BN', affine=False)).eval()
    no_affine.norm.running_var.fill_(4.0)
    no_stats = ConvModule(
        3, 4, 1, norm_cfg=dict(type='BN', track_running_stats=False))
    x = torch.randn(2, 3, 5, 5)
    for module, folded in ((with_bias, 1), (no_affine, 1), (no_stats, 0)):
        expected = module(x)
        assert fuse_conv_bn(module) == folded
        torch.testing.assert_close(module(x), expected)


def test_efficient_conv_bn_eval_module():
    module = randomise_statistics(
        ConvModule(3, 4, 3, norm_cfg=dict(type='BN'),
                   efficient_conv_bn_eval=True)).eval()
    x = torch.randn(1, 3, 6, 6)
    expected = module(x)
    # Without folding the outputs would match too: the norm must be gone,
    # and the conv-BN forward with it (it would be fed the Identity).
    assert fuse_conv_bn(module) == 1
    assert isinstance(module.norm, nn.Identity)
    assert not any(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        for m in module.modules())
    assert module.efficient_conv_bn_eval_forward is None
    torch.testing.assert_close(module(x), expected)
    assert fuse_conv_bn(module) == 0


def test_keeps_channels_last_and_dtype_then_casts():
    model = randomise_statistics(build_tiny_model(size=64))
    conv = model.decode_head.fpn_bottleneck.conv
    conv.weight.data = conv.weight.data.contiguous(
        memory_format=torch.channels_last)
    x = torch.randn(1, 3, 64, 64)
    expected = logits(copy.deepcopy(model), x)
    fuse_conv_bn(model)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.dtype == conv.bias.dtype == torch.float32
    # Folded first, then held in bf16, as FuseConvBNHook and
    # InferenceDtypeHook do it.
    cast_for_inference(model)
    torch.testing.assert_close(logits(model, x), expected, rtol=0.1,
                               atol=0.1)


def test_weight_standardised_convs_left_alone():
    """ConvWS/ConvAWS standardise their weight in forward, which would
    undo the folded scale."""
    x = torch.randn(2, 3, 8, 8)
    for conv_type in ('ConvWS', 'ConvAWS'):
        module = randomise_statistics(
            ConvModule(3, 4, 3, conv_cfg=dict(type=conv_type),
                       norm_cfg=dict(type='BN'))).eval()
        expected = module(x)
        assert fuse_conv_bn(module) == 0
        torch.testing.assert_close(module(x), expected)


def test_shared_conv_or_weight_left_alone():
    """Folding a convolution (or weight) used twice would change the
    other use."""
    def pair():
        return nn.Sequential(*(randomise_statistics(
            ConvModule(4, 4, 3, padding=1, norm_cfg=dict(type='BN'))).eval()
                               for _ in range(2)))

    x = torch.randn(1, 4, 8, 8)
    shared_conv, shared_weight, separate = pair(), pair(), pair()
    shared_conv[1].conv = shared_conv[0].conv
    shared_weight[1].conv.weight = shared_weight[0].conv.weight
    for model, folded in ((shared_conv, 0), (shared_weight, 0),
                          (separate, 2)):
        expected = model(x)
        assert fuse_conv_bn(model) == folded
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
