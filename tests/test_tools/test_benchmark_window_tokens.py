"""tools/benchmark_window_tokens.py: times both copies on tiny stage shapes
and refuses to compare modules that move different values."""
import json

import pytest
from conftest import load_tool

TINY = ['--device', 'cpu', '--batch-size', '1', '--img-size', '64',
        '--embed-dims', '8', '--window-size', '7', '--iters', '1',
        '--warmup', '0']


def test_rows_for_every_stage_and_shift(tmp_path, capsys, monkeypatch):
    tool = load_tool('benchmark_window_tokens')
    shifts = []
    build = tool.build
    monkeypatch.setattr(tool, 'build', lambda *args: shifts.append(
        args[3]) or build(*args))
    out = tmp_path / 'copies.json'
    result = tool.main(TINY + ['--json', str(out)])
    rows = result['rows']
    assert [(r['stage'], r['shifted']) for r in rows] == [
        (s, shifted) for s in (1, 2, 3, 4) for shifted in (False, True)]
    # A shifted row's modules shift by half a window (7 // 2), both copies.
    assert shifts == [0, 0, 3, 3] * 4
    assert [r['shape'] for r in rows[::2]] == [[16, 16, 8], [8, 8, 16],
                                               [4, 4, 32], [2, 2, 64]]
    for row in rows:
        assert row['stock']['ms_min'] > 0 and row['gather']['ms_min'] > 0
        assert row['speedup'] == pytest.approx(row['stock']['ms_min'] /
                                               row['gather']['ms_min'])
    # Per image (batch 1): half of each stage's blocks are shifted.
    depths = [2, 2, 18, 2]
    for name in ('stock', 'gather'):
        assert result['backbone_ms_per_image'][name] == pytest.approx(sum(
            r[name]['ms_min'] * depths[r['stage'] - 1] / 2 for r in rows))
    assert json.loads(out.read_text())['rows'][0]['stage'] == 1
    text = capsys.readouterr().out
    assert 'backbone (depths [2, 2, 18, 2]) per image' in text


def test_different_values_are_an_error(monkeypatch):
    tool = load_tool('benchmark_window_tokens')

    class OffByOneToken(tool.ShiftWindowMSASDPA):

        def forward(self, query, hw_shape):
            return super().forward(query, hw_shape).roll(1, dims=1)

    monkeypatch.setattr(tool, 'ShiftWindowMSASDPA', OffByOneToken)
    with pytest.raises(RuntimeError, match='stage 1 .* the outputs differ'):
        tool.main(TINY)


def test_different_input_gradients_are_an_error(monkeypatch):
    import torch
    tool = load_tool('benchmark_window_tokens')

    class DoubleGradient(torch.autograd.Function):

        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad

    class SameOutputOtherGradient(tool.ShiftWindowMSASDPA):

        def forward(self, query, hw_shape):
            return super().forward(DoubleGradient.apply(query), hw_shape)

    monkeypatch.setattr(tool, 'ShiftWindowMSASDPA', SameOutputOtherGradient)
    with pytest.raises(RuntimeError, match='input gradients differ'):
        tool.main(TINY)


def test_bad_arguments_rejected(capsys):
    tool = load_tool('benchmark_window_tokens')
    with pytest.raises(SystemExit):
        tool.main(['--img-size', '100'])
    assert 'multiple of 32' in capsys.readouterr().err
