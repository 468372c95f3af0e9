"""GreyToBGR, and training pipelines that stay grey until it: the same
tensors as loading in colour."""
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
    """The same pipeline loading in colour, without GreyToBGR."""
    steps = []
    for step in pipeline:
        step = dict(step)
        if step['type'] == 'GreyToBGR':
            continue
        if step['type'] == 'LoadDicomImageFromFile':
            step['color_type'] = 'color'
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
            ours, theirs = outs
            assert ours['inputs'].shape[0] == 3
            assert torch.equal(ours['inputs'], theirs['inputs'])
            assert torch.equal(ours['data_samples'].gt_sem_seg.data,
                               theirs['data_samples'].gt_sem_seg.data)
            assert (ours['data_samples'].metainfo ==
                    theirs['data_samples'].metainfo)
