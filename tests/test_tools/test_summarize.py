"""tools/summarize.py: the command line around write_performance_summary."""
import os
import subprocess

from conftest import PYTHON, ROOT


def test_a_run_without_validation_is_one_line_not_a_traceback(tmp_path):
    proc = subprocess.run(
        [PYTHON, 'tools/summarize.py', str(tmp_path), '--no-images'],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert (f'error: {tmp_path}/metrics_history.json not found: the report '
            'needs a run that validated') in proc.stderr


def test_a_history_of_another_kind_is_one_line(tmp_path):
    (tmp_path / 'metrics_history.json').write_text('{"a": 1}')
    proc = subprocess.run(
        [PYTHON, 'tools/summarize.py', str(tmp_path), '--no-images'],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert 'metrics_history.json is not a metrics history' in proc.stderr
