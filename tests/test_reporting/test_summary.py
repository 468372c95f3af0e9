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
