"""GreyToBGR, and pipelines (training, test, TTA) that stay grey until it:
the same tensors as loading in colour."""
import glob
import random

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose

import mmseg_ptx  # noqa: F401  (registers the transforms; first: compat)
from mmseg.registry import TRANSFORMS
from mmseg.utils import register_all_modules
from mmseg_ptx.datasets import SIIMPneumothoraxDataset, write_demo_dataset

register_all_modules(init_default_scope=True)


@pytest.mark.parametrize('dtype', [np.uint8, np.uint16, np.float32,
                                   np.float64])
@pytest.mark.parametrize('shape', [(5, 7), (5, 7, 1)])
def test_repeats_the_channel(dtype, shape):
    img = np.arange(35, dtype=dtype).reshape(shape)
    out = TRANSFORMS.build(dict(type='GreyToBGR'))(dict(img=img))['img']
    assert out.shape == (5, 7, 3) and out.dtype == dtype
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], img.reshape(5, 7))
    # Channel-first in memory: PackSegInputs' transpose copies nothing.
    chw = np.ascontiguousarray(out.transpose(2, 0, 1))
    assert np.shares_memory(chw, out)


def test_colour_image_is_an_error():
    transform = TRANSFORMS.build(dict(type='GreyToBGR'))
    with pytest.raises(ValueError, match=r'shape \(5, 7, 3\) for b\.dcm'):
        transform(dict(img=np.zeros((5, 7, 3), np.uint8), img_path='b.dcm'))


def colour_variant(pipeline):
    """The same pipeline loading in colour, without GreyToBGR (also inside
    a TestTimeAug's lists of alternatives)."""
    steps = []
    for step in pipeline:
        if isinstance(step, list):
            step = colour_variant(step)
            if step:
                steps.append(step)
            continue
        step = dict(step)
        if step['type'] == 'GreyToBGR':
            continue
        if step['type'] == 'LoadDicomImageFromFile':
            step['color_type'] = 'color'
        if step['type'] == 'TestTimeAug':
            step['transforms'] = colour_variant(step['transforms'])
        steps.append(step)
    return steps


@pytest.fixture(scope='module')
def demo_samples(tmp_path_factory):
    """What the training pipeline gets from the dataset, per image."""
    root = str(tmp_path_factory.mktemp('demo'))
    # Not a multiple of either config's sizes: every resize interpolates.
    write_demo_dataset(root, 4, seed=3, size=600, positive_fraction=0.5)
    dataset = SIIMPneumothoraxDataset(data_root=root)
    return [dataset.get_data_info(i) for i in range(len(dataset))]


@pytest.mark.parametrize('config', [
    'configs/upernet_swin-b_ptx-512.py',
    'configs/upernet_swin-nano_ptx-demo-128.py'
])
def test_grey_training_pipeline_equals_colour_one(config, demo_samples):
    pipeline = Config.fromfile(config).train_pipeline
    assert pipeline[-2]['type'] == 'GreyToBGR'
    grey = Compose(pipeline)
    colour = Compose(colour_variant(pipeline))
    for seed in range(6):
        for sample in demo_samples:
            outs = []
            for compose in (grey, colour):
                np.random.seed(seed)
                random.seed(seed)
                outs.append(compose(dict(sample)))
            assert_same_packed(*outs)


def assert_same_packed(ours, theirs):
    assert ours['inputs'].shape[0] == 3
    assert torch.equal(ours['inputs'], theirs['inputs'])
    assert torch.equal(ours['data_samples'].gt_sem_seg.data,
                       theirs['data_samples'].gt_sem_seg.data)
    assert ours['data_samples'].metainfo == theirs['data_samples'].metainfo


@pytest.mark.parametrize('config', [
    'configs/upernet_swin-b_ptx-512.py',
    'configs/upernet_swin-nano_ptx-demo-128.py'
])
def test_grey_test_and_tta_pipelines_equal_colour_ones(config, demo_samples):
    cfg = Config.fromfile(config)
    assert cfg.test_pipeline[0]['color_type'] == 'grayscale'
    assert cfg.tta_pipeline[0]['color_type'] == 'grayscale'
    for pipeline in (cfg.test_pipeline, cfg.tta_pipeline):
        grey = Compose(pipeline)
        colour = Compose(colour_variant(pipeline))
        assert len(colour_variant(pipeline)) == len(pipeline) - (
            pipeline is cfg.test_pipeline)
        for sample in demo_samples:
            ours, theirs = grey(dict(sample)), colour(dict(sample))
            if pipeline is cfg.test_pipeline:
                assert_same_packed(ours, theirs)
                continue
            # TestTimeAug: lists of views, plain and flipped.
            assert len(ours['inputs']) == len(theirs['inputs']) == 2
            for i in range(2):
                assert_same_packed(
                    dict(inputs=ours['inputs'][i],
                         data_samples=ours['data_samples'][i]),
                    dict(inputs=theirs['inputs'][i],
                         data_samples=theirs['data_samples'][i]))


def test_tta_resizes_like_the_test_pipeline():
    """Each config's TTA views are at its test pipeline's size (the demo
    config once inherited the Swin-B TTA, at 512 x 512)."""
    configs = sorted(glob.glob('configs/*.py'))
    assert len(configs) >= 6
    for config in configs:
        cfg = Config.fromfile(config)
        (resize, ) = [t for t in cfg.test_pipeline if t['type'] == 'Resize']
        (tta, ) = [t for t in cfg.tta_pipeline if t['type'] == 'TestTimeAug']
        assert tta['transforms'][0] == [resize], config
