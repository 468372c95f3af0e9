"""mmseg_ptx.apis.pipelines: which pipeline a config gives its model, and
where its pipelines disagree."""
from pathlib import Path

import pytest
from mmengine.config import Config

from conftest import ROOT, TINY_CONFIG, write_test_pipeline_child
from mmseg_ptx.apis import (build_inference_pipeline, config_test_pipeline,
                            pipeline_difference, pipeline_mismatch,
                            tta_pipeline_difference, val_pipeline_difference)


def child_config(tmp_path: Path, extra: str = '') -> Config:
    """A child of the tiny config that redefined only test_pipeline (128
    px where the base's data loaders resize to 256), and ``extra``."""
    return Config.fromfile(str(write_test_pipeline_child(
        tmp_path / 'child.py', 128, extra)))


def test_pipeline_difference_ignores_scopes_and_tuples():
    first = [dict(type='LoadDicomImageFromFile'),
             dict(type='Resize', scale=(512, 512)),
             dict(type='LoadRLEAnnotations'), dict(type='PackSegInputs')]
    same = [dict(type='mmseg.LoadDicomImageFromFile'),
            dict(type='mmseg.Resize', scale=[512, 512]),
            dict(type='PackSegInputs')]
    assert pipeline_difference(first, same) is None
    assert pipeline_difference(first, same[:2]) == '2 steps instead of 3'
    assert pipeline_difference(first, [same[0], dict(type='Resize',
                                                     scale=[768, 768])]) == (
        "step 1: {'type': 'Resize', 'scale': [768, 768]} instead of "
        "{'type': 'Resize', 'scale': [512, 512]}")


@pytest.mark.parametrize('config', sorted((ROOT / 'configs').glob('*.py')),
                         ids=lambda p: p.stem)
def test_this_repositorys_configs_agree(config):
    cfg = Config.fromfile(str(config))
    assert pipeline_mismatch(cfg) is None
    assert tta_pipeline_difference(cfg) is None


def test_a_child_that_sets_only_test_pipeline(tmp_path):
    """Every tool runs test_dataloader's pipeline (what tools/test.py
    runs; tools/infer.py took test_pipeline first), and says the two
    differ."""
    cfg = child_config(tmp_path)
    assert config_test_pipeline(cfg) == list(
        cfg.test_dataloader.dataset.pipeline)
    _, steps = build_inference_pipeline(cfg)
    assert steps.transforms[0].scale == (256, 256)  # the data loader's
    assert pipeline_mismatch(cfg) == (
        "the tools run test_dataloader's pipeline, which differs from the "
        "config's test_pipeline (step 1: {'type': 'Resize', 'scale': "
        "[128, 128], 'keep_ratio': True} instead of {'type': 'Resize', "
        "'scale': [256, 256], 'keep_ratio': True}): where test_pipeline "
        'was changed, set val_dataloader and test_dataloader to it as well')
    # A model config without data loaders: its test_pipeline.
    model_only = Config(dict(model=cfg.model,
                             test_pipeline=cfg.test_pipeline))
    assert config_test_pipeline(model_only)[1]['scale'] == (128, 128)
    assert pipeline_mismatch(model_only) is None
    # Data loaders without a test_pipeline variable: nothing to compare.
    cfg.pop('test_pipeline')
    assert pipeline_mismatch(cfg) is None


def test_inference_needs_a_plain_test_pipeline():
    cfg = Config.fromfile(TINY_CONFIG)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    with pytest.raises(ValueError, match='Use the plain test pipeline for '
                       'inference; predict_probabilities\\(tta=True\\)'):
        build_inference_pipeline(cfg)
    model_only = Config(dict(model=cfg.model))
    with pytest.raises(ValueError, match='the config has no test pipeline'):
        build_inference_pipeline(model_only)


def test_validation_and_test_pipelines_that_differ(tmp_path):
    cfg = child_config(tmp_path, '''
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
''')
    # test_dataloader = val_dataloader was resolved in the base.
    assert val_pipeline_difference(cfg) == (
        "step 1: {'type': 'Resize', 'scale': [128, 128], 'keep_ratio': "
        "True} instead of {'type': 'Resize', 'scale': [256, 256], "
        "'keep_ratio': True}")
    assert val_pipeline_difference(Config.fromfile(str(TINY_CONFIG))) is None


def test_the_pipeline_inside_a_wrapped_test_set(tmp_path):
    """A RepeatDataset's data set's pipeline; a ConcatDataset's where its
    members share one, else test_pipeline (and no warning: which member's
    would be the tools' is unknown)."""
    cfg = Config.fromfile(str(TINY_CONFIG))
    inner = cfg.test_dataloader.dataset
    resize = [dict(type='LoadDicomImageFromFile'),
              dict(type='Resize', scale=(64, 64))]
    cfg.test_dataloader.dataset = dict(type='RepeatDataset', times=2,
                                       dataset=dict(inner, pipeline=resize))
    assert config_test_pipeline(cfg) == resize
    assert pipeline_mismatch(cfg).startswith(
        "the tools run test_dataloader's pipeline, which differs")
    members = [dict(inner, pipeline=resize), dict(inner, pipeline=resize)]
    cfg.test_dataloader.dataset = dict(type='ConcatDataset',
                                       datasets=members)
    assert config_test_pipeline(cfg) == resize
    cfg.test_dataloader.dataset.datasets[1].pipeline = cfg.test_pipeline
    assert config_test_pipeline(cfg) == list(cfg.test_pipeline)
    assert pipeline_mismatch(cfg) is None


def test_tta_pipeline_of_another_size(tmp_path):
    """A child that moves its test pipeline to another size, correctly,
    but not its tta_pipeline: tools/test.py --tta would test the base's
    size. A TestTimeAug with several scales is a difference too."""
    cfg = child_config(tmp_path, '''
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
''')
    assert pipeline_mismatch(cfg) is None
    assert tta_pipeline_difference(cfg) == (
        "step 1: {'type': 'Resize', 'scale': [256, 256], 'keep_ratio': "
        "True} instead of {'type': 'Resize', 'scale': [128, 128], "
        "'keep_ratio': True}")
    resize = cfg.tta_pipeline[1]['transforms'][0]
    resize[0]['scale'] = (128, 128)
    assert tta_pipeline_difference(cfg) is None
    resize.append(dict(type='Resize', scale=(192, 192), keep_ratio=True))
    assert tta_pipeline_difference(cfg) == (
        'TestTimeAug has 2 choices of Resize, Resize')
