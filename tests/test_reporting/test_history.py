"""reporting.history: the names PRCurveHook writes and the report reads."""
from mmseg_ptx.reporting.history import (PROGRESS_UNITS, curve_tag,
                                         progress_key)


def test_curve_tag():
    assert curve_tag(5, 50) == 'epoch_005'
    assert curve_tag(0, 2000) == 'iter_002000'  # iteration-based training
    assert curve_tag(None, None) is None  # outside training


def test_progress_key():
    assert progress_key([dict(epoch=1, iter=10), dict(epoch=2)]) == 'epoch'
    assert progress_key([dict(epoch=0, iter=10), dict(epoch=0)]) == 'iter'
    assert PROGRESS_UNITS['iter'] == 'iteration'
