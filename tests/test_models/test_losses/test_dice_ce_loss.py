import json

import pytest
import torch
import torch.nn.functional as F
from mmengine.structures import PixelData

import mmseg_ptx  # noqa: F401  (registers the loss)
from mmseg.models.decode_heads import FCNHead, UPerHead
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg_ptx.models import DiceCELoss
from mmseg_ptx.utils import AsyncReadback, HostSyncRecorder

CLASS_WEIGHT = [0.5047, 54.2225]


def make_batch(seed=0, n=3, h=8, w=8, channels=2, pad=True):
    """Random logits and labels; the last columns are 255 padding and
    image 1 has no foreground at all."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, channels, h, w, generator=g) * 2
    label = (torch.rand(n, h, w, generator=g) < 0.3).long()
    label[1] = 0
    if pad:
        label[:, :, -2:] = 255
        label[0, 0, :3] = 255
    return logits, label


def reference_loss(logits, label, class_weight, dice_mode, smooth=1.0,
                   ce_weight=0.5, dice_weight=0.5, ignore_index=255):
    """Plain computation: PyTorch's weighted CE + 1 - soft Dice."""
    ce = F.cross_entropy(
        logits, label, weight=torch.tensor(class_weight),
        ignore_index=ignore_index)
    prob = logits.softmax(dim=1)[:, 1]
    valid = label != ignore_index
    gt = (label == 1).float()

    def dice(p, t):
        return (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)

    if dice_mode == 'batch':
        dice_loss = 1 - dice(prob[valid], gt[valid])
    else:
        per_image = [1 - dice(prob[i][valid[i]], gt[i][valid[i]])
                     for i in range(len(label))]
        dice_loss = torch.stack(per_image).mean()
    return ce_weight * ce + dice_weight * dice_loss


@pytest.mark.parametrize('dice_mode', ['batch', 'image'])
@pytest.mark.parametrize('class_weight', [CLASS_WEIGHT, None])
def test_matches_reference(dice_mode, class_weight):
    logits, label = make_batch()
    loss_fn = DiceCELoss(class_weight=class_weight, dice_mode=dice_mode)
    loss = loss_fn(logits, label, ignore_index=255)
    expected = reference_loss(logits, label, class_weight or [1.0, 1.0],
                              dice_mode)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected)


def test_dice_modes_differ():
    logits, label = make_batch()
    batch = DiceCELoss(dice_mode='batch', ce_weight=0, dice_weight=1)
    image = DiceCELoss(dice_mode='image', ce_weight=0, dice_weight=1)
    assert abs(batch(logits, label) - image(logits, label)) > 1e-3


@pytest.mark.parametrize('dice_mode', ['batch', 'image'])
@pytest.mark.parametrize('channels', [2, 1])
def test_perfect_prediction_dice_near_zero(dice_mode, channels):
    _, label = make_batch()
    fg = torch.where(label == 1, 30.0, -30.0)  # image 1 is empty: all -30
    logits = (torch.stack([torch.zeros_like(fg), fg], 1) if channels == 2
              else fg[:, None])
    dice_only = DiceCELoss(ce_weight=0, dice_weight=1, dice_mode=dice_mode)
    assert dice_only(logits, label).item() < 1e-3
    # A wrong prediction is far from zero.
    assert dice_only(-logits, label).item() > 0.9


def test_image_mode_empty_gt_with_false_positives():
    label = torch.zeros(2, 8, 8, dtype=torch.long)
    label[0, 2:6, 2:6] = 1
    fg = torch.where(label == 1, 30.0, -30.0)
    dice_only = DiceCELoss(ce_weight=0, dice_weight=1, dice_mode='image')
    logits = torch.stack([torch.zeros_like(fg), fg], 1)
    assert dice_only(logits, label).item() < 1e-3
    # 10 false-positive pixels on the empty image: its Dice is
    # 1 / (10 + 1), so the mean loss is (0 + 10 / 11) / 2.
    fg[1, 0, :10 // 2] = 30.0
    fg[1, 1, :10 // 2] = 30.0
    logits = torch.stack([torch.zeros_like(fg), fg], 1)
    torch.testing.assert_close(
        dice_only(logits, label), torch.tensor(10 / 11 / 2))


@pytest.mark.parametrize('channels', [2, 1])
@pytest.mark.parametrize('dice_mode', ['batch', 'image'])
def test_ignored_pixels_change_nothing(channels, dice_mode):
    logits, label = make_batch(channels=channels)
    loss_fn = DiceCELoss(class_weight=CLASS_WEIGHT, dice_mode=dice_mode,
                         focal_weight=0.3)
    logits.requires_grad_(True)
    loss = loss_fn(logits, label)
    loss.backward()
    ignored = (label == 255)[:, None].expand_as(logits)
    assert torch.isfinite(logits.grad).all()
    assert (logits.grad[ignored] == 0).all()

    changed = logits.detach().clone()
    changed[ignored] = torch.randn(int(ignored.sum())) * 50
    torch.testing.assert_close(loss_fn(changed, label), loss.detach())
    changed[ignored] = float('inf')
    changed.requires_grad_(True)
    inf_loss = loss_fn(changed, label)
    torch.testing.assert_close(inf_loss, loss.detach())
    # Nor through the gradient (softmax / cross-entropy backward of an
    # inf logit times 0 would be nan).
    inf_loss.backward()
    torch.testing.assert_close(changed.grad, logits.grad)


@pytest.mark.parametrize('channels', [2, 1])
def test_uint8_labels(channels):
    logits, label = make_batch(channels=channels)
    loss_fn = DiceCELoss(class_weight=CLASS_WEIGHT, focal_weight=0.3)
    torch.testing.assert_close(loss_fn(logits, label.to(torch.uint8)),
                               loss_fn(logits, label))


@pytest.mark.parametrize('channels', [2, 1])
def test_per_pixel_terms(channels):
    """reduction_override='none': the class-weighted CE + focal terms per
    pixel, 0 at ignored pixels; their weighted mean is the loss without
    Dice."""
    logits, label = make_batch(channels=channels)
    kwargs = dict(class_weight=CLASS_WEIGHT, ce_weight=0.7, focal_weight=0.3)
    terms = DiceCELoss(**kwargs)(logits, label, reduction_override='none')
    assert terms.shape == label.shape
    assert (terms[label == 255] == 0).all() and (terms >= 0).all()
    valid = label != 255
    class_weight = torch.tensor(CLASS_WEIGHT)[label.clamp(max=1)] * valid
    torch.testing.assert_close(
        terms.sum() / class_weight.sum(),
        DiceCELoss(dice_weight=0, **kwargs)(logits, label))
    if channels == 2:
        nll = F.cross_entropy(logits, label, ignore_index=255,
                              reduction='none')
        focal = (1 - torch.exp(-nll))**2 * nll
        torch.testing.assert_close(
            terms, class_weight * (0.7 * nll + 0.3 * focal))


def test_per_pixel_terms_need_ce_or_focal():
    logits, label = make_batch()
    with pytest.raises(ValueError, match='Dice term has no per-pixel'):
        DiceCELoss(ce_weight=0)(logits, label, reduction_override='none')
    with pytest.raises(ValueError, match="reduction_override must be"):
        DiceCELoss()(logits, label, reduction_override='sum')


@pytest.mark.parametrize('thresh', [None, 0.7])
def test_ohem_pixel_sampler(thresh):
    """mmseg's OHEMPixelSampler: without thresh it ranks pixels by the
    loss's per-pixel terms (reduction_override='none')."""
    torch.manual_seed(0)
    head = FCNHead(
        in_channels=4, channels=8, num_convs=1, num_classes=2,
        sampler=dict(type='OHEMPixelSampler', thresh=thresh, min_kept=20),
        loss_decode=dict(type='DiceCELoss', class_weight=CLASS_WEIGHT))
    losses = head.loss([torch.randn(2, 4, 8, 8)], make_data_samples(),
                       train_cfg=dict())
    assert torch.isfinite(losses['loss_dice_ce'])
    losses['loss_dice_ce'].backward()
    assert torch.isfinite(head.conv_seg.weight.grad).all()


def test_ignore_index_from_call_overrides():
    logits, label = make_batch()
    label[label == 255] = 7
    loss_fn = DiceCELoss(class_weight=CLASS_WEIGHT)  # ignore_index=255
    with pytest.raises(ValueError, match='only 0, 1 and ignore_index'):
        loss_fn(logits, label)
    loss = loss_fn(logits, label, ignore_index=7)
    expected = reference_loss(logits, label, CLASS_WEIGHT, 'batch',
                              ignore_index=7)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize('dtype', [torch.int64, torch.uint8, torch.int16])
def test_invalid_labels_are_counted_and_ranged(dtype):
    logits, label = make_batch()
    label = label.to(dtype)
    label[0, 1, :2] = 2
    label[2, 3, 4] = 200
    with pytest.raises(ValueError, match=r'got 3 pixels with other values '
                       r'\(from 2 to 200\)'):
        DiceCELoss()(logits, label)
    # Counts beyond the label dtype's range do not wrap around.
    logits = torch.randn(1, 2, 16, 16)
    with pytest.raises(ValueError, match='got 256 pixels'):
        DiceCELoss()(logits, torch.full((1, 16, 16), 2, dtype=dtype))


def test_float_and_bool_labels_and_empty_batch():
    logits, label = make_batch(pad=False)
    expected = DiceCELoss()(logits, label)
    torch.testing.assert_close(DiceCELoss()(logits, label.float()), expected)
    torch.testing.assert_close(DiceCELoss()(logits, label.bool()), expected)
    bad = label.float()
    bad[0, 0, 0] = 0.5
    with pytest.raises(ValueError, match='from 0.5 to 0.5'):
        DiceCELoss()(logits, bad)
    empty = DiceCELoss(class_weight=CLASS_WEIGHT)(
        torch.randn(0, 2, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long))
    assert empty.item() == 0


def test_class_weights_keep_the_logits_dtype_whatever_the_default():
    logits, label = make_batch()
    expected = DiceCELoss(class_weight=CLASS_WEIGHT)(logits, label)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = DiceCELoss(class_weight=CLASS_WEIGHT)(logits, label)
    finally:
        torch.set_default_dtype(default)
    assert got.dtype == torch.float32 and torch.equal(got, expected)


class _InFlightReadback(AsyncReadback):
    """An AsyncReadback whose copies arrive one poll after their push, as
    on a GPU that is still busy when the loss polls."""

    def __init__(self):
        super().__init__()
        self._polls = 0

    def poll(self):
        self._polls += 1
        return super().poll() if self._polls % 2 == 0 else []


def test_invalid_labels_read_back_later_are_still_reported():
    logits, label = make_batch()
    bad = label.clone()
    bad[0, 0, 0] = 3
    loss_fn = DiceCELoss()
    loss_fn._label_checks = _InFlightReadback()
    # Its check has not arrived yet; meanwhile the pixel counts as ignored.
    ignored = label.clone()
    ignored[0, 0, 0] = 255
    torch.testing.assert_close(loss_fn(logits, bad),
                               DiceCELoss()(logits, ignored))
    with pytest.raises(ValueError, match='got 1 pixels.*from 3 to 3'):
        loss_fn(logits, label)  # arrives now, with this call's
    loss_fn(logits, bad)
    with pytest.raises(ValueError, match='got 1 pixels'):
        loss_fn.eval()  # switching to eval mode waits for the rest
    assert len(loss_fn._label_checks) == 0
    loss_fn(logits, label)
    loss_fn.eval()  # nothing pending that is bad
    # A checkpoint (the state dict of the model) after the run's last,
    # bad step, with no validation after it: reported before it is saved.
    loss_fn.train()
    loss_fn._label_checks = _BusyDeviceReadback()
    loss_fn(logits, bad)
    model = torch.nn.Sequential(loss_fn)
    with pytest.raises(ValueError, match='got 1 pixels'):
        model.state_dict()
    assert len(loss_fn._label_checks) == 0
    model.state_dict()


@pytest.mark.parametrize('channels', [1, 2])
@pytest.mark.parametrize('avg_non_ignore', [True, False])
def test_loss_makes_the_host_wait_for_nothing(channels, avg_non_ignore):
    logits, label = make_batch(channels=channels)
    logits.requires_grad_(True)
    loss_fn = DiceCELoss(class_weight=CLASS_WEIGHT, focal_weight=0.5,
                         avg_non_ignore=avg_non_ignore)
    with HostSyncRecorder() as syncs:
        loss_fn(logits, label).backward()
    assert syncs.total == 0, syncs.report()


class _BusyDeviceReadback(AsyncReadback):
    """An AsyncReadback whose copies never arrive before it is drained,
    as on a GPU that stays busy: the latest point a bad label may be
    reported."""

    def poll(self):
        return []


def _first_invalid_label_error(device, readback=None):
    """Feed a bad batch between good ones, as training does, and return
    the ValueError it causes, wherever it is raised: in its own call, in a
    later call once the device has caught up, or at ``.eval()``."""
    logits, label = (t.to(device) for t in make_batch())
    bad = label.clone()
    bad[1, 2, 3] = 5
    loss_fn = DiceCELoss(class_weight=CLASS_WEIGHT)
    if readback is not None:
        loss_fn._label_checks = readback
    with HostSyncRecorder() as syncs:
        loss_fn(logits, label)
        try:
            loss_fn(logits, bad)  # raises only if its copy arrived already
            error = None
        except ValueError as err:
            error = err
    assert syncs.total == 0, syncs.report()
    if error is None:
        if device == 'cuda':
            torch.cuda.synchronize()  # the copy has arrived now
        try:
            loss_fn(logits, label)  # polls the arrived copies
        except ValueError as err:
            error = err
    if error is None:
        try:
            loss_fn.eval()  # waits for whatever is still pending
        except ValueError as err:
            error = err
    # Reported once: nothing pending is left to report again.
    loss_fn.eval()
    assert len(loss_fn._label_checks) == 0
    return error


@pytest.mark.parametrize('readback', [AsyncReadback, _InFlightReadback,
                                      _BusyDeviceReadback])
def test_invalid_labels_reported_without_host_sync_cpu(readback):
    """The logic of the CUDA test below, with the CPU's copies arriving at
    once, a call later, or only when drained."""
    error = _first_invalid_label_error('cpu', readback())
    assert error is not None, 'the bad label was never reported'
    assert 'got 1 pixels' in str(error) and 'from 5 to 5' in str(error)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_invalid_labels_reported_without_host_sync():
    error = _first_invalid_label_error('cuda')
    assert error is not None, 'the bad label was never reported'
    assert 'got 1 pixels' in str(error) and 'from 5 to 5' in str(error)


def test_all_pixels_ignored_gives_zero():
    logits = torch.randn(2, 2, 4, 4, requires_grad=True)
    label = torch.full((2, 4, 4), 255)
    for mode in ('batch', 'image'):
        loss = DiceCELoss(class_weight=CLASS_WEIGHT, dice_mode=mode,
                          focal_weight=1.0)(logits, label)
        assert loss.item() == 0
        loss.backward()
        assert torch.isfinite(logits.grad).all()


def test_image_mode_leaves_out_images_without_pixels():
    """Per-image Dice averages over the images that have non-ignored
    pixels: a fully ignored image neither adds to it nor dilutes it."""
    logits, label = make_batch(pad=False)
    label[0] = 255
    loss_fn = DiceCELoss(dice_weight=1, ce_weight=0, dice_mode='image')
    torch.testing.assert_close(loss_fn(logits, label),
                               loss_fn(logits[1:], label[1:]))


@pytest.mark.parametrize('mode', ['batch', 'image'])
def test_smooth_zero_without_pixels_counts_as_dice_one(mode):
    """With smooth=0 a batch (or image) without non-ignored pixels has
    0 / 0 for its Dice: it counts as 1, so the batch has no loss and an
    image, left out of the mean, brings no NaN into it; the gradients are
    finite."""
    logits, label = make_batch(pad=False)
    label[0] = 255
    if mode == 'batch':
        label[:] = 255
    logits.requires_grad_()
    loss_fn = DiceCELoss(dice_weight=1, ce_weight=0, dice_mode=mode,
                         smooth=0)
    loss = loss_fn(logits, label)
    expected = 0.0 if mode == 'batch' else loss_fn(logits[1:], label[1:])
    torch.testing.assert_close(loss, torch.as_tensor(expected))
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_avg_non_ignore_false_divides_by_all_pixels():
    logits, label = make_batch()
    loss_fn = DiceCELoss(class_weight=CLASS_WEIGHT, dice_weight=0,
                         ce_weight=1, avg_non_ignore=False)
    per_pixel = F.cross_entropy(
        logits, label, weight=torch.tensor(CLASS_WEIGHT), ignore_index=255,
        reduction='none')
    torch.testing.assert_close(
        loss_fn(logits, label), per_pixel.sum() / label.numel())


def test_pixel_weight_honoured():
    logits, label = make_batch()
    weight = torch.ones(label.shape)
    weight[:, :4] = 0  # as if ignored
    loss_fn = DiceCELoss(class_weight=CLASS_WEIGHT, dice_mode='image',
                         focal_weight=0.5)
    masked = label.clone()
    masked[:, :4] = 255
    torch.testing.assert_close(
        loss_fn(logits, label, weight=weight), loss_fn(logits, masked))
    # A non-binary weight: CE is the weighted mean with weights
    # class_weight[label] * weight.
    weight = torch.rand(label.shape,
                        generator=torch.Generator().manual_seed(1))
    ce_only = DiceCELoss(class_weight=CLASS_WEIGHT, dice_weight=0,
                         ce_weight=1)
    valid = label != 255
    w = torch.tensor(CLASS_WEIGHT)[label.clamp(max=1)] * weight * valid
    nll = F.cross_entropy(logits, label, ignore_index=255, reduction='none')
    torch.testing.assert_close(
        ce_only(logits, label, weight=weight), (w * nll).sum() / w.sum())


def test_class_weight_from_json(tmp_path):
    logits, label = make_batch()
    stats = tmp_path / 'stats.json'
    stats.write_text(json.dumps({'num_images': 4,
                                 'class_weights': CLASS_WEIGHT}))
    from_file = DiceCELoss(class_weight=str(stats))
    assert from_file.class_weight == CLASS_WEIGHT
    torch.testing.assert_close(
        from_file(logits, label),
        DiceCELoss(class_weight=CLASS_WEIGHT)(logits, label))

    missing = tmp_path / 'nope.json'
    with pytest.raises(FileNotFoundError, match='nope.json') as err:
        DiceCELoss(class_weight=str(missing))
    assert 'relative path' not in str(err.value)
    # A relative path (a saved config built from another folder) says
    # where it was looked for.
    with pytest.raises(FileNotFoundError,
                       match='a relative path is read from the current '
                       'folder, .*: run from the folder'):
        DiceCELoss(class_weight='splits/nope.json')
    no_key = tmp_path / 'no_key.json'
    no_key.write_text(json.dumps({'pixel_counts': [1, 2]}))
    with pytest.raises(KeyError, match='no_key.json.*class_weights'):
        DiceCELoss(class_weight=str(no_key))
    broken = tmp_path / 'broken.json'
    broken.write_text('{"class_weights": [1,')
    with pytest.raises(ValueError, match='broken.json'):
        DiceCELoss(class_weight=str(broken))
    wrong = tmp_path / 'wrong.json'
    wrong.write_text(json.dumps({'class_weights': [1.0, 2.0, 3.0]}))
    with pytest.raises(ValueError, match='wrong.json'):
        DiceCELoss(class_weight=str(wrong))


@pytest.mark.parametrize('channels', [2, 1])
def test_bf16_autocast_gradients_finite(channels):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, channels, 3, padding=1)
    image = torch.randn(2, 3, 16, 16)
    label = (torch.rand(2, 16, 16) < 0.2).long()
    label[:, :, -3:] = 255
    loss_fn = DiceCELoss(class_weight=CLASS_WEIGHT, focal_weight=0.5,
                         dice_mode='image')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits = conv(image)
        assert logits.dtype == torch.bfloat16
        loss = loss_fn(logits, label)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in conv.parameters())
    assert conv.weight.grad.abs().sum() > 0


def test_sigmoid_head_matches_softmax_head_and_reference():
    logits2, label = make_batch(channels=2)
    z = logits2[:, 1] - logits2[:, 0]
    for mode in ('batch', 'image'):
        loss_fn = DiceCELoss(class_weight=CLASS_WEIGHT, dice_mode=mode,
                             focal_weight=0.2)
        torch.testing.assert_close(
            loss_fn(z[:, None], label), loss_fn(logits2, label))
    # CE part against BCE-with-logits weighted by class.
    ce_only = DiceCELoss(class_weight=CLASS_WEIGHT, dice_weight=0,
                         ce_weight=1)
    valid = label != 255
    target = label[valid].float()
    w = torch.tensor(CLASS_WEIGHT)[label[valid]]
    bce = F.binary_cross_entropy_with_logits(
        z[valid], target, weight=w, reduction='sum') / w.sum()
    torch.testing.assert_close(ce_only(z[:, None], label), bce)


def test_focal_term():
    logits, label = make_batch()
    ce = DiceCELoss(class_weight=CLASS_WEIGHT, dice_weight=0, ce_weight=1)
    focal_gamma0 = DiceCELoss(class_weight=CLASS_WEIGHT, dice_weight=0,
                              ce_weight=0, focal_weight=1, focal_gamma=0)
    torch.testing.assert_close(focal_gamma0(logits, label),
                               ce(logits, label))

    focal = DiceCELoss(class_weight=CLASS_WEIGHT, dice_weight=0, ce_weight=0,
                       focal_weight=1, focal_gamma=2)
    valid = label != 255
    logp = logits.log_softmax(1).permute(0, 2, 3, 1)[valid]
    tgt = label[valid]
    logp_t = logp.gather(1, tgt[:, None])[:, 0]
    w = torch.tensor(CLASS_WEIGHT)[tgt]
    expected = (w * (1 - logp_t.exp())**2 * -logp_t).sum() / w.sum()
    torch.testing.assert_close(focal(logits, label), expected)
    assert focal(logits, label) < ce(logits, label)

    combined = DiceCELoss(class_weight=CLASS_WEIGHT, focal_weight=0.25)
    base = DiceCELoss(class_weight=CLASS_WEIGHT)
    torch.testing.assert_close(
        combined(logits, label),
        base(logits, label) + 0.25 * expected)


def test_build_via_registry_and_name():
    loss = MODELS.build(dict(type='DiceCELoss', class_weight=CLASS_WEIGHT,
                             dice_mode='image'))
    assert isinstance(loss, DiceCELoss)
    assert loss.loss_name == 'loss_dice_ce'
    assert loss.dice_mode == 'image'
    named = MODELS.build(dict(type='DiceCELoss', loss_name='loss_ptx'))
    assert named.loss_name == 'loss_ptx'


@pytest.mark.parametrize('kwargs, match', [
    (dict(loss_name='dice_ce'), 'loss_name'),
    (dict(dice_mode='pixel'), 'dice_mode'),
    (dict(ce_weight=-1), 'ce_weight'),
    (dict(smooth=float('nan')), 'smooth'),
    (dict(ce_weight=0, dice_weight=0), 'all 0'),
    (dict(class_weight=[1.0]), 'class_weight'),
    (dict(class_weight=[1.0, -2.0]), 'class_weight'),
    (dict(loss_weight=-0.4), 'loss_weight'),
    (dict(loss_weight=float('inf')), 'loss_weight'),
    (dict(use_sigmoid='yes'), 'use_sigmoid'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiceCELoss(**kwargs)


@pytest.mark.parametrize('channels', [2, 1])
def test_loss_weight_scales_the_loss_terms_and_gradient(channels):
    logits, label = make_batch(channels=channels)
    kwargs = dict(class_weight=CLASS_WEIGHT, focal_weight=0.3)
    plain, weighted = DiceCELoss(**kwargs), DiceCELoss(loss_weight=0.4,
                                                       **kwargs)
    grads = []
    for loss_fn in (plain, weighted):
        x = logits.clone().requires_grad_()
        loss_fn(x, label).backward()
        grads.append(x.grad)
    assert torch.allclose(weighted(logits, label),
                          0.4 * plain(logits, label))
    assert torch.allclose(grads[1], 0.4 * grads[0])
    assert torch.allclose(
        weighted(logits, label, reduction_override='none'),
        0.4 * plain(logits, label, reduction_override='none'))


def test_use_sigmoid_is_checked_against_the_head():
    # A stock config's keys (its CrossEntropyLoss's use_sigmoid and
    # loss_weight, say) merged into DiceCELoss build and are honoured.
    merged = MODELS.build(dict(type='DiceCELoss', use_sigmoid=False,
                               loss_weight=0.4))
    softmax, label = make_batch(channels=2)
    sigmoid, _ = make_batch(channels=1)
    assert torch.allclose(merged(softmax, label),
                          0.4 * DiceCELoss()(softmax, label))
    with pytest.raises(ValueError, match='use_sigmoid=False.*1 channel'):
        merged(sigmoid, label)
    with pytest.raises(ValueError, match='use_sigmoid=True.*2 channel'):
        DiceCELoss(use_sigmoid=True)(softmax, label)
    assert torch.equal(DiceCELoss(use_sigmoid=True)(sigmoid, label),
                       DiceCELoss()(sigmoid, label))


def test_bad_shapes():
    loss_fn = DiceCELoss()
    with pytest.raises(ValueError, match='binary'):
        loss_fn(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4).long())
    with pytest.raises(ValueError, match='does not match'):
        loss_fn(torch.randn(2, 2, 4, 4), torch.zeros(2, 4, 5).long())


def make_data_samples(n=2, size=32):
    samples = []
    for i in range(n):
        gt = torch.zeros(1, size, size, dtype=torch.long)
        gt[0, 4:12, 6:14] = 1 if i == 0 else 0
        gt[0, :, size - 6:] = 255  # padding
        sample = SegDataSample(gt_sem_seg=PixelData(data=gt))
        sample.set_metainfo(dict(img_shape=(size, size),
                                 pad_shape=(size, size)))
        samples.append(sample)
    return samples


@pytest.mark.parametrize('out_channels', [2, 1])
def test_fcn_head_end_to_end(out_channels):
    torch.manual_seed(0)
    head = FCNHead(
        in_channels=4, channels=8, num_convs=1, num_classes=2,
        out_channels=out_channels, threshold=0.5,
        loss_decode=dict(type='DiceCELoss', class_weight=CLASS_WEIGHT,
                         dice_mode='image', focal_weight=0.1))
    inputs = [torch.randn(2, 4, 8, 8)]
    losses = head.loss(inputs, make_data_samples(), train_cfg=dict())
    assert set(losses) == {'loss_dice_ce', 'acc_seg'}
    assert losses['loss_dice_ce'].dim() == 0
    assert torch.isfinite(losses['loss_dice_ce'])
    losses['loss_dice_ce'].backward()
    assert torch.isfinite(head.conv_seg.weight.grad).all()
    assert head.conv_seg.weight.grad.abs().sum() > 0


def test_uper_head_loss_by_feat_with_two_losses():
    torch.manual_seed(0)
    head = UPerHead(
        in_channels=[4, 4, 4, 4], in_index=[0, 1, 2, 3], channels=8,
        pool_scales=(1, 2), num_classes=2,
        loss_decode=[
            dict(type='DiceCELoss', class_weight=CLASS_WEIGHT),
            dict(type='DiceCELoss', ce_weight=0, dice_weight=0,
                 focal_weight=1.0, loss_name='loss_focal'),
        ])
    inputs = [torch.randn(2, 4, s, s) for s in (16, 8, 4, 2)]
    seg_logits = head(inputs)
    samples = make_data_samples()
    losses = head.loss_by_feat(seg_logits, samples)
    assert {'loss_dice_ce', 'loss_focal'} <= set(losses)
    # Same value as calling the loss directly on the resized logits.
    label = torch.stack([s.gt_sem_seg.data[0] for s in samples])
    resized = F.interpolate(seg_logits, size=label.shape[1:],
                            mode='bilinear', align_corners=False)
    torch.testing.assert_close(
        losses['loss_dice_ce'],
        reference_loss(resized, label, CLASS_WEIGHT, 'batch'))
    sum(v for k, v in losses.items() if k.startswith('loss_')).backward()
    assert torch.isfinite(head.conv_seg.weight.grad).all()
