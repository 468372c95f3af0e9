"""tools/benchmark_data.py prints its figures (their ratios asserted, no
timing)."""
import re
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import PYTHON, load_tool, run_tool


def test_benchmark_data_prints_its_tables():
    proc = run_tool([PYTHON, 'tools/benchmark_data.py', '--num', '2',
                     '--repeats', '1', '--threads', '1', '2', '--workers',
                     '1', '2'])
    out = proc.stdout
    loader = re.findall(r'^\s+(\d)\s+([\d.]+)\s+([\d.]+)$',
                        out.split('(b) RLE decode')[0], re.M)
    assert [workers for workers, _, _ in loader] == ['1', '2'], out
    for workers, rate, per_process in loader:
        assert float(per_process) == pytest.approx(
            float(rate) / int(workers), abs=0.08)
    # "vectorised is N x" the other decoder: their masks/s in ratio.
    vectorised = float(re.search(r'^\s+vectorised\s+([\d.]+)\s*$', out,
                                 re.M).group(1))
    for name in ('run loop \\(competition\\)', 'pixel loop'):
        rate, ratio = map(float, re.search(
            name + r'\s+([\d.]+)\s+([\d.]+)x', out).groups())
        assert ratio == pytest.approx(vectorised / rate, rel=0.25)
    outputs = out.split('(c) tools/infer.py besides the model')[1]
    assert re.findall(r'^\s+(\d)\s+[\d.]+$', outputs, re.M) == ['1', '2']


def test_transform_times_are_per_image_over_all_passes(monkeypatch):
    tool = load_tool('benchmark_data')
    clock = iter(range(1000))  # every transform call takes 1 s
    monkeypatch.setattr(tool, 'time', SimpleNamespace(
        perf_counter=lambda: next(clock)))
    grey = dict(img=np.zeros((4, 4), np.uint8))
    times = tool.time_transforms([grey] * 2, 3, [dict(type='GreyToBGR')])
    assert times == [('GreyToBGR', 1000.0)]


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
