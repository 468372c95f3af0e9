"""tools/summarize.py: the command line around write_performance_summary."""
import os
import subprocess

import pytest

from conftest import PYTHON, ROOT, load_tool


@pytest.mark.parametrize('history, message', [
    (None, 'error: {work_dir}/metrics_history.json not found: the report '
     'needs a run that validated'),
    ('{"a": 1}', 'error: {work_dir}/metrics_history.json is not a metrics '
     'history'),
])
def test_usage_errors_are_one_line(tmp_path, tool_main, history, message):
    if history is not None:
        (tmp_path / 'metrics_history.json').write_text(history)
    status, _, err = tool_main('summarize', tmp_path, '--no-images')
    assert status == 1
    assert 'Traceback' not in err
    assert message.format(work_dir=tmp_path) in err


@pytest.mark.parametrize('flag', ['--config', '--checkpoint', '--stats'])
def test_a_missing_file_is_a_usage_error(tmp_path, tool_main, flag):
    missing = tmp_path / 'missing'
    status, _, err = tool_main('summarize', tmp_path, flag, missing)
    assert status == 2
    assert f'error: {flag} {missing} is not a file' in err


@pytest.mark.parametrize('args, message', [
    (['--num-pos', '-1'], '--num-pos and --num-neg must be >= 0'),
    (['--num-neg', '-2'], '--num-pos and --num-neg must be >= 0'),
    (['--max-images', '0'], '--max-images must be >= 1'),
])
def test_counts_must_not_be_negative(tmp_path, tool_main, args, message):
    status, _, err = tool_main('summarize', tmp_path, *args)
    assert status == 2
    assert err.endswith(f'error: {message}\n')


def test_options_reach_the_report(tmp_path):
    """--stats and --config are passed on: the statistics file's imbalance
    and the given config's model are in the report (neither is found
    without them)."""
    import json
    (tmp_path / 'metrics_history.json').write_text(json.dumps(
        [dict(mode='val', epoch=1, iter=10, dice=0.5, iou=1 / 3)]))
    stats = tmp_path / 'elsewhere.json'
    stats.write_text(json.dumps(dict(
        imbalance_ratio=107.45,
        settings=dict(neg_keep_ratio=0.15, val_ratio=0.2, seed=42,
                      split_order='balance_first'))))
    proc = subprocess.run(
        [PYTHON, 'tools/summarize.py', str(tmp_path), '--no-images',
         '--stats', str(stats), '--config',
         'configs/upernet_swin-b_ptx-512.py'],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    report = (tmp_path / 'PERFORMANCE_SUMMARY.md').read_text()
    assert '107.45:1' in report
    assert 'embed_dims 128, depths [2, 2, 18, 2], window 12' in report


def test_every_option_reaches_the_report(tmp_path, monkeypatch):
    summarize = load_tool('summarize')
    given = {}
    monkeypatch.setattr(summarize, 'write_performance_summary',
                        lambda work_dir, **kwargs: given.update(
                            kwargs, work_dir=work_dir) or 'report.md')
    monkeypatch.setattr('sys.argv', [
        'summarize.py', str(tmp_path), '--num-pos', '3', '--num-neg', '1',
        '--no-images', '--max-images', '7', '--device', 'cpu'])
    assert summarize.main() == 0
    assert given == dict(work_dir=str(tmp_path), config=None,
                         checkpoint=None, stats=None, images=False,
                         num_pos=3, num_neg=1, max_images=7, device='cpu')


def test_an_unknown_device_is_a_usage_error(tmp_path, tool_main):
    status, _, err = tool_main('summarize', tmp_path, '--device', 'gpu')
    assert status == 2
    assert err.startswith('error: --device gpu: ')


def test_a_checkpoint_that_cannot_be_read_is_one_line(tmp_path, tool_main):
    """--checkpoint naming a file cut short (a killed save): one line
    naming it, before any picture is drawn."""
    import json
    (tmp_path / 'metrics_history.json').write_text(json.dumps(
        [dict(mode='val', epoch=1, iter=10, dice=0.5, iou=1 / 3)]))
    broken = tmp_path / 'best_dice_epoch_1.pth'
    broken.write_bytes(b'PK\x03\x04' + b'\0' * 100)
    status, _, err = tool_main(
        'summarize', tmp_path, '--config',
        ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py', '--checkpoint',
        broken, '--device', 'cpu')
    assert status == 2
    assert 'Traceback' not in err
    assert (f'error: Checkpoint {broken} could not be read: a zip archive '
            'cut short') in err
