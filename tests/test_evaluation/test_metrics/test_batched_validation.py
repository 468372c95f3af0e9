"""Validation in batches (the configs' val batch size of 8) gives the
numbers of one image at a time."""
import copy

import pytest
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmseg.registry import METRICS
from tiny_model import build_tiny_model

from conftest import TINY_CONFIG


def validate(model, cfg, batch_size):
    loader_cfg = copy.deepcopy(cfg.val_dataloader)
    loader_cfg.update(batch_size=batch_size, num_workers=0,
                      persistent_workers=False)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    evaluator = Evaluator(METRICS.build(cfg.val_evaluator))
    evaluator.dataset_meta = loader.dataset.metainfo
    for batch in loader:
        evaluator.process(model.val_step(batch), batch)
    return evaluator.evaluate(len(loader.dataset)), len(loader)


def test_val_batch_of_8_matches_one_at_a_time(demo_root):
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(TINY_CONFIG))
    assert cfg.val_dataloader.batch_size == 8
    cfg.val_dataloader.dataset.data_root = str(demo_root)
    model = build_tiny_model()
    one, num_batches_one = validate(model, cfg, 1)
    eight, num_batches_eight = validate(model, cfg, 8)
    assert num_batches_eight < num_batches_one  # batches were formed
    assert set(one) == set(eight)
    for key, value in one.items():
        assert eight[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
