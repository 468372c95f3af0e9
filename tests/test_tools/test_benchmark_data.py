"""tools/benchmark_data.py prints its figures (no timing asserted)."""
import re

from conftest import PYTHON, run_tool


def test_benchmark_data_prints_its_tables():
    proc = run_tool([PYTHON, 'tools/benchmark_data.py', '--num', '2',
                     '--repeats', '1', '--threads', '1', '2'])
    out = proc.stdout
    assert re.search(r'^\s+1\s+[\d.]+\s+[\d.]+$', out, re.M), out
    for name in ('vectorised', 'run loop (competition)', 'pixel loop'):
        assert name in out
    outputs = out.split('(c) tools/infer.py besides the model')[1]
    assert re.findall(r'^\s+(\d)\s+[\d.]+$', outputs, re.M) == ['1', '2']


def test_config_pipeline_and_its_transforms():
    proc = run_tool([PYTHON, 'tools/benchmark_data.py', '--num', '2',
                     '--repeats', '1', '--config',
                     'configs/upernet_swin-nano_ptx-demo-128.py'])
    out = proc.stdout
    assert 'the training pipeline of configs/upernet_swin-nano' in out
    transforms = out.split('(b) RLE decode')[0]
    rows = dict(re.findall(r'^\s+(\w+)\s+([\d.]+)$', transforms, re.M))
    for name in ('LoadDicomImageFromFile', 'LoadRLEAnnotations',
                 'GreyscalePhotoMetricDistortion', 'PackSegInputs'):
        assert float(rows[name]) > 0, name
    parts = sum(float(v) for k, v in rows.items() if k != 'all')
    assert abs(float(rows['all']) - parts) < 0.05


def test_zero_workers_is_a_usage_error(tool_main):
    status, _, err = tool_main('benchmark_data', '--workers', '0')
    assert status == 2
    assert '--workers and --threads must be >= 1' in err


def test_a_missing_config_is_a_usage_error(tool_main, tmp_path):
    status, _, err = tool_main('benchmark_data', '--config',
                               tmp_path / 'no.py')
    assert status == 2
    assert f'--config {tmp_path / "no.py"} is not a file' in err
