"""reporting.summary: the report's model table."""
import pytest
from mmengine.config import Config

from mmseg_ptx.reporting.summary import _model_rows


@pytest.mark.parametrize('loss, expected', [
    (dict(type='DiceCELoss', ce_weight=0.5, dice_weight=0.5),
     'DiceCELoss: 0.5 x class-weighted CE + 0.5 x soft Dice'),
    (dict(type='CrossEntropyLoss'), 'CrossEntropyLoss'),
    ([dict(type='CrossEntropyLoss'), dict(type='DiceLoss')],
     'CrossEntropyLoss, DiceLoss'),
])
def test_loss_row_names_every_loss(loss, expected):
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    cfg.model.decode_head.loss_decode = loss
    rows = dict(_model_rows(cfg))
    assert rows['Loss function'] == expected
    assert rows['Input size'] == '512 x 512'
    assert rows['Architecture'] == 'EncoderDecoder + UPerHead'


def test_model_rows_see_through_test_time_wrappers():
    """tools/test.py --tta / --extra-model dump a wrapped model config over
    the training run's."""
    cfg = Config.fromfile('configs/upernet_swin-b_ptx-512.py')
    plain = _model_rows(cfg)
    inner = cfg.model
    cfg.model = dict(type='SegTTAModelWithLogits',
                     module=dict(type='EnsembleSegmentor',
                                 models=[inner, inner],
                                 checkpoints=['a.pth', 'b.pth']))
    assert _model_rows(cfg) == plain


def test_pictures_load_the_checkpoint_through_wrappers(tmp_path, demo_root):
    """A TTA-wrapped dumped config still draws with the checkpoint's
    weights (a wrapper's keys would not match them)."""
    from tiny_model import build_tiny_model, save_tiny_checkpoint

    from conftest import write_tiny_run_config
    from mmseg_ptx.reporting.summary import render_predictions
    ckpt = save_tiny_checkpoint(build_tiny_model(seed=3),
                                tmp_path / 'tiny.pth')
    cfg = Config.fromfile(
        str(write_tiny_run_config(tmp_path / 'cfg.py', demo_root)))
    kwargs = dict(checkpoint=str(ckpt), num_pos=1, num_neg=1, max_images=3,
                  device='cpu')
    plain = render_predictions(cfg, out_dir=str(tmp_path / 'a'), **kwargs)
    cfg.model = dict(type='SegTTAModelWithLogits', module=cfg.model)
    wrapped = render_predictions(cfg, out_dir=str(tmp_path / 'b'), **kwargs)
    assert wrapped == plain and plain
