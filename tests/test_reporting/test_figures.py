"""The report's figures draw what their titles and legends say."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from mmseg_ptx.reporting.figures import (plot_detailed_metrics,
                                         save_prediction_panel)


@pytest.fixture
def drawn(monkeypatch):
    """The figures the functions save, kept for inspection."""
    figures = []
    save = Figure.savefig

    def keep(fig, *args, **kwargs):
        figures.append(fig)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, 'savefig', keep)
    return figures


def test_each_panel_plots_its_own_series(tmp_path, drawn):
    history = [
        dict(mode='val', epoch=e, iter=10 * e, dice=0.5 + e / 100,
             iou=0.3 + e / 100, kaggle_dice=0.7 + e / 100, ap=0.8 + e / 100,
             best_f1=0.6 + e / 100,
             **{'train/loss': 1.0 / e, 'train/decode.dice_seg': 0.4 + e / 100,
                'train/decode.iou_seg': 0.2 + e / 100}) for e in (1, 2)
    ]
    plot_detailed_metrics(history, str(tmp_path / 'd.png'), best=2)
    [fig] = drawn
    panels = {
        ax.get_title(): {line.get_label(): list(np.round(line.get_ydata(), 4))
                         for line in ax.get_lines()
                         if line.get_label() != 'best epoch (2)'}
        for ax in fig.axes
    }
    train = 'train (batch-pooled, mean since the last val)'
    assert panels == {
        'Training loss': {'train: total loss': [1.0, 0.5]},
        'Dice (foreground)': {train: [0.41, 0.42],
                              'val (set-pooled)': [0.51, 0.52],
                              'val (per-image, competition)': [0.71, 0.72]},
        'IoU (foreground, pooled)': {train: [0.21, 0.22],
                                     'val (set-pooled)': [0.31, 0.32]},
        'Validation pixel PR': {'average precision': [0.81, 0.82],
                                'best F1': [0.61, 0.62]},
    }
    # The best epoch marked in every panel.
    for ax in fig.axes:
        [mark] = [line for line in ax.get_lines()
                  if line.get_label() == 'best epoch (2)']
        assert list(mark.get_xdata()) == [2, 2]


def test_prediction_panel_shows_truth_and_prediction(tmp_path, drawn):
    image = np.full((8, 8), 100, np.uint8)
    gt = np.zeros((8, 8), np.uint8)
    pred = np.zeros((8, 8), np.uint8)
    gt[:2], pred[-3:] = 1, 1
    save_prediction_panel(image, gt, pred, str(tmp_path / 'p.png'))
    [fig] = drawn
    shown = [np.asarray(ax.images[0].get_array()) for ax in fig.axes]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ['Input', 'Ground truth (16 px)', 'Prediction (24 px)']
    # Coloured where each mask is, and only there.
    for picture, mask in zip(shown[1:], (gt, pred)):
        grey = (picture == picture[..., :1]).all(axis=2)
        np.testing.assert_array_equal(~grey, mask.astype(bool))
