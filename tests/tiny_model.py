"""The tiny demo config's segmentor with random weights, for the tests."""
from __future__ import annotations

from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from conftest import TINY_CONFIG

import mmseg_ptx  # noqa: F401


def build_tiny_model(seed: int = 0, size: int = 128) -> torch.nn.Module:
    """Untrained tiny UPerNet-Swin (2 classes), eval mode.

    ``size`` is the data preprocessor's padded input size; smaller is
    faster for unit tests that feed their own images.
    """
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(TINY_CONFIG))
    cfg.model.data_preprocessor.size = (size, size)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.cfg = cfg
    return model.eval()


def save_tiny_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """A checkpoint ``mmseg.apis.init_model`` can load."""
    meta = dict(dataset_meta=dict(classes=('background', 'pneumothorax'),
                                  palette=[[0, 0, 0], [255, 0, 0]]))
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, path)
    return path
