"""reporting.history: the names PRCurveHook writes and the report reads."""
from mmseg_ptx.reporting.history import (PROGRESS_UNITS, curve_tag,
                                         progress_key, train_head_key)


def test_curve_tag():
    assert curve_tag(5, 50) == 'epoch_005'
    assert curve_tag(0, 2000) == 'iter_002000'  # iteration-based training
    assert curve_tag(None, None) is None  # outside training


def test_progress_key():
    assert progress_key([dict(epoch=1, iter=10), dict(epoch=2)]) == 'epoch'
    assert progress_key([dict(epoch=0, iter=10), dict(epoch=0)]) == 'iter'
    assert PROGRESS_UNITS['iter'] == 'iteration'


def test_train_head_key_finds_a_cascades_last_head():
    """OCRNet's CascadeEncoderDecoder names its heads' losses decode_0.,
    decode_1., ...: the report reads the last head's training Dice."""
    assert train_head_key([{'train/decode.dice_seg': 0.5}],
                          'dice_seg') == 'train/decode.dice_seg'
    cascade = [{'dice': 0.4},
               {'train/decode_0.dice_seg': 0.3,
                'train/decode_1.dice_seg': 0.5,
                'train/decode_1.iou_seg': 0.33}]
    assert train_head_key(cascade, 'dice_seg') == 'train/decode_1.dice_seg'
    assert train_head_key(cascade, 'iou_seg') == 'train/decode_1.iou_seg'
    assert train_head_key([{'dice': 0.4}], 'dice_seg') == \
        'train/decode.dice_seg'
