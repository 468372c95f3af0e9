"""PerformanceReportHook with nothing to report on, or a failing report."""
import json
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MMLogger

import mmseg_ptx  # noqa: F401  (registers the hook)
from mmseg.registry import HOOKS
from mmseg_ptx.reporting.summary import (NoValidationRecords,
                                         write_performance_summary)


def run_hook(work_dir, level: str) -> list:
    """The hook's after_train on a stand-in runner; the messages it logged
    at ``level`` ('warning', 'exception')."""
    messages = []
    logger = MMLogger.get_instance(f'report_hook_test_{level}')
    setattr(logger, level, messages.append)
    runner = SimpleNamespace(work_dir=str(work_dir), logger=logger,
                             model=torch.nn.Linear(1, 1), world_size=1,
                             cfg=None)
    HOOKS.build(dict(type='PerformanceReportHook')).after_train(runner)
    return messages


@pytest.mark.parametrize('history', [
    None,  # validation off: PRCurveHook never wrote a history
    [dict(mode='val', epoch=1, iter=10, dice=None)],  # no finite Dice
])
def test_no_validation_records_warn_not_crash(tmp_path, history):
    if history is not None:
        (tmp_path / 'metrics_history.json').write_text(json.dumps(history))
    warnings = run_hook(tmp_path, 'warning')
    assert len(warnings) == 1 and 'No performance report' in warnings[0]
    assert 'metrics_history.json' in warnings[0]
    assert not (tmp_path / 'PERFORMANCE_SUMMARY.md').exists()
    # tools/summarize.py still fails loudly.
    with pytest.raises(NoValidationRecords):
        write_performance_summary(str(tmp_path), images=False)


def test_a_failing_report_does_not_fail_the_run(tmp_path, monkeypatch):
    from mmseg_ptx.engine.hooks import performance_report_hook

    def broken(*args, **kwargs):
        raise RuntimeError('the pictures ran out of memory')

    monkeypatch.setattr(performance_report_hook,
                        'write_performance_summary', broken)
    errors = run_hook(tmp_path, 'exception')
    assert len(errors) == 1
    assert 'RuntimeError: the pictures ran out of memory' in errors[0]
    assert f'python tools/summarize.py {tmp_path}' in errors[0]


def test_the_hook_passes_its_settings_on_rank_0_only(tmp_path, monkeypatch):
    from mmseg_ptx.engine.hooks import performance_report_hook
    calls = []
    monkeypatch.setattr(performance_report_hook, 'write_performance_summary',
                        lambda *args, **kwargs: calls.append(kwargs) or 'x')
    runner = SimpleNamespace(work_dir=str(tmp_path), cfg=None, world_size=3,
                             model=torch.nn.Linear(1, 1),
                             logger=MMLogger.get_instance('report_hook_args'))
    hook = HOOKS.build(dict(type='PerformanceReportHook', images=False,
                            num_pos=4, num_neg=1, max_images=9))
    hook.after_train(runner)
    [kwargs] = calls
    assert {k: kwargs[k] for k in ('images', 'num_pos', 'num_neg',
                                   'max_images', 'world_size', 'device')
            } == dict(images=False, num_pos=4, num_neg=1, max_images=9,
                      world_size=3, device='cpu')
    # The other ranks would write the same files at the same time.
    monkeypatch.setattr(performance_report_hook, 'is_main_process',
                        lambda: False)
    hook.after_train(runner)
    assert len(calls) == 1


@pytest.mark.parametrize('settings,message', [
    (dict(num_pos=-1), 'num_pos and num_neg must be >= 0'),
    (dict(num_neg=-2), 'num_pos and num_neg must be >= 0'),
    (dict(max_images=0), 'max_images must be None or >= 1'),
])
def test_counts_refused_as_summarize_refuses_them(settings, message):
    with pytest.raises(ValueError, match=message):
        HOOKS.build(dict(type='PerformanceReportHook', **settings))
