"""tools/benchmark_data.py prints its figures (no timing asserted)."""
import re

from conftest import PYTHON, run_tool


def test_benchmark_data_prints_both_tables():
    proc = run_tool([PYTHON, 'tools/benchmark_data.py', '--num', '2',
                     '--repeats', '1'])
    out = proc.stdout
    assert re.search(r'^\s+1\s+[\d.]+\s+[\d.]+$', out, re.M), out
    for name in ('vectorised', 'run loop (competition)', 'pixel loop'):
        assert name in out
