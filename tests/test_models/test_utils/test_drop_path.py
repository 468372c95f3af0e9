"""TensorDropPath: mmcv's DropPath, traced once for every rate."""
import pytest
import torch
from mmcv.cnn.bricks.drop import DropPath
from conftest import needs_recent_dynamo
from torch._dynamo.utils import counters

import mmseg_ptx  # noqa: F401  (registers the modules)
from mmseg.models.backbones import SwinTransformer
from mmseg.registry import MODELS
from mmseg_ptx.engine.hooks import compile_modules
from mmseg_ptx.models import SwinTransformerSDPA, TensorDropPath


def run_seeded(module, x, seed=0):
    torch.manual_seed(seed)
    return module(x)


@pytest.mark.parametrize('prob', [0.0, 0.3, 0.7])
def test_eager_is_mmcv_drop_path_bit_for_bit(prob):
    x = torch.randn(64, 5, 3)
    stock, ours = DropPath(prob), MODELS.build(
        dict(type='TensorDropPath', drop_prob=prob))
    assert torch.equal(run_seeded(ours, x), run_seeded(stock, x))
    ours.eval()
    assert ours(x) is x


def test_compiled_eval_keeps_every_path(monkeypatch):
    # The branch dynamo traces, without compiling: in eval mode nothing
    # is dropped or scaled.
    from mmseg_ptx.models.utils import drop_path
    monkeypatch.setattr(drop_path, 'is_compiling', lambda: True)
    module = TensorDropPath(0.5).eval()
    x = torch.randn(64, 5, 3)
    assert torch.equal(module(x), x)
    assert not torch.equal(module.train()(x), x)


def test_from_stock_keeps_rate_mode_and_state_dict():
    stock = DropPath(0.25)
    stock.eval()
    ours = TensorDropPath.from_stock(stock)
    assert ours.drop_prob == 0.25 and not ours.training
    assert ours.keep_prob.item() == pytest.approx(0.75)
    assert ours.state_dict() == {}  # nothing new in checkpoints


@pytest.mark.parametrize('prob', [0.0, 0.4])
def test_compiled_matches_eager(prob):
    torch._dynamo.reset()
    module = TensorDropPath(prob)
    x = torch.randn(256, 4)
    expected = run_seeded(DropPath(prob), x)
    got = run_seeded(torch.compile(module, backend='eager'), x)
    # The same samples dropped, the kept ones scaled alike.
    assert torch.equal(got == 0, expected == 0)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    module.eval()
    torch.testing.assert_close(module(x), x)


def compiled_block_graphs(backbone_type, **cfg):
    """Graphs dynamo traces for one train step of a backbone whose Swin
    blocks are compiled one by one."""
    torch._dynamo.reset()
    counters.clear()
    backbone = backbone_type(
        embed_dims=16,
        depths=(2, 4),
        num_heads=(1, 2),
        strides=(4, 2),
        out_indices=(0, 1),
        window_size=4,
        drop_path_rate=0.3,
        **cfg)
    holder = torch.nn.Module()
    holder.backbone = backbone
    compile_modules(holder, ['backbone'], blocks=['SwinBlock'],
                    backend='eager')
    backbone.train()
    outs = backbone(torch.randn(2, 3, 32, 32))
    sum(o.sum() for o in outs).backward()
    return counters['stats']['unique_graphs']


@needs_recent_dynamo
def test_blocks_share_graphs_across_drop_rates():
    # 6 blocks with 6 drop rates; 4 distinct (stage, shifted) kinds.
    assert compiled_block_graphs(SwinTransformer) == 6
    assert compiled_block_graphs(SwinTransformerSDPA) == 4
