"""mmseg_ptx.apis.inference on the tiny model."""
import csv
import logging

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger
from tiny_model import build_tiny_model, save_tiny_checkpoint

from conftest import ROOT, TINY_CONFIG
from mmseg_ptx.apis import (build_postprocessor, draw_overlay,
                            evaluator_postprocess, find_images, load_models,
                            mask_threshold_mismatch, postprocess_mismatch,
                            predict_probabilities,
                            read_image, write_submission)
from mmseg_ptx.apis import inference
from mmseg_ptx.datasets.rle import rle_decode, rle_encode


def test_tta_is_mean_of_plain_and_flipped():
    model = build_tiny_model()
    rng = np.random.default_rng(0)
    # 128 px: the test pipeline's Resize is the identity, so flipping the
    # original image equals flipping the resized one.
    img = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)
    plain, flipped = predict_probabilities(
        [model], [img, img[:, ::-1].copy()])
    assert plain.shape == (128, 128) and plain.dtype == np.float32
    assert np.abs(plain - flipped[:, ::-1]).max() > 1e-4
    (tta, ) = predict_probabilities([model], [img], tta=True)
    np.testing.assert_allclose(tta, (plain + flipped[:, ::-1]) / 2,
                               atol=1e-5)
    # Two copies of the model average to the model (same batch, so the
    # same float arithmetic).
    (single, ) = predict_probabilities([model], [img])
    (pair, ) = predict_probabilities([model, model], [img])
    np.testing.assert_allclose(pair, single, atol=1e-6)


def test_images_of_different_sizes_in_one_call():
    """Each size is its own batch; results come back in input order and
    equal one-image calls."""
    model = build_tiny_model()
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, shape, dtype=np.uint8)
              for shape in ((128, 128), (96, 160), (128, 128))]
    probs = predict_probabilities([model], images, tta=True)
    assert [p.shape for p in probs] == [(128, 128), (96, 160), (128, 128)]
    for img, prob in zip(images, probs):
        (alone, ) = predict_probabilities([model], [img], tta=True)
        np.testing.assert_allclose(prob, alone, atol=1e-5)


def test_one_input_size_of_several_original_sizes_without_warning():
    """128 and 256 px images are both resized to the tiny config's 256 px:
    one batch, each map at its own size, and no mmseg warning that the
    batch's original sizes differ (nothing is wrong)."""
    model = build_tiny_model()
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, (size, size), dtype=np.uint8)
              for size in (128, 256)]
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        probs = predict_probabilities([model], images)
    finally:
        logger.removeHandler(handler)
    assert [p.shape for p in probs] == [(128, 128), (256, 256)]
    assert not [r.getMessage() for r in records
                if 'shapes are different' in r.getMessage()]
    assert not logger.filters
    # Only that warning is dropped.
    records.clear()
    logger.addHandler(handler)
    try:
        with inference._mixed_original_sizes_allowed():
            logger.warning('another warning')
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ['another warning']
    for img, prob in zip(images, probs):
        (alone, ) = predict_probabilities([model], [img])
        np.testing.assert_allclose(prob, alone, atol=1e-5)


def test_nan_probabilities_are_an_error_naming_the_image():
    # A diverged checkpoint: thresholded, NaN reads as no pneumothorax.
    model = build_tiny_model()
    with torch.no_grad():
        model.decode_head.conv_seg.bias[1] = float('nan')
    img = np.zeros((128, 128), np.uint8)
    with pytest.raises(ValueError, match=r'^b\.png: the probability map '
                       r'contains NaN'):
        predict_probabilities([model], [img, img], names=['b.png', 'a.png'])


def test_nan_in_one_image_of_a_batch_names_that_image(monkeypatch):
    # An overflow in reduced precision on one input, say.
    model = build_tiny_model()
    calls = []
    real = inference.foreground_probability

    def nan_for_the_second(logits):
        calls.append(None)
        prob = real(logits)
        return prob.fill_(float('nan')) if len(calls) == 2 else prob

    monkeypatch.setattr(inference, 'foreground_probability',
                        nan_for_the_second)
    img = np.zeros((128, 128), np.uint8)
    with pytest.raises(ValueError, match=r'^b\.png: the probability map '
                       r'contains NaN'):
        predict_probabilities([model], [img, img, img],
                              names=['a.png', 'b.png', 'c.png'])


def test_grey_and_colour_loading_configs_ensemble(tmp_path, demo_root):
    """Models of older configs that load DICOMs in colour ensemble with
    this project's grey-loading ones: each gets the image its loader
    would give, so the same weights give the same probabilities."""
    ckpt = save_tiny_checkpoint(build_tiny_model(), tmp_path / 'tiny.pth')
    colour_cfg = tmp_path / 'colour.py'
    colour_cfg.write_text(
        f'_base_ = [{str(TINY_CONFIG)!r}]\n'
        'test_pipeline = [\n'
        "    dict(type='LoadDicomImageFromFile'),\n"
        "    dict(type='Resize', scale=(256, 256), keep_ratio=True),\n"
        "    dict(type='PackSegInputs')]\n"
        'test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n')
    grey = (str(TINY_CONFIG), str(ckpt))
    colour = (str(colour_cfg), str(ckpt))
    dicom = str(sorted((demo_root / 'dicom-images-train').rglob('*.dcm'))[0])

    (grey_model, ) = load_models([grey], device='cpu')
    img = read_image(dicom, [grey_model])
    assert img.ndim == 2 and img.dtype == np.uint8
    (expected, ) = predict_probabilities([grey_model], [img])
    for specs in ([colour], [grey, colour], [colour, grey]):
        models = load_models(specs, device='cpu')
        img = read_image(dicom, models)
        assert img.ndim == (3 if specs[0] is colour else 2)
        (prob, ) = predict_probabilities(models, [img])
        np.testing.assert_array_equal(prob, expected)

    # Loaders that differ in more than the colour type still refuse.
    other_cfg = tmp_path / 'float.py'
    other_cfg.write_text(
        f'_base_ = [{str(TINY_CONFIG)!r}]\n'
        'test_pipeline = [\n'
        "    dict(type='LoadDicomImageFromFile', to_float32=True),\n"
        "    dict(type='PackSegInputs')]\n"
        'test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n')
    with pytest.raises(ValueError, match='load images differently'):
        load_models([grey, (str(other_cfg), str(ckpt))], device='cpu')


def test_build_postprocessor_defaults_and_overrides():
    model = build_tiny_model()
    # The tiny config's triplet: the Swin-B one with min_area scaled from
    # 1024 to the demo's 256 px.
    pp = build_postprocessor(model.cfg)
    assert (pp.top_threshold, pp.min_area,
            pp.bottom_threshold) == (0.75, 125, 0.3)
    pp = build_postprocessor(model.cfg, {'min_area': 10})
    assert pp.min_area == 10 and pp.top_threshold == 0.75
    # The overrides are not written into the config.
    assert build_postprocessor(model.cfg).min_area == 125
    plain = build_postprocessor(model.cfg, enabled=False)
    assert (plain.top_threshold, plain.min_area) == (0.5, 0)
    assert build_postprocessor(None).bottom_threshold == 0.5


@pytest.mark.parametrize('head, metric, warned', [
    # mmseg's BaseDecodeHead cuts a 1-channel head at 0.3 by default;
    # out_channels defaults to num_classes.
    (dict(out_channels=1), dict(), 'the 1-channel decode head writes '
     "probability > 0.3 (its threshold), test_evaluator's "
     'PneumothoraxMetric scores probability > 0.5'),
    (dict(num_classes=1), dict(), '> 0.3 (its threshold)'),
    (dict(out_channels=1, threshold=0.5), dict(), None),
    (dict(out_channels=1), dict(threshold=0.3), None),
    (dict(out_channels=1, threshold=0.4), dict(threshold=0.6),
     'give the metric threshold=0.4'),
    # The post-processor makes only the *_pp numbers' masks.
    (dict(out_channels=1), dict(postprocess=dict(
        type='TripletThresholdPostProcessor')), '> 0.3 (its threshold)'),
    # 2 channels: the argmax, probability > 0.5.
    (dict(), dict(), None),
    (dict(), dict(threshold=0.3), 'the head writes its argmax, probability '
     '> 0.5'),
])
def test_mask_threshold_mismatch(head, metric, warned):
    from mmengine.config import Config
    head = dict(dict(type='FCNHead', num_classes=2), **head)
    cfg = Config(dict(
        model=dict(type='EncoderDecoder', decode_head=head),
        test_evaluator=[dict(type='mmseg.IoUMetric'),
                        dict(type='PneumothoraxMetric', **metric)]))
    warning = mask_threshold_mismatch(cfg)
    assert (warning is None) == (warned is None), warning
    if warned:
        assert warned in warning
    assert mask_threshold_mismatch(cfg, 'val_evaluator') is None
    # TTA keeps the head's threshold; a cascade's last head predicts.
    single = cfg.model
    cfg.model = dict(type='SegTTAModelWithLogits', module=single)
    assert mask_threshold_mismatch(cfg) == warning
    cfg.model = dict(single, decode_head=[dict(type='FCNHead'), head])
    assert mask_threshold_mismatch(cfg) == warning


@pytest.mark.parametrize('metric, warned', [(0.5, False), (0.3, True)])
def test_an_ensemble_writes_above_one_half(metric, warned):
    """EnsembleSegmentor's masks are its averaged probability > 0.5,
    whatever its members' heads (here MMSeg's 1-channel 0.3)."""
    from mmengine.config import Config
    member = dict(type='EncoderDecoder', decode_head=dict(
        type='FCNHead', num_classes=2, out_channels=1))
    cfg = Config(dict(
        model=dict(type='SegTTAModelWithLogits', module=dict(
            type='EnsembleSegmentor', models=[member, member])),
        test_evaluator=dict(type='PneumothoraxMetric', threshold=metric)))
    warning = mask_threshold_mismatch(cfg)
    assert (warning is not None) == warned, warning
    if warned:
        assert warning.startswith('the ensemble writes probability > 0.5, ')


def test_postprocess_mismatch_of_a_child_config(tmp_path):
    # The base's `test_evaluator = val_evaluator` is resolved in the base:
    # a child that sets val_evaluator (to a tuned triplet) leaves
    # test_evaluator at the base's, which tools/test.py would score.
    from mmengine.config import Config
    base = 'configs/upernet_swin-b_ptx-512.py'
    tuned = ("dict(type='PneumothoraxMetric', postprocess=dict("
             "type='TripletThresholdPostProcessor', top_threshold=0.6, "
             'min_area=500, bottom_threshold=0.4))')
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = ['{ROOT / base}']\nval_evaluator = {tuned}\n")
    cfg = Config.fromfile(str(child))
    assert evaluator_postprocess(cfg)['top_threshold'] == 0.6
    assert evaluator_postprocess(cfg, 'test_evaluator')['top_threshold'] \
        == 0.75
    assert build_postprocessor(cfg).top_threshold == 0.6
    warning = postprocess_mismatch(cfg)
    assert "'top_threshold': 0.6" in warning
    assert "'top_threshold': 0.75" in warning
    assert 'Set test_evaluator = val_evaluator' in warning
    # Said again in the child, as the warning asks: no warning.
    child.write_text(f"_base_ = ['{ROOT / base}']\nval_evaluator = {tuned}\n"
                     'test_evaluator = val_evaluator\n')
    assert postprocess_mismatch(Config.fromfile(str(child))) is None
    assert postprocess_mismatch(Config.fromfile(str(ROOT / base))) is None


def test_write_submission_and_find_images(tmp_path, monkeypatch):
    mask = np.zeros((6, 5), np.uint8)
    mask[1:3, 2] = 1
    mask[5, 4] = 1  # the very last pixel
    path = tmp_path / 'sub.csv'
    assert write_submission(str(path), {'a': mask, 'b': np.zeros_like(mask),
                                        'c': '1 2'}) == 3
    rows = list(csv.reader(path.open()))
    assert rows[0] == ['ImageId', 'EncodedPixels']
    assert rows[2] == ['b', '-1'] and rows[3] == ['c', '1 2']
    np.testing.assert_array_equal(rle_decode(rows[1][1], 6, 5), mask)
    with pytest.raises(ValueError, match='Duplicate'):
        write_submission(str(path), [('a', mask), ('a', mask)])
    # 0/255 masks and bool masks; RLE strings stripped (the stage-1 ' -1').
    assert write_submission(str(path), [
        ('a', mask * 255), ('b', mask > 0), ('c', ' -1'), ('d', ' 1 2 '),
        ('e', mask.astype(np.float32)), ('f', np.zeros((6, 5)))]) == 6
    rows = list(csv.reader(path.open()))
    assert rows[1][1] == rows[2][1] == rows[5][1] == rle_encode(mask)
    assert rows[3:5] == [['c', '-1'], ['d', '1 2']]
    assert rows[6] == ['f', '-1']
    before = path.read_bytes()
    prob = np.full((6, 5), 0.01, np.float32)
    prob[0, 0] = 0.9
    for value, message in [
            # Encoded as "any non-zero pixel", these would be whole-image
            # masks.
            (prob, r"'x': the mask must be binary .*got other float32"),
            (mask * 255.0, r"'x': the mask must be binary"),
            (np.where(mask, np.nan, 0), r"'x': the mask must be binary"),
            (mask * 2 + (mask > 0), r"'x': the mask must be binary"),
            # One foreground value only: a map whose first non-zero pixel
            # is 1 is still a map.
            (mask + (np.arange(30).reshape(6, 5) == 29),
             r"'x': the mask must be binary"),
            (np.where(mask > 0, 1.0, 0.0) + 0.5 * (np.arange(30).reshape(
                6, 5) == 29), r"'x': the mask must be binary"),
            (mask * 7, r"'x': the mask must be binary .*got other uint8"),
            (mask[None], r"'x': the mask must be 2-D \(H, W\), got shape "
             r"\(1, 6, 5\)"),
            (mask.ravel(), r"'x': the mask must be 2-D"),
            (np.array(1, np.uint8), r"'x': the mask must be 2-D"),
            ('', r"'x': .*"), ('nan', r"'x': .*"), ('1 2 3', r"'x': .*")]:
        with pytest.raises(ValueError, match=message):
            write_submission(str(path), [('a', mask), ('x', value)])
        # No half file in place of the earlier one.
        assert path.read_bytes() == before
    # Written whole or not at all: through write_atomically.
    written = []
    monkeypatch.setattr(inference, 'write_atomically',
                        lambda *args: written.append(args))
    write_submission(str(path), {'a': mask})
    assert written == [(str(path),
                        f'ImageId,EncodedPixels\na,{rle_encode(mask)}\n'
                        .encode())]

    (tmp_path / 'd' / 'e').mkdir(parents=True)
    for name in ('d/x.DCM', 'd/e/y.png', 'd/e/z.txt', 'd/w.jpg'):
        (tmp_path / name).write_bytes(b'')
    found = [p[len(str(tmp_path)) + 1:] for p in find_images(
        str(tmp_path / 'd'))]
    assert found == ['d/e/y.png', 'd/w.jpg', 'd/x.DCM']  # sorted paths
    with pytest.raises(FileNotFoundError, match='nowhere'):
        find_images(str(tmp_path / 'nowhere'))


def test_draw_overlay_fills_and_outlines_the_mask():
    """docs/inference.md: an overlay is the image with the mask filled
    and outlined; away from the mask it is the image."""
    import cv2
    img = np.random.default_rng(2).integers(0, 256, (64, 64), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 10:30] = 1
    mask[45:50, 40:60] = 255  # a second region: any non-zero value counts
    before = img.copy()
    out = draw_overlay(img, mask)  # red, alpha 0.35
    np.testing.assert_array_equal(img, before)  # drawn on a copy
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    bgr = np.repeat(img[..., None], 3, axis=2).astype(np.float64)
    red = np.array([0, 0, 255])
    fill = bgr * 0.65 + red * 0.35
    kernel = np.ones((3, 3), np.uint8)
    interior = cv2.erode(mask, kernel).astype(bool)
    outline = (mask != 0) & ~interior  # each region's border pixels
    far = ~cv2.dilate(mask, kernel, iterations=2).astype(bool)
    assert interior.sum() > 200 and outline.sum() > 100
    # Inside: the image tinted (to rounding), not replaced.
    np.testing.assert_allclose(out[interior], fill[interior], atol=1)
    # The outline in the full colour, unlike the fill (whose blue is
    # 0.65 * grey and red at most 255 only where the grey is 255).
    np.testing.assert_array_equal(out[outline],
                                  np.broadcast_to(red, (outline.sum(), 3)))
    assert (np.abs(fill[outline] - red) > 1).any(axis=1).all()
    np.testing.assert_array_equal(out[far], bgr[far])
    # A BGR image without a mask comes back as it was.
    colour = np.dstack([img, img[::-1], img[:, ::-1]])
    np.testing.assert_array_equal(
        draw_overlay(colour, np.zeros_like(mask)), colour)


def test_a_checkpoint_of_another_model_is_refused(tmp_path, monkeypatch):
    """mmseg's init_model loads non-strictly: a checkpoint that does not
    fit would leave the model at random weights, silently."""
    import torch

    from mmseg_ptx.models import EnsembleSegmentor
    from mmseg_ptx.models.utils import load_checkpoint_strict
    model = build_tiny_model()
    good = save_tiny_checkpoint(model, tmp_path / 'tiny.pth')
    state = model.state_dict()
    bad = {
        'unrelated.pth': {'0.weight': torch.zeros(3)},
        'no_head.pth': {k: v for k, v in state.items()
                        if not k.startswith('decode_head.')},
        'other_width.pth': dict(
            state, **{'decode_head.conv_seg.weight': torch.zeros(2, 7, 1,
                                                                 1)}),
    }
    for name, state_dict in bad.items():
        path = tmp_path / name
        torch.save({'state_dict': state_dict, 'meta': {}}, path)
        with pytest.raises(ValueError, match=f'{name} does not fit'):
            load_models([(str(TINY_CONFIG), str(path))], device='cpu')
        with pytest.raises(ValueError, match=f'{name} does not fit'):
            EnsembleSegmentor(models=[model.cfg.model],
                              checkpoints=[str(path)])
    (loaded, ) = load_models([(str(TINY_CONFIG), str(good))], device='cpu')
    assert loaded.dataset_meta['classes'] == ('background', 'pneumothorax')
    # A Config (tools/tune_postprocess.py's, after --cfg-options) too; a
    # missing file, given as a Path or not, is named.
    from mmengine.config import Config
    (from_cfg, ) = load_models([(Config.fromfile(TINY_CONFIG), str(good))],
                               device='cpu')
    assert torch.equal(from_cfg.decode_head.conv_seg.weight,
                       loaded.decode_head.conv_seg.weight)
    with pytest.raises(FileNotFoundError, match='Checkpoint file not found'):
        load_models([(TINY_CONFIG, tmp_path / 'missing.pth')], device='cpu')
    # An ensemble member's missing file: before any model loads.
    import mmseg_ptx.apis.inference as inference
    built = []
    monkeypatch.setattr(inference, 'init_model_strict',
                        lambda *args: built.append(args))
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        load_models([(TINY_CONFIG, str(good)),
                     (TINY_CONFIG, tmp_path / 'missing.pth')], device='cpu')
    assert built == []
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, state[key]), key
    # A DDP checkpoint's 'module.' prefix is stripped, as in mmengine.
    ddp = tmp_path / 'ddp.pth'
    torch.save({'state_dict': {f'module.{k}': v for k, v in state.items()}},
               ddp)
    load_checkpoint_strict(build_tiny_model(seed=1), str(ddp))


def test_read_image_with_mmcv_loaders(tmp_path):
    """mmcv's LoadImageFromFile asserts on an undecodable file: that is an
    OSError naming it, like every unreadable file. LoadImageFromNDArray
    (mmseg's inferencer's loader) reads the file as its parent does."""
    import cv2
    good, broken = tmp_path / 'good.png', tmp_path / 'broken.png'
    img = np.random.default_rng(0).integers(0, 255, (16, 24, 3), np.uint8)
    cv2.imwrite(str(good), img)
    broken.write_bytes(b'not a png')
    model = build_tiny_model()
    for loader in ('LoadImageFromFile', 'LoadImageFromNDArray'):
        model.cfg.test_dataloader.dataset.pipeline = [
            dict(type=loader), dict(type='PackSegInputs')]
        np.testing.assert_array_equal(read_image(str(good), [model]), img)
        with pytest.raises(OSError, match='broken.png'):
            read_image(str(broken), [model])


def test_runner_loads_strictly_in_its_own_place():
    """tools/test.py keeps mmengine's order (load_or_resume after the
    before_run hooks) and only makes the load strict: a mismatch or a
    file that is no checkpoint is a ValueError naming the file, other
    errors stay."""
    import torch

    from mmseg_ptx.models.utils import load_runner_checkpoints_strictly

    class Runner:
        model = torch.nn.Linear(1, 1)

        def load_checkpoint(self, filename, map_location='cpu',
                            strict=False, revise_keys=None):
            self.calls.append((filename, strict, revise_keys))
            raise RuntimeError(self.error)

    runner = Runner()
    runner.calls = []
    load_runner_checkpoints_strictly(runner)
    runner.error = ('The model and loaded state dict do not match exactly\n'
                    '\nmissing keys in source state_dict: weight\n')
    with pytest.raises(ValueError, match='a.pth does not fit the model '
                       r'\(Linear\).*missing keys in source state_dict'):
        runner.load_checkpoint('a.pth')
    runner.error = 'PytorchStreamReader failed reading zip archive'
    with pytest.raises(ValueError, match='Checkpoint b.pth could not be '
                       'read: not a complete PyTorch checkpoint'):
        runner.load_checkpoint('b.pth', revise_keys=[('x', '')])
    runner.error = 'some other failure'
    with pytest.raises(RuntimeError, match='^some other failure$'):
        runner.load_checkpoint('c.pth')
    assert runner.calls == [('a.pth', True, None),
                            ('b.pth', True, [('x', '')]),
                            ('c.pth', True, None)]


def test_load_models_applies_the_configs_speed_settings(tmp_path,
                                                        monkeypatch):
    """What a test run through mmengine's Runner would apply: the config's
    ChannelsLastHook (convolution weights in channels_last) and
    env_cfg.cudnn_benchmark; the same probabilities."""
    import torch
    from mmengine.config import Config
    from mmseg_ptx.engine.hooks import ChannelsLastHook

    def layouts(model):
        """channels_last-only for each convolution weight wider than 1x1."""
        return {n: p.is_contiguous(memory_format=torch.channels_last)
                and not p.is_contiguous()
                for n, p in model.named_parameters()
                if p.dim() == 4 and p.shape[-1] > 1}

    ckpt = str(save_tiny_checkpoint(build_tiny_model(), tmp_path / 't.pth'))
    plain = Config.fromfile(TINY_CONFIG)
    plain.env_cfg = dict(cudnn_benchmark=False)
    fast = Config.fromfile(TINY_CONFIG)
    fast.custom_hooks = [dict(type='ChannelsLastHook')]
    # New-style configs give the class itself.
    fast_class = Config.fromfile(TINY_CONFIG)
    fast_class.custom_hooks = [dict(type=ChannelsLastHook)]
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)

    (plain_model, ) = load_models([(plain, ckpt)], device='cpu')
    assert layouts(plain_model) and not any(layouts(plain_model).values())
    assert torch.backends.cudnn.benchmark is False
    img = np.random.default_rng(0).integers(0, 256, (96, 96), np.uint8)
    (expected, ) = predict_probabilities([plain_model], [img])
    for cfg in (fast, fast_class):
        (model, ) = load_models([(cfg, ckpt)], device='cpu',
                                fuse_conv_bn=True)
        assert all(layouts(model).values()), layouts(model)
        # The tiny config inherits cudnn_benchmark=True (mmseg's runtime).
        assert torch.backends.cudnn.benchmark is True
        (prob, ) = predict_probabilities([model], [img])
        np.testing.assert_allclose(prob, expected, atol=1e-5)
