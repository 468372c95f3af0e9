"""The shipped configs load through mmseg:: inheritance and build."""
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

import mmseg_ptx  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SWIN_B = osp.join(ROOT, 'configs', 'upernet_swin-b_ptx-512.py')
TINY = osp.join(ROOT, 'configs', 'upernet_swin-nano_ptx-demo-128.py')


def test_swin_b_config_matches_reference_recipe():
    cfg = Config.fromfile(SWIN_B)
    backbone = cfg.model.backbone
    assert backbone.type == 'SwinTransformer'
    assert backbone.embed_dims == 128
    assert backbone.depths == [2, 2, 18, 2]
    assert backbone.num_heads == [4, 8, 16, 32]
    assert backbone.window_size == 12
    assert backbone.pretrain_img_size == 384
    assert backbone.init_cfg.checkpoint.startswith(
        'https://download.openmmlab.com/mmsegmentation/v0.5/pretrain/swin/'
        'swin_base_patch4_window12_384_22k')
    head = cfg.model.decode_head
    assert head.type == 'UPerHead' and head.channels == 512
    assert head.num_classes == 2
    assert head.loss_decode.type == 'DiceCELoss'
    assert cfg.model.data_preprocessor.size == (512, 512)
    opt = cfg.optim_wrapper
    assert opt.constructor == 'MergedParamGroupsOptimWrapperConstructor'
    assert opt.optimizer.type == 'AdamW'
    assert opt.optimizer.lr == 1e-4 and opt.optimizer.weight_decay == 0.01
    assert opt.paramwise_cfg.custom_keys[
        'relative_position_bias_table'].decay_mult == 0.
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert cfg.train_cfg.max_epochs == 200 and cfg.train_cfg.val_interval == 1
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.default_hooks.checkpoint.save_best == 'dice'
    assert cfg.custom_imports.imports == ['mmseg_ptx']


def test_swin_b_builds_121m_parameters_without_download():
    cfg = Config.fromfile(SWIN_B)
    model = MODELS.build(cfg.model)  # init_weights (the download) not run
    n_params = sum(p.numel() for p in model.parameters())
    assert 120e6 < n_params < 122.5e6, n_params


def _tiny_batch(model, size=64, n=2):
    torch.manual_seed(0)
    inputs = [torch.randint(0, 255, (3, size, size)).float() for _ in range(n)]
    samples = []
    for _ in range(n):
        gt = torch.zeros(1, size, size, dtype=torch.long)
        gt[:, 10:30, 5:20] = 1
        sample = SegDataSample(gt_sem_seg=PixelData(data=gt))
        sample.set_metainfo(dict(img_shape=(size, size),
                                 ori_shape=(size, size),
                                 pad_shape=(size, size)))
        samples.append(sample)
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples),
                                   training=True)


def test_tiny_config_forward_backward():
    cfg = Config.fromfile(TINY)
    model = MODELS.build(cfg.model)
    model.init_weights()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params < 5e6
    data = _tiny_batch(model, size=128)
    losses = model(**data, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        preds = model(data['inputs'], data['data_samples'], mode='predict')
    assert preds[0].seg_logits.data.shape == (2, 128, 128)


@pytest.mark.parametrize('config', [SWIN_B, TINY])
def test_configs_use_plugin_components(config):
    cfg = Config.fromfile(config)
    assert cfg.train_dataloader.dataset.type == 'SIIMPneumothoraxDataset'
    assert cfg.train_dataloader.sampler.type == 'ClassBalancedSampler'
    assert cfg.val_evaluator.type == 'PneumothoraxMetric'
    hook_types = {h.type for h in cfg.custom_hooks}
    assert {'PRCurveHook', 'TrainSegMetricsHook',
            'SyncBuffersHook'} <= hook_types


CONFIGS = sorted(
    osp.join(ROOT, 'configs', name)
    for name in os.listdir(osp.join(ROOT, 'configs')) if name.endswith('.py'))


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_every_config_builds(config):
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)  # init_weights (the download) not run
    assert model.decode_head.num_classes == 2


def test_fast_config_is_the_recipe_plus_speed_switches():
    recipe = Config.fromfile(SWIN_B).to_dict()
    fast = Config.fromfile(
        osp.join(ROOT, 'configs', 'upernet_swin-b_ptx-512_fast.py')).to_dict()
    assert fast['model']['backbone'].pop('type') == 'SwinTransformerSDPA'
    assert fast['optim_wrapper'].pop('type') == 'AmpOptimWrapper'
    assert fast['optim_wrapper'].pop('dtype') == 'bfloat16'
    assert fast['optim_wrapper'].pop('loss_scale') == 1.0
    assert fast['optim_wrapper']['optimizer'].pop('fused') is True
    assert fast['custom_hooks'].pop() == dict(type='ChannelsLastHook')
    assert fast['model']['data_preprocessor'].pop('non_blocking') is True
    assert fast['default_hooks'].pop('runtime_info') == dict(
        type='DeferredRuntimeInfoHook')
    recipe['model']['backbone'].pop('type')
    recipe['optim_wrapper'].pop('type')
    assert fast == recipe
    # cudnn.benchmark is on in both: mmseg's default_runtime sets it.
    assert recipe['env_cfg']['cudnn_benchmark'] is True


def test_png_config_labels_the_images_as_the_dicom_config(demo_root):
    """The PNG re-release config reads the same labels from the mask PNGs
    as the recipe decodes from the RLE CSV, for the same ImageIds, in its
    train, test and TTA pipelines."""
    from mmseg.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    png_config = osp.join(ROOT, 'configs', 'upernet_swin-b_ptx-512_png.py')
    samples = {}
    for name, config in (('dicom', SWIN_B), ('png', png_config)):
        cfg = Config.fromfile(config)
        labels = ('LoadRLEAnnotations'
                  if name == 'dicom' else 'LoadBinaryMaskFromFile')
        assert cfg.tta_pipeline[1]['transforms'][2][0]['type'] == labels
        assert cfg.train_dataloader.dataset.pipeline[1]['type'] == labels
        for split in ('train', 'val'):
            loader = cfg[f'{split}_dataloader']
            # The training images through the test pipeline: the same
            # labels, without the random augmentation.
            dataset = DATASETS.build(
                dict(loader.dataset, data_root=str(demo_root),
                     pipeline=cfg.test_dataloader.dataset.pipeline))
            samples[name, split] = {
                dataset.get_data_info(i)['image_id']: i
                for i in range(len(dataset))}, dataset
    for split in ('train', 'val'):
        (dicom_ids, dicom), (png_ids, png) = (samples['dicom', split],
                                              samples['png', split])
        assert set(dicom_ids) == set(png_ids)
        positive = 0
        for image_id, i in dicom_ids.items():
            a = dicom[i]['data_samples'].gt_sem_seg.data
            b = png[png_ids[image_id]]['data_samples'].gt_sem_seg.data
            assert torch.equal(a, b), image_id
            positive += bool(a.any())
        assert positive > 0
