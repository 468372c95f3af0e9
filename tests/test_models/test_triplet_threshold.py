import numpy as np
import pytest
import torch
from mmseg.registry import MODELS

from mmseg_ptx.models import TripletThresholdPostProcessor


def blob_map(size=64, value=0.9, box=(10, 30, 10, 30), halo=0.4):
    """A square of ``value`` inside a one-pixel ring of ``halo``."""
    prob = np.full((size, size), 0.05, np.float32)
    y0, y1, x0, x1 = box
    prob[y0 - 1:y1 + 1, x0 - 1:x1 + 1] = halo
    prob[y0:y1, x0:x1] = value
    return prob


def test_below_min_area_is_empty():
    prob = blob_map()  # 400 pixels above 0.75
    pp = TripletThresholdPostProcessor(0.75, 401, 0.3)
    mask = pp(prob)
    assert mask.dtype == np.uint8 and mask.shape == prob.shape
    assert mask.sum() == 0


def test_at_min_area_binarises_at_bottom_threshold():
    prob = blob_map()
    mask = TripletThresholdPostProcessor(0.75, 400, 0.3)(prob)
    np.testing.assert_array_equal(mask, (prob > 0.3).astype(np.uint8))
    assert mask.sum() == 22 * 22  # the halo comes in
    # bottom above the halo: only the core
    mask = TripletThresholdPostProcessor(0.75, 400, 0.5)(prob)
    assert mask.sum() == 400


def test_tensor_input_and_plain_threshold():
    prob = torch.rand(32, 48, generator=torch.Generator().manual_seed(0))
    mask = TripletThresholdPostProcessor(0.5, 0, 0.5)(prob)
    np.testing.assert_array_equal(mask, (prob > 0.5).numpy())


def test_component_removal():
    prob = blob_map(halo=0.05)
    prob[50:53, 50:53] = 0.9  # 9-pixel speck
    pp = TripletThresholdPostProcessor(0.75, 100, 0.3, min_component_area=10)
    mask = pp(prob)
    assert mask[50:53, 50:53].sum() == 0
    assert mask.sum() == 400
    keep = TripletThresholdPostProcessor(0.75, 100, 0.3, min_component_area=9)
    assert keep(prob).sum() == 409


def test_closing_fills_a_gap():
    prob = blob_map(halo=0.05)
    prob[:, 20] = 0.05  # a one-pixel cut through the blob
    open_mask = TripletThresholdPostProcessor(0.75, 100, 0.3)(prob)
    assert open_mask[10:30, 20].sum() == 0
    closed = TripletThresholdPostProcessor(0.75, 100, 0.3,
                                           closing_kernel=5)(prob)
    assert closed[12:28, 20].all()
    assert closed.max() == 1


@pytest.mark.parametrize('size', [1, 3, 5, 7])
def test_closing_only_adds_pixels(size):
    prob = np.zeros((12, 12), np.float32)
    prob[3:6, 3:6] = 0.9
    prob[8, 8:11] = 0.9
    plain = TripletThresholdPostProcessor(0.75, 1, 0.3)(prob)
    closed = TripletThresholdPostProcessor(0.75, 1, 0.3,
                                           closing_kernel=size)(prob)
    assert (closed >= plain).all()


@pytest.mark.parametrize('kwargs', [
    dict(top_threshold=1.0), dict(top_threshold=0), dict(bottom_threshold=-1),
    dict(top_threshold=0.3, bottom_threshold=0.5), dict(min_area=-1),
    dict(min_area=1.5), dict(min_component_area=-2), dict(closing_kernel=-1),
    dict(closing_kernel=4),
    dict(top_threshold='0.7')
])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        TripletThresholdPostProcessor(**kwargs)


def test_rejects_non_2d():
    with pytest.raises(ValueError, match='shape'):
        TripletThresholdPostProcessor()(np.zeros((1, 4, 4)))


def test_build_from_registry_and_metric():
    from mmseg_ptx.evaluation import PneumothoraxMetric
    cfg = dict(type='TripletThresholdPostProcessor', top_threshold=0.6,
               min_area=10, bottom_threshold=0.2, closing_kernel=3)
    pp = MODELS.build(cfg)
    assert isinstance(pp, TripletThresholdPostProcessor)
    assert pp.to_dict() == dict(cfg, min_component_area=0)
    metric = PneumothoraxMetric(postprocess=cfg)
    assert isinstance(metric.postprocess, TripletThresholdPostProcessor)
