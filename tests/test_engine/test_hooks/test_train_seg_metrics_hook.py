"""batch_dice_iou and TrainSegMetricsHook: pooled training Dice/IoU."""
import copy
from types import SimpleNamespace

import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from tiny_model import build_tiny_model
from torch.overrides import TorchFunctionMode

from mmseg_ptx.engine.hooks import (TrainSegMetricsHook, batch_dice_iou,
                                    train_seg_metrics_hook)


def two_class_logits(pred: torch.Tensor) -> torch.Tensor:
    """(N, 2, H, W) logits whose argmax is ``pred``."""
    fg = pred.float() * 2 - 1
    return torch.stack([-fg, fg], dim=1)


def test_dice_iou_pooled_over_the_batch():
    pred = torch.zeros(2, 4, 4, dtype=torch.long)
    label = torch.zeros(2, 4, 4, dtype=torch.long)
    pred[0, :2] = 1  # 8 predicted pixels
    label[0, 1:3] = 1  # 8 true, 4 of them predicted
    label[1, 0, 0] = 1  # 1 missed in the second image
    label[1, 3, 3] = 255  # ignored, predicted or not
    pred[1, 3, 3] = 1
    dice, iou = batch_dice_iou(two_class_logits(pred), label)
    # inter 4, |pred| 8, |gt| 9: Dice 8/17, IoU 4/13.
    torch.testing.assert_close(dice, torch.tensor(8 / 17))
    torch.testing.assert_close(iou, torch.tensor(4 / 13))
    # One-channel head: sigmoid > threshold.
    one_channel = (pred.float() * 2 - 1).unsqueeze(1)
    dice1, iou1 = batch_dice_iou(one_channel, label)
    torch.testing.assert_close((dice1, iou1), (dice, iou))


def test_empty_prediction_and_label_score_one():
    label = torch.zeros(1, 4, 4, dtype=torch.long)
    dice, iou = batch_dice_iou(two_class_logits(label), label)
    assert dice.item() == iou.item() == 1.0
    # A prediction without any true foreground scores 0.
    pred = label.clone()
    pred[0, 0, 0] = 1
    dice, iou = batch_dice_iou(two_class_logits(pred), label)
    assert dice.item() == iou.item() == 0.0


class HostTensorSpy(TorchFunctionMode):
    """Records calls that bring host data to the inputs' device: tensors
    made from Python values, and host tensors as arguments. On a GPU each
    is a blocking host-to-device copy, a wait for the GPU."""

    FROM_HOST = {torch.tensor, torch.as_tensor, torch.Tensor.new_tensor}

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.transfers = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        values = list(args) + list(kwargs.values())
        if func in self.FROM_HOST or any(
                isinstance(v, torch.Tensor) and v.device != self.device
                for v in values):
            self.transfers.append(getattr(func, '__name__', str(func)))
        return func(*args, **kwargs)


def test_dice_iou_makes_no_host_transfer():
    """On the meta device (no data) a host sync raises and a host tensor
    shows up as an op argument."""
    logits = torch.zeros(2, 2, 8, 8, device='meta')
    label = torch.zeros(2, 8, 8, dtype=torch.long, device='meta')
    with HostTensorSpy('meta') as spy:
        dice, iou = batch_dice_iou(logits, label)
    assert dice.device.type == iou.device.type == 'meta'
    assert spy.transfers == []
    # The spy sees what it must: new_tensor copies from the host.
    with HostTensorSpy('meta') as spy:
        logits.new_tensor(1.0)
    assert spy.transfers


def test_hook_adds_dice_and_iou_to_the_head_losses():
    model = build_tiny_model(size=64)
    runner = SimpleNamespace(model=model)
    TrainSegMetricsHook().before_train(runner)
    wrapped = model.decode_head.loss_by_feat
    TrainSegMetricsHook().before_train(runner)  # a second run: wrapped once
    assert model.decode_head.loss_by_feat is wrapped
    label = torch.zeros(1, 64, 64, dtype=torch.long)
    label[0, 10:30, 10:30] = 1
    sample = SegDataSample(gt_sem_seg=PixelData(data=label))
    logits = torch.randn(1, 2, 16, 16)
    losses = model.decode_head.loss_by_feat(logits, [sample])
    assert {'dice_seg', 'iou_seg', 'acc_seg'} <= set(losses)
    assert 0 < losses['dice_seg'].item() < 1
    assert losses['iou_seg'].item() == pytest.approx(
        losses['dice_seg'].item() / (2 - losses['dice_seg'].item()))


def test_cascade_of_heads_gets_them_on_its_last_head():
    """OCRNet's CascadeEncoderDecoder holds its heads in a ModuleList:
    the last one predicts, and its losses get the metrics."""
    model = build_tiny_model(size=64)
    first = model.decode_head
    model.decode_head = torch.nn.ModuleList([copy.deepcopy(first), first])
    TrainSegMetricsHook().before_train(SimpleNamespace(model=model))
    label = torch.zeros(1, 64, 64, dtype=torch.long)
    sample = SegDataSample(gt_sem_seg=PixelData(data=label))
    logits = torch.randn(1, 2, 16, 16)
    assert 'dice_seg' in model.decode_head[1].loss_by_feat(logits, [sample])
    assert 'dice_seg' not in model.decode_head[0].loss_by_feat(logits,
                                                               [sample])


@pytest.mark.parametrize('head_threshold, hook_threshold, expected', [
    (0.3, None, 0.3),  # MMSeg's default for a one-channel head
    (0.3, 0.6, 0.6),
    (None, None, 0.5),  # a softmax head has none
])
def test_one_channel_head_threshold_is_the_heads(monkeypatch, head_threshold,
                                                 hook_threshold, expected):
    """A one-channel head predicts with its own threshold: the training
    Dice binarises as it does, unless the hook is told otherwise."""
    model = build_tiny_model(size=64)
    model.decode_head.threshold = head_threshold
    TrainSegMetricsHook(hook_threshold).before_train(
        SimpleNamespace(model=model))
    seen = []
    monkeypatch.setattr(
        train_seg_metrics_hook, 'batch_dice_iou',
        lambda logits, label, ignore_index, threshold: seen.append(
            threshold) or (torch.ones(()), torch.ones(())))
    label = torch.zeros(1, 64, 64, dtype=torch.long)
    sample = SegDataSample(gt_sem_seg=PixelData(data=label))
    model.decode_head.loss_by_feat(torch.randn(1, 2, 16, 16), [sample])
    assert seen == [expected]
