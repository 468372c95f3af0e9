"""EnsembleSegmentor and SegTTAModelWithLogits on the tiny model."""
import copy

import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.dataset import pseudo_collate
from mmseg.registry import TRANSFORMS
from tiny_model import build_tiny_model, save_tiny_checkpoint

from mmseg_ptx.models import EnsembleSegmentor, SegTTAModelWithLogits
from mmseg_ptx.models.segmentors import (foreground_probability,
                                         probability_to_seg_logits,
                                         segmentors_of)


SIZE = 64  # small inputs keep the forward passes fast


@pytest.fixture(scope='module')
def model():
    return build_tiny_model(size=SIZE)


def packed_inputs(num=1, size=SIZE, flip=False):
    rng = np.random.default_rng(0)
    pipeline = Compose([TRANSFORMS.build(dict(type='PackSegInputs'))])
    out = []
    for i in range(num):
        img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        gt = np.zeros((size, size), np.uint8)
        gt[10:30, 20:40] = 1
        if flip:
            img = img[:, ::-1].copy()
        res = dict(img=img, img_path=f'img{i}', img_shape=(size, size),
                   ori_shape=(size, size), gt_seg_map=gt,
                   seg_fields=['gt_seg_map'])
        if flip:
            res.update(flip=True, flip_direction='horizontal')
        out.append(pipeline(res))
    return out


def probs_of(samples):
    return [foreground_probability(s.seg_logits.data) for s in samples]


def test_probability_round_trip():
    prob = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    back = probability_to_seg_logits(prob).softmax(dim=0)[1]
    torch.testing.assert_close(back, prob, atol=1e-6, rtol=0)
    one_channel = torch.rand(1, 3, 3)
    torch.testing.assert_close(foreground_probability(one_channel),
                               one_channel[0])
    with pytest.raises(ValueError, match='probabilities'):
        foreground_probability(torch.full((1, 2, 2), 3.0))


@torch.no_grad()
def test_ensemble_of_model_with_itself_equals_model(model, tmp_path):
    ckpt = save_tiny_checkpoint(model, tmp_path / 'tiny.pth')
    cfg = copy.deepcopy(model.cfg.model)
    ensemble = EnsembleSegmentor(models=[cfg, cfg],
                                 checkpoints=[str(ckpt), str(ckpt)]).eval()
    data = pseudo_collate(packed_inputs())
    expected = probs_of(model.test_step(copy.deepcopy(data)))
    out = ensemble.test_step(copy.deepcopy(data))
    for sample, exp in zip(out, expected):
        assert sample.seg_logits.data.shape[0] == 2
        torch.testing.assert_close(
            sample.seg_logits.data.softmax(dim=0)[1], exp, atol=1e-6,
            rtol=0)
        torch.testing.assert_close(sample.pred_sem_seg.data[0],
                                   (exp > 0.5).long())
        assert sample.gt_sem_seg.data.sum() > 0
    with pytest.raises(NotImplementedError):
        ensemble(torch.zeros(1, 3, 8, 8), mode='loss')


@torch.no_grad()
def test_ensemble_through_mmseg_init_model(model, tmp_path):
    """mmseg's init_model sets train_cfg and pretrained (to None) on any
    model config: an ensemble config loads through it too, and refuses
    other values."""
    from mmengine.config import Config
    from mmseg.apis import init_model
    ckpt = str(save_tiny_checkpoint(model, tmp_path / 'tiny.pth'))
    cfg = Config(dict(model.cfg))
    cfg.model = dict(type='EnsembleSegmentor',
                     models=[model.cfg.model, model.cfg.model],
                     checkpoints=[ckpt, ckpt])
    ensemble = init_model(cfg, device='cpu')
    assert isinstance(ensemble, EnsembleSegmentor)
    with pytest.raises(ValueError, match='only predicts'):
        EnsembleSegmentor(models=[model.cfg.model], train_cfg=dict())


def test_ensemble_weights_average_members(model):
    other = build_tiny_model(seed=1, size=SIZE)
    data = pseudo_collate(packed_inputs(num=1))
    p0 = probs_of(model.test_step(copy.deepcopy(data)))[0]
    p1 = probs_of(other.test_step(copy.deepcopy(data)))[0]
    assert (p0 - p1).abs().max() > 1e-3  # the members differ
    ensemble = EnsembleSegmentor(models=[model, other], weights=[3, 1])
    got = probs_of(ensemble.test_step(copy.deepcopy(data)))[0]
    torch.testing.assert_close(got, 0.75 * p0 + 0.25 * p1, atol=1e-6,
                               rtol=0)
    with pytest.raises(ValueError, match='weights'):
        EnsembleSegmentor(models=[model], weights=[-1])


@torch.no_grad()
def test_ensemble_members_pad_independently(model):
    # A member that pads at test time records padding_size in its samples;
    # a member without padding must not crop by it.
    padding = build_tiny_model(seed=1, size=SIZE)
    padding.data_preprocessor.test_cfg = dict(size_divisor=32)
    data = pseudo_collate(packed_inputs(size=50))
    p_pad = probs_of(padding.test_step(copy.deepcopy(data)))[0]
    p_plain = probs_of(model.test_step(copy.deepcopy(data)))[0]
    for members in ([padding, model], [model, padding]):
        got = probs_of(
            EnsembleSegmentor(models=members).test_step(copy.deepcopy(data)))
        assert got[0].shape == (50, 50)
        torch.testing.assert_close(got[0], (p_pad + p_plain) / 2,
                                   atol=1e-6, rtol=0)


@torch.no_grad()
def test_tta_model_keeps_mean_of_plain_and_flipped(model):
    plain, flipped = packed_inputs(), packed_inputs(flip=True)
    p_plain = probs_of(model.test_step(pseudo_collate(copy.deepcopy(plain))))
    p_flip = probs_of(
        model.test_step(pseudo_collate(copy.deepcopy(flipped))))
    # The flipped view's scores come back unflipped and differ from plain.
    assert (p_plain[0] - p_flip[0]).abs().max() > 1e-4
    tta = SegTTAModelWithLogits(module=model)
    data = dict(
        inputs=[[p['inputs'] for p in plain], [p['inputs'] for p in flipped]],
        data_samples=[[p['data_samples'] for p in plain],
                      [p['data_samples'] for p in flipped]])
    out = tta.test_step(data)
    assert len(out) == 1
    for sample, a, b in zip(out, p_plain, p_flip):
        mean = (a + b) / 2
        got = sample.seg_logits.data.softmax(dim=0)[1]
        torch.testing.assert_close(got, mean, atol=1e-6, rtol=0)
        torch.testing.assert_close(sample.pred_sem_seg.data[0],
                                   (mean > 0.5).long())
        assert sample.gt_sem_seg.data.sum() > 0


def test_tta_of_a_one_channel_head():
    """A sigmoid head's views hold probabilities already (mmseg applies
    the sigmoid): averaged as they are, cut at the head's own threshold."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    one_channel = build_tiny_model(size=SIZE)
    one_channel.decode_head.threshold = 0.3
    views = []
    for prob in (0.2, 0.6):
        view = SegDataSample()
        view.seg_logits = PixelData(data=torch.full((1, 2, 2), prob))
        views.append(view)
    [merged] = SegTTAModelWithLogits(module=one_channel).merge_preds([views])
    torch.testing.assert_close(merged.seg_logits.data,
                               torch.full((1, 2, 2), 0.4))
    assert merged.pred_sem_seg.data.eq(1).all()  # 0.4 > 0.3


def test_segmentors_of_wrappers(model):
    other = build_tiny_model(seed=1, size=SIZE)
    ensemble = EnsembleSegmentor(models=[model, other])
    assert segmentors_of(model) == [model]
    assert segmentors_of(SegTTAModelWithLogits(module=ensemble)) == [
        model, other]
    linear = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match='got Linear'):
        segmentors_of(linear)
    assert segmentors_of(EnsembleSegmentor(models=[model, linear]),
                         strict=False) == [model, linear]
