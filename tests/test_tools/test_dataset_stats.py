import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import load_tool

REPO = Path(__file__).resolve().parents[2]


def _make_png_set(root):
    """Four 16x16 images; masks with 12, 0, 4 and 0 foreground pixels."""
    (root / 'png_images').mkdir(parents=True)
    (root / 'png_masks').mkdir()
    sizes = [12, 0, 4, 0]
    rows = []
    for n, size in enumerate(sizes):
        mask = np.zeros((16, 16), np.uint8)
        mask[3, :size] = 255
        name = f'{n}_train_.png'
        cv2.imwrite(str(root / 'png_images' / name), mask // 2)
        cv2.imwrite(str(root / 'png_masks' / name), mask)
        rows.append((f'1.2.4.{n}', name, int(size > 0)))
    with open(root / 'stage_1_train_images.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['ImageId', 'new_filename', 'has_pneumo'])
        writer.writerows(rows)


def _run(*args, **env_vars):
    """The tool on ``args``; ``env_vars`` set (None: removed)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), **env_vars)
    env = {k: v for k, v in env.items() if v is not None}
    return subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'dataset_stats.py'), *args],
        capture_output=True, text=True, env=env, cwd=str(REPO), timeout=300)


def test_cli_png(tmp_path):
    _make_png_set(tmp_path)
    # An image the CSV does not list: skipped, with a warning on stderr,
    # not in the Markdown on stdout.
    cv2.imwrite(str(tmp_path / 'png_images' / 'unlisted.png'),
                np.zeros((16, 16), np.uint8))
    out = tmp_path / 'stats.json'
    proc = _run(str(tmp_path), '--layout', 'png', '--neg-keep-ratio', '1',
                '--val-ratio', '0', '--workers', '2', '--out', str(out))
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(out.read_text())
    assert stats['pixel_counts'] == [1008, 16]
    assert stats['class_weights'] == [1024 / 2016, 1024 / 32]
    assert stats['imbalance_ratio'] == 63.0
    assert stats['num_images']['original_positive'] == 2
    assert stats['num_images']['train'] == 4
    assert stats['settings']['neg_keep_ratio'] == 1.0
    assert '63.00:1 (Background:Pneumothorax)' in proc.stdout
    assert '| pneumothorax | 16 |' in proc.stdout
    assert (tmp_path / 'splits' / 'train.txt').exists()
    assert proc.stdout.startswith('#') and 'WARNING' not in proc.stdout
    assert 'written to' not in proc.stdout
    assert f'Statistics written to {out}' in proc.stderr
    assert 'WARNING - 1 image(s) in ' in proc.stderr


def test_every_option_reaches_the_statistics(tmp_path, monkeypatch):
    tool = load_tool('dataset_stats')
    given = {}

    def compute(data_root, **kwargs):
        given.update(kwargs, data_root=data_root)
        raise ValueError('stopped here')

    monkeypatch.setattr(tool, 'compute_dataset_statistics', compute)
    monkeypatch.setattr(sys, 'argv', [
        'dataset_stats.py', str(tmp_path), '--layout', 'png', '--split-dir',
        'mine', '--neg-keep-ratio', '0.3', '--val-ratio', '0.1', '--seed',
        '7', '--split-order', 'split_first', '--workers', '3', '--strict'])
    with pytest.raises(SystemExit, match='error: stopped here'):
        tool.main()
    assert given == dict(data_root=str(tmp_path), layout='png',
                         split_dir='mine', neg_keep_ratio=0.3, val_ratio=0.1,
                         seed=7, split_order='split_first', workers=3,
                         strict=True)


def test_cli_default_output_and_error(tmp_path, tool_main):
    _make_png_set(tmp_path)
    status, _, err = tool_main('dataset_stats', tmp_path, '--layout', 'png',
                               '--neg-keep-ratio', '1', '--val-ratio', '0',
                               '--split-dir', 'all')
    assert status == 0, err
    assert json.loads(
        (tmp_path / 'all' / 'stats.json').read_text())['pixel_counts'] == [
            1008, 16]
    status, _, err = tool_main('dataset_stats', tmp_path / 'missing',
                               '--layout', 'png')
    assert status == 1
    assert f'error: data_root {tmp_path}/missing is not a directory' in err
    # A malformed CSV row: the line it is on, without a traceback.
    with open(tmp_path / 'stage_1_train_images.csv', 'a') as f:
        f.write('1.2.4.9,9_train_.png\n')
    status, _, err = tool_main('dataset_stats', tmp_path, '--layout', 'png')
    assert status == 1
    assert err.startswith(f'error: {tmp_path}/stage_1_train_images.csv, '
                          'line 6: ')


@pytest.mark.parametrize('disable', [None, '1'])
def test_tqdm_disable_drops_the_progress_bar(tmp_path, disable):
    """TQDM_DISABLE=1 (a Slurm log, say) silences the bar as in the other
    tools: a disable= argument given always overrode it."""
    _make_png_set(tmp_path)
    proc = _run(str(tmp_path), '--layout', 'png', '--neg-keep-ratio', '1',
                '--val-ratio', '0', '--out', str(tmp_path / 'stats.json'),
                TQDM_DISABLE=disable)
    assert proc.returncode == 0, proc.stderr
    assert ('Counting training pixels' in proc.stderr) == (disable is None)


def test_cli_on_generated_demo_set(tmp_path):
    """The statistics of a generated Kaggle-layout set equal what the
    generator drew: image counts and every training pixel."""
    from mmseg_ptx.datasets.synthetic import write_demo_dataset
    root = tmp_path / 'demo'
    masks = write_demo_dataset(root, num=40, seed=3, size=64,
                               layout='dicom')
    out = tmp_path / 'stats.json'
    proc = _run(str(root), '--workers', '2', '--out', str(out))
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(out.read_text())
    positives = {i for i, m in masks.items() if m.any()}
    counts = stats['num_images']
    assert counts['original_positive'] == len(positives)
    assert counts['original_negative'] == len(masks) - len(positives)
    train = (root / 'splits' / 'train.txt').read_text().split()
    assert counts['train'] == len(train)
    fg = sum(int(masks[i].astype(bool).sum()) for i in train)
    total = len(train) * 64 * 64
    assert stats['pixel_counts'] == [total - fg, fg]
    assert stats['class_weights'] == [
        pytest.approx(total / (2 * (total - fg))),
        pytest.approx(total / (2 * fg))
    ]


def test_out_replaces_only_its_own_statistics(tmp_path, tool_main):
    """--out naming a file the tool did not write (the labels' CSV, say)
    is refused before anything is counted; an earlier run's statistics
    are replaced."""
    _make_png_set(tmp_path)
    args = ['--layout', 'png', '--neg-keep-ratio', '1', '--val-ratio', '0']
    labels = tmp_path / 'stage_1_train_images.csv'
    before = labels.read_text()
    status, _, err = tool_main('dataset_stats', tmp_path, *args, '--out',
                               labels)
    assert status == 2
    assert err == (f'error: --out {labels} exists and is not an output of '
                   'this tool; choose another name or remove it\n')
    assert labels.read_text() == before
    # A folder that cannot be: before the count too, not after it.
    status, _, err = tool_main('dataset_stats', tmp_path, *args, '--out',
                               labels / 'stats.json')
    assert status == 2
    assert err == (f'error: --out {labels}/stats.json: {labels} is a file, '
                   'not a folder\n')
    out = tmp_path / 'stats_copy.json'
    for _ in range(2):
        status, _, err = tool_main('dataset_stats', tmp_path, *args,
                                   '--out', out)
        assert status == 0, err
    assert 'class_weights' in json.loads(out.read_text())


def test_zero_workers_is_a_usage_error(tmp_path, tool_main):
    status, _, err = tool_main('dataset_stats', tmp_path, '--workers', '0')
    assert status == 2
    assert '--workers must be >= 1' in err
