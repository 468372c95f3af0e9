"""tools/summarize.py: the command line around write_performance_summary."""
import os
import subprocess

import pytest

from conftest import PYTHON, ROOT


@pytest.mark.parametrize('history, message', [
    (None, 'error: {work_dir}/metrics_history.json not found: the report '
     'needs a run that validated'),
    ('{"a": 1}', 'error: {work_dir}/metrics_history.json is not a metrics '
     'history'),
])
def test_usage_errors_are_one_line(tmp_path, history, message):
    if history is not None:
        (tmp_path / 'metrics_history.json').write_text(history)
    proc = subprocess.run(
        [PYTHON, 'tools/summarize.py', str(tmp_path), '--no-images'],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert message.format(work_dir=tmp_path) in proc.stderr
