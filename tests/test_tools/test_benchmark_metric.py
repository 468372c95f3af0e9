"""tools/benchmark_metric.py: runs on a tiny set; a failing side ends it."""
import os
import re
import subprocess
import threading


from conftest import PYTHON, ROOT, load_tool, run_tool

TOOL = ROOT / 'tools' / 'benchmark_metric.py'


def test_benchmark_metric_tiny_set():
    proc = run_tool([PYTHON, str(TOOL), '--num-images', '3', '--size', '32'])
    assert 'PneumothoraxMetric' in proc.stdout
    assert 'sklearn AP' in proc.stdout
    diff, bound = re.search(r'\|ap - sklearn ap\| = (\S+) \(guaranteed '
                            r'bound (\S+)\)', proc.stdout).groups()
    assert float(diff) <= float(bound)
    # The speed-up is scikit-learn's time over the metric's.
    ours, ref = (float(re.search(rf'^{name}\s+([\d.]+)', proc.stdout,
                                 re.M).group(1))
                 for name in ('PneumothoraxMetric', 'sklearn AP'))
    speed_up = float(re.search(r'speed-up: ([\d.]+)x', proc.stdout).group(1))
    # The times are printed to the millisecond (a few ms on this tiny
    # set), the speed-up to 0.1: the ratio of the printed times bounds it
    # only within their rounding.
    low = (ref - 5e-4) / (ours + 5e-4)
    high = (ref + 5e-4) / max(ours - 5e-4, 1e-9)
    assert low - 0.05 <= speed_up <= high + 0.05, (ours, ref, speed_up)


def test_benchmark_metric_rejects_empty_set():
    proc = subprocess.run([PYTHON, str(TOOL), '--num-images', '0'],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert '--num-images must be at least 1' in proc.stderr


def _die(args, queue):
    os._exit(3)


def test_run_isolated_raises_when_a_side_dies():
    # Before, the parent waited for ever on the dead side's result.
    module = load_tool('benchmark_metric')
    raised = []

    def run():
        try:
            module.run_isolated(_die, None)
        except RuntimeError as err:
            raised.append(str(err))

    # In a thread, so that a regression fails here instead of hanging.
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), 'run_isolated waits for a dead process'
    assert raised and '_die exited with 3' in raised[0]
