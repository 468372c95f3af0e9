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


def test_float64_maps_are_cut_in_float32_as_tensors_are():
    """0.75 + 1e-12 is 0.75 in float32: not above a 0.75 threshold, for a
    numpy map as for the same map as a tensor (and on the device)."""
    prob = np.full((4, 4), 0.75 + 1e-12)
    pp = TripletThresholdPostProcessor(0.75, 0, 0.75)
    for given in (prob, torch.from_numpy(prob)):
        assert not pp(given).any()
    assert not pp.mask_tensor(torch.from_numpy(prob)).any()


def test_component_removal():
    prob = blob_map(halo=0.05)
    prob[50:53, 50:53] = 0.9  # 9-pixel speck
    pp = TripletThresholdPostProcessor(0.75, 100, 0.3, min_component_area=10)
    mask = pp(prob)
    assert mask[50:53, 50:53].sum() == 0
    assert mask.sum() == 400
    keep = TripletThresholdPostProcessor(0.75, 100, 0.3, min_component_area=9)
    assert keep(prob).sum() == 409


def test_components_touching_at_a_corner_are_one():
    """8-connectivity, as documented: two 2x2 squares meeting at a corner
    are one 8-pixel component, kept by min_component_area=5."""
    prob = np.zeros((8, 8), np.float32)
    prob[1:3, 1:3] = prob[3:5, 3:5] = 0.9
    pp = TripletThresholdPostProcessor(0.75, 1, 0.3, min_component_area=5)
    assert pp(prob).sum() == 8


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


@pytest.mark.parametrize('kwargs', [
    dict(min_area=401),  # emptied
    dict(min_area=400),  # binarised at the bottom threshold
    dict(min_area=0, bottom_threshold=0.75),
    dict(min_area=100, min_component_area=10),  # on the host
    dict(min_area=100, closing_kernel=5),
])
def test_mask_tensor_is_the_same_mask_without_waiting(kwargs):
    from mmseg_ptx.utils import HostSyncRecorder
    prob = blob_map()
    prob[50:53, 50:53] = 0.9  # a speck
    # Values at the thresholds themselves (compared in float32).
    prob[0, :4] = np.float32([0.3, 0.75, 0.5, 0.2])
    kwargs = dict(dict(top_threshold=0.75, bottom_threshold=0.3), **kwargs)
    pp = TripletThresholdPostProcessor(**kwargs)
    on_device = kwargs.get('min_component_area', 0) == 0 and kwargs.get(
        'closing_kernel', 0) == 0
    for tensor in (torch.from_numpy(prob), torch.from_numpy(prob).double()):
        with HostSyncRecorder() as syncs:
            mask = pp.mask_tensor(tensor)
        assert mask.dtype == torch.bool and mask.device == tensor.device
        np.testing.assert_array_equal(mask.numpy(), pp(prob).astype(bool))
        if on_device:
            assert syncs.total == 0, syncs.report()
    with pytest.raises(ValueError, match='shape'):
        pp.mask_tensor(torch.zeros(1, 4, 4))


def test_metric_asks_for_the_mask_on_the_device():
    from mmseg_ptx.evaluation import PneumothoraxMetric
    pp = TripletThresholdPostProcessor(0.75, 100, 0.3)
    prob = torch.from_numpy(blob_map())
    logit = torch.logit(prob.double()).float()
    sample = dict(
        img_path='a.png',
        seg_logits=dict(data=torch.stack([torch.zeros_like(logit), logit])),
        gt_sem_seg=dict(data=(prob > 0.5).long()[None]))
    results = []
    # The device path, then the host path (a plain callable: __call__).
    for postprocess in (pp, lambda prob: pp(prob)):
        metric = PneumothoraxMetric(postprocess=postprocess)
        metric.process({}, [sample])
        results.append(metric.evaluate(1))
    # (assert_equal: kaggle_dice_neg is NaN, there being no negative)
    np.testing.assert_equal(results[0], results[1])
    assert results[0]['dice_pp'] < 1

    class Spy(TripletThresholdPostProcessor):
        calls = 0

        def mask_tensor(self, prob):
            Spy.calls += 1
            return super().mask_tensor(prob)

    metric = PneumothoraxMetric(postprocess=Spy(0.75, 100, 0.3))
    metric.process({}, [sample])
    np.testing.assert_equal(metric.evaluate(1), results[0])
    assert Spy.calls == 1


def test_mask_tensor_follows_a_subclass_call():
    class Inverted(TripletThresholdPostProcessor):

        def __call__(self, prob):
            return 1 - super().__call__(prob)

    prob = torch.from_numpy(blob_map())
    pp = Inverted(0.75, 100, 0.3)
    np.testing.assert_array_equal(pp.mask_tensor(prob).numpy(),
                                  pp(prob).astype(bool))
