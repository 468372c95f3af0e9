"""Inference on radiographs: models, probabilities, masks, submissions.

``tools/infer.py`` is a thin command line over these functions:

>>> models = load_models([('cfg.py', 'model.pth')], device='cpu')
>>> img = read_image('image.dcm', models)
>>> prob = predict_probabilities(models, [img], tta=True)[0]
>>> mask = build_postprocessor(models[0].cfg)(prob)

Probabilities are the pneumothorax probability at the original image
resolution (MMSeg's segmentors resize ``seg_logits`` back), averaged over
the models and, with TTA, over the plain and horizontally flipped views.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import logging
import os.path as osp
from typing import (Callable, Dict, Iterable, Iterator, List, Mapping,
                    Optional, Sequence, Tuple, Union)

import cv2
import numpy as np
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.logging import MMLogger
from mmseg.registry import MODELS, TRANSFORMS
from torch import nn

from ..datasets.files import list_files
from ..datasets.rle import rle_encode, rle_validate
from ..engine.hooks.channels_last_hook import to_channels_last
from ..models.postprocessors import TripletThresholdPostProcessor
from ..models.segmentors import foreground_probability
from ..models.utils import cast_for_inference, init_model_strict
from ..utils import write_atomically
# (the name load_models' argument takes)
from ..models.utils import fuse_conv_bn as _fuse_conv_bn
from .cli import (config_entries, config_type_name, has_custom_hook,
                  require_file)
from .pipelines import ANNOTATION_LOADERS, config_test_pipeline

__all__ = [
    'IMAGE_SUFFIXES', 'default_device', 'find_images', 'load_models',
    'build_inference_pipeline', 'image_reader', 'read_image',
    'predict_packed', 'predict_probabilities', 'build_postprocessor',
    'evaluator_postprocess', 'postprocess_mismatch',
    'mask_threshold_mismatch', 'draw_overlay', 'write_submission'
]

IMAGE_SUFFIXES = ('.dcm', '.dicom', '.png', '.jpg', '.jpeg')
# The image is read once by read_image() and shared by all models.
IMAGE_LOADERS = ('LoadDicomImageFromFile', 'LoadImageFromFile',
                 'LoadImageFromNDArray')
# The plain 0.5 threshold, as a triplet that never empties an image.
PLAIN_THRESHOLD = dict(
    type='TripletThresholdPostProcessor',
    top_threshold=0.5,
    min_area=0,
    bottom_threshold=0.5)

ModelSpec = Tuple[Union[str, Config], str]


def default_device() -> str:
    """``'cuda:0'`` when a GPU is visible, else ``'cpu'``."""
    return 'cuda:0' if torch.cuda.is_available() else 'cpu'


def find_images(path: str) -> List[str]:
    """One image file, or every image in a folder tree (sorted).

    Args:
        path (str): A DICOM/PNG/JPEG file or a folder searched
            recursively for files ending in :data:`IMAGE_SUFFIXES`
            (case-insensitive), linked folders included
            (:func:`~mmseg_ptx.datasets.files.list_files`).

    Returns:
        list[str]: The image paths.
    """
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'Input not found: {path}')
    return [osp.join(path, rel) for rel in list_files(path, IMAGE_SUFFIXES)]


def build_inference_pipeline(cfg: Config) -> Tuple[dict, Compose]:
    """Split a config's test pipeline into image loading and the rest.

    Args:
        cfg (Config): A model config with ``test_dataloader.dataset.pipeline``
            (:func:`~mmseg_ptx.apis.pipelines.config_test_pipeline`: what
            ``tools/test.py`` runs) or ``test_pipeline``.

    Returns:
        tuple[dict, Compose]: The image-loading transform's config
        (``LoadDicomImageFromFile`` if the pipeline has none) and the
        remaining transforms without any annotation loading.
    """
    steps = config_test_pipeline(cfg)
    if steps is None:
        raise ValueError('the config has no test pipeline '
                         '(test_dataloader.dataset.pipeline or test_pipeline)')
    if any(config_type_name(t) == 'TestTimeAug' for t in steps):
        raise ValueError('Use the plain test pipeline for inference; '
                         'predict_probabilities(tta=True) flips itself')
    loader = dict(type='LoadDicomImageFromFile')
    rest = []
    for step in steps:
        name = config_type_name(step)
        if name == 'LoadImageFromNDArray':
            # What mmseg's inferencer swaps in for in-memory arrays; here
            # the images are files, which its parent class reads.
            loader = dict(step, type='LoadImageFromFile')
        elif name in IMAGE_LOADERS:
            loader = dict(step)
        elif name not in ANNOTATION_LOADERS:
            rest.append(step)
    return loader, Compose([TRANSFORMS.build(t) for t in rest])


def load_models(specs: Sequence[ModelSpec],
                device: Optional[str] = None,
                dtype: Optional[Union[str, torch.dtype]] = None,
                fuse_conv_bn: bool = False) -> List[nn.Module]:
    """Build and load each (config, checkpoint) pair for inference.

    Args:
        specs (Sequence[tuple[str | Config, str]]): Config (path or
            :class:`~mmengine.config.Config`) and checkpoint path.
        device (str, optional): Defaults to :func:`default_device`.
        dtype (str | torch.dtype, optional): Hold the networks' weights in
            this dtype (``'bfloat16'``; see
            :func:`~mmseg_ptx.models.cast_for_inference`). Probabilities
            stay float32. Defaults to None (float32, as loaded).
        fuse_conv_bn (bool): Fold the BatchNorms into their convolutions
            (:func:`~mmseg_ptx.models.fuse_conv_bn`; before the cast to
            ``dtype``). Defaults to False.

    The configs' settings for speed that a test run through mmengine's
    Runner would apply are applied too: a ``ChannelsLastHook`` in
    ``custom_hooks`` puts the model's convolution weights in channels_last,
    and ``env_cfg.cudnn_benchmark`` turns on
    ``torch.backends.cudnn.benchmark`` (process-wide, as the Runner does).

    Returns:
        list[nn.Module]: Segmentors in eval mode, each with ``.cfg``.
        They must load images the same way (same loading transform; a
        ``LoadDicomImageFromFile`` may differ in ``color_type``, see
        :func:`predict_probabilities`).
    """
    if not specs:
        raise ValueError('load_models needs at least one model')
    device = device or default_device()
    # Every file before any model loads (minutes each for Swin-B).
    for config, checkpoint in specs:
        for path, what in ((config, 'Config'), (checkpoint, 'Checkpoint')):
            if not isinstance(path, Config):
                require_file(path, what)
    models = []
    for config, checkpoint in specs:
        # mmseg's init_model would load the weights non-strictly: a
        # checkpoint of another model would predict from random weights.
        model = init_model_strict(config, checkpoint, device)
        if fuse_conv_bn:
            _fuse_conv_bn(model)
        if dtype is not None:
            cast_for_inference(model, dtype)
        if has_custom_hook(model.cfg, 'ChannelsLastHook'):
            to_channels_last(model)
        if (model.cfg.get('env_cfg') or {}).get('cudnn_benchmark'):
            torch.backends.cudnn.benchmark = True
        models.append(model)
    loaders = {_loader_key(build_inference_pipeline(m.cfg)[0])
               for m in models}
    if len(loaders) > 1:
        raise ValueError('The models load images differently '
                         f'({sorted(loaders)}); an ensemble needs one '
                         'image-loading transform')
    return models


def _loader_key(loader_cfg: dict) -> str:
    """What must match for an ensemble to share one read image."""
    cfg = dict(loader_cfg)
    if config_type_name(cfg) == 'LoadDicomImageFromFile':
        # Both colour types read the same grey pixels; predict_probabilities
        # gives each model the layout its own loader would.
        cfg.pop('color_type', None)
    return repr(sorted(cfg.items()))


def _as_loaded(img: np.ndarray, loader_cfg: dict) -> np.ndarray:
    """The image in the layout of a ``LoadDicomImageFromFile`` config.

    A grey image becomes what ``color_type='color'`` loads (the value in
    all three channels) and a three-channel one what ``'grayscale'`` loads
    (OpenCV's BGR-to-grey, exact on such images). Images for other loaders
    are returned as they are.
    """
    if config_type_name(loader_cfg) != 'LoadDicomImageFromFile':
        return img
    if loader_cfg.get('color_type', 'color') == 'color':
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 \
            else img
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return img


def image_reader(models: Sequence[nn.Module]) -> Callable[[str], np.ndarray]:
    """A function that reads an image as the first model's test pipeline
    would, its loading transform built once.

    The transforms this accepts (:data:`IMAGE_LOADERS`) keep no state
    between images, so the function may be called from several threads
    (as ``tools/infer.py`` does).

    Args:
        models (Sequence[nn.Module]): Models from :func:`load_models`.

    Returns:
        Callable[[str], np.ndarray]: ``path -> image``, as
        :func:`read_image`.
    """
    loader_cfg, _ = build_inference_pipeline(models[0].cfg)
    loader = TRANSFORMS.build(loader_cfg)

    def read(path: str) -> np.ndarray:
        try:
            results = loader(dict(img_path=path))
        except (OSError, ValueError):
            raise
        except Exception as err:
            # mmcv's LoadImageFromFile asserts that the image decoded.
            raise OSError(f'Cannot read image {path}: '
                          f'{type(err).__name__}: {err}') from err
        if results is None:  # mmcv's loaders with ignore_empty=True
            raise OSError(f'Cannot read image {path}')
        return results['img']

    return read


def read_image(path: str, models: Sequence[nn.Module]) -> np.ndarray:
    """Read an image as the first model's test pipeline would.

    Args:
        path (str): DICOM, PNG or JPEG file.
        models (Sequence[nn.Module]): Models from :func:`load_models`.

    Returns:
        np.ndarray: The image, ``uint8``: H x W with this project's
        configs (``LoadDicomImageFromFile(color_type='grayscale')``),
        H x W x 3 with a colour loader. Pixel data only: no header field
        is kept.

    Raises:
        OSError, ValueError: Unreadable or corrupt file; the message names
            the file.
    """
    return image_reader(models)(path)


def _pack(pipeline: Compose, img: np.ndarray, name: str) -> dict:
    return pipeline(
        dict(img=img, img_path=name, img_shape=img.shape[:2],
             ori_shape=img.shape[:2]))


def _flipped(packed: dict) -> dict:
    """The horizontally flipped view of a packed input.

    Flipping the resized image and marking ``flip`` in the metainfo is what
    MMSeg's ``RandomFlip`` does in a TTA pipeline; the segmentor's
    ``postprocess_result`` then flips the scores back.
    """
    sample = copy.deepcopy(packed['data_samples'])
    sample.set_metainfo(dict(flip=True, flip_direction='horizontal'))
    return dict(inputs=packed['inputs'].flip(-1), data_samples=sample)


class _MixedOriginalSizesFilter(logging.Filter):
    """Drops mmseg's warning that a batch's original sizes differ."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != (
            'Image shapes are different in the batch.')


@contextlib.contextmanager
def _mixed_original_sizes_allowed() -> Iterator[None]:
    """Without mmseg's warning about a batch of images of different
    original sizes: a batch here is of one network input size, and each
    sample's logits go back to its own original size, so the warning
    (EncoderDecoder.inference, mmseg 1.2.2) reports nothing wrong."""
    logger = MMLogger.get_current_instance()
    quiet = _MixedOriginalSizesFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


@torch.no_grad()
def predict_packed(model: nn.Module,
                   packed: Sequence[dict],
                   tta: bool = False) -> List[torch.Tensor]:
    """Pneumothorax probabilities of a batch of pipeline outputs.

    Images of different sizes go through the network in batches of one
    size each (MMSeg's preprocessor stacks a test batch as it is).

    Args:
        model (nn.Module): An MMSeg segmentor.
        packed (Sequence[dict]): ``PackSegInputs`` outputs (``inputs``,
            ``data_samples``), e.g. dataset items.
        tta (bool): Average with the horizontally flipped view.

    Returns:
        list[torch.Tensor]: (H, W) float32 CPU probabilities at each
        sample's ``ori_shape``, in the order of ``packed``.

    Raises:
        ValueError: A probability map holds NaN (a diverged checkpoint, an
            fp16 overflow), naming its image: thresholded, it would read as
            no pneumothorax anywhere.
    """
    by_shape: Dict[tuple, List[int]] = {}
    for i, p in enumerate(packed):
        by_shape.setdefault(tuple(p['inputs'].shape), []).append(i)
    if len(by_shape) > 1:
        out: List[Optional[torch.Tensor]] = [None] * len(packed)
        for indices in by_shape.values():
            probs = predict_packed(model, [packed[i] for i in indices], tta)
            for i, prob in zip(indices, probs):
                out[i] = prob
        return out
    views = [list(packed)]
    if tta:
        views.append([_flipped(p) for p in packed])
    total: Optional[List[torch.Tensor]] = None
    for view in views:
        # test_step writes into the data samples: give it copies.
        batch = pseudo_collate([
            dict(inputs=p['inputs'],
                 data_samples=copy.deepcopy(p['data_samples']))
            for p in view
        ])
        with _mixed_original_sizes_allowed():
            samples = model.test_step(batch)
        probs = [
            foreground_probability(s.seg_logits.data).cpu() for s in samples
        ]
        total = probs if total is None else [
            a + b for a, b in zip(total, probs)
        ]
    for p, prob in zip(packed, total):
        if torch.isnan(prob).any():
            raise ValueError(
                f'{p["data_samples"].metainfo.get("img_path", "an image")}: '
                'the probability map contains NaN (a diverged checkpoint, or '
                'an overflow in reduced precision)')
    return [p / len(views) for p in total]


def predict_probabilities(models: Sequence[nn.Module],
                          images: Sequence[np.ndarray],
                          tta: bool = False,
                          names: Optional[Sequence[str]] = None
                          ) -> List[np.ndarray]:
    """Average pneumothorax probability of each image over the models.

    Args:
        models (Sequence[nn.Module]): Segmentors from :func:`load_models`
            (each with ``.cfg``); each uses its own test pipeline, and gets
            each image as its own ``LoadDicomImageFromFile`` would give it
            (grey or three-channel), so models of older colour-loading
            configs and of grey ones ensemble.
        images (Sequence[np.ndarray]): Images from :func:`read_image`.
        tta (bool): Also average the horizontally flipped view.
            Defaults to False.
        names (Sequence[str], optional): Image names stored as
            ``img_path`` (for messages). Defaults to None.

    Returns:
        list[np.ndarray]: (H, W) float32 probabilities at each image's
        original resolution.
    """
    if not images:
        return []
    names = list(names) if names is not None else [
        f'image_{i}' for i in range(len(images))
    ]
    total: Optional[List[torch.Tensor]] = None
    for model in models:
        loader_cfg, pipeline = build_inference_pipeline(model.cfg)
        packed = [
            _pack(pipeline, _as_loaded(img, loader_cfg), n)
            for img, n in zip(images, names)
        ]
        probs = predict_packed(model, packed, tta=tta)
        total = probs if total is None else [
            a + b for a, b in zip(total, probs)
        ]
    return [(p / len(models)).numpy() for p in total]


def build_postprocessor(cfg: Optional[Config] = None,
                        overrides: Optional[Mapping] = None,
                        enabled: bool = True
                        ) -> TripletThresholdPostProcessor:
    """The post-processor a config asks for, with overrides.

    Args:
        cfg (Config, optional): Model config; its
            ``val_evaluator.postprocess`` (a dict) is the default.
        overrides (Mapping, optional): Keys replacing those of the default
            (e.g. ``{'min_area': 500}``). Defaults to None.
        enabled (bool): False gives the plain 0.5 threshold whatever the
            config says. Defaults to True.

    Returns:
        TripletThresholdPostProcessor: Without a configured
        post-processing, the plain 0.5 threshold (plus any overrides).
    """
    base = dict(PLAIN_THRESHOLD)
    configured = evaluator_postprocess(cfg) if cfg is not None else None
    if enabled and configured is not None:
        base = configured
    if enabled and overrides:
        base.update(overrides)
    return MODELS.build(base)


def evaluator_postprocess(cfg: Config,
                          key: str = 'val_evaluator') -> Optional[dict]:
    """The ``postprocess`` dict of the first evaluator under ``key`` that
    has one, or None.

    Args:
        cfg (Config): A config.
        key (str): ``'val_evaluator'`` or ``'test_evaluator'``. Defaults to
            ``'val_evaluator'``.

    Returns:
        dict, optional: A copy of the evaluator's ``postprocess``.
    """
    for evaluator in config_entries(cfg, key):
        pp = evaluator.get('postprocess')
        if isinstance(pp, dict):
            return dict(pp)
    return None


def postprocess_mismatch(cfg: Config) -> Optional[str]:
    """A warning if ``val_evaluator`` and ``test_evaluator`` ask for
    different post-processing, else None.

    ``test_evaluator = val_evaluator`` in a base config is resolved there:
    a child config that sets ``val_evaluator`` (say to the setting
    ``tools/tune_postprocess.py`` found) leaves ``test_evaluator`` at the
    base's. ``tools/test.py`` would then score another post-processing than
    the one ``tools/infer.py`` (which reads ``val_evaluator``) writes.

    Args:
        cfg (Config): A config.

    Returns:
        str, optional: The warning, naming both settings.
    """
    val = evaluator_postprocess(cfg, 'val_evaluator')
    test = evaluator_postprocess(cfg, 'test_evaluator')
    if val == test:
        return None
    return (f'val_evaluator post-processes with {val} but test_evaluator '
            f'with {test}: tools/test.py scores the latter, tools/infer.py '
            'writes the former. Set test_evaluator = val_evaluator after '
            'changing val_evaluator in a config that inherits it.')


def _mask_threshold(model: dict) -> Tuple[float, str]:
    """The foreground probability above which a model config's
    ``pred_sem_seg`` is foreground, and why."""
    if model.get('models'):
        # EnsembleSegmentor: the averaged probability > 0.5, whatever its
        # members' heads say.
        return 0.5, 'the ensemble writes probability > 0.5'
    if model.get('module') is not None:  # SegTTAModel and subclasses
        return _mask_threshold(model['module'])
    head = model.get('decode_head')
    if isinstance(head, (list, tuple)):
        head = head[-1]  # a cascade's last head predicts
    head = head if isinstance(head, dict) else {}
    # MMSeg's BaseDecodeHead: out_channels defaults to num_classes, a
    # 1-channel head's threshold to 0.3.
    if (head.get('out_channels') or head.get('num_classes')) == 1:
        threshold = head.get('threshold')
        threshold = 0.3 if threshold is None else threshold
        return threshold, (f'the 1-channel decode head writes probability > '
                           f'{threshold} (its threshold)')
    return 0.5, 'the head writes its argmax, probability > 0.5'


def mask_threshold_mismatch(cfg: Config,
                            key: str = 'test_evaluator') -> Optional[str]:
    """A warning where the model's masks (``pred_sem_seg``) are cut at
    another probability than a ``PneumothoraxMetric`` under ``key`` cuts
    them for its ``dice``, ``iou`` and ``kaggle_dice``, else None.

    ``pred_sem_seg`` is what ``tools/test.py --out`` and MMSeg's
    visualizer write: a 2-channel head's argmax (probability > 0.5), a
    1-channel head's probability > its ``threshold`` (MMSeg's default
    0.3), an ``EnsembleSegmentor``'s probability > 0.5. The metric cuts
    ``seg_logits`` at its own ``threshold`` (0.5); its ``*_pp`` numbers
    score its post-processor's masks, which no model writes.

    Args:
        cfg (Config): A config, its test-time wrappers (``tta_model``,
            ``EnsembleSegmentor``) applied where they are used.
        key (str): ``'val_evaluator'`` or ``'test_evaluator'``. Defaults to
            ``'test_evaluator'``.

    Returns:
        str, optional: The warning, naming both thresholds.
    """
    written, why = _mask_threshold(cfg.get('model') or {})
    for evaluator in config_entries(cfg, key):
        if config_type_name(evaluator, '') != 'PneumothoraxMetric':
            continue
        threshold = evaluator.get('threshold', 0.5)
        if threshold != written:
            return (f'{why}, {key}\'s PneumothoraxMetric scores probability '
                    f'> {threshold}: the masks the model writes are not '
                    'those its dice, iou and kaggle_dice score; give the '
                    f'metric threshold={written}')
    return None


def draw_overlay(img: np.ndarray,
                 mask: np.ndarray,
                 color: Tuple[int, int, int] = (0, 0, 255),
                 alpha: float = 0.35) -> np.ndarray:
    """The image with the mask filled translucent and outlined.

    Args:
        img (np.ndarray): H x W or H x W x 3 ``uint8`` image (BGR).
        mask (np.ndarray): H x W mask; non-zero is pneumothorax.
        color (tuple[int, int, int]): BGR colour. Defaults to red.
        alpha (float): Fill opacity. Defaults to 0.35.

    Returns:
        np.ndarray: H x W x 3 ``uint8`` BGR picture.
    """
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    out = img.astype(np.uint8).copy()
    fg = np.asarray(mask) != 0
    if fg.any():
        blended = (out[fg] * (1 - alpha) +
                   np.array(color, np.float32) * alpha)
        out[fg] = blended.round().astype(np.uint8)
        contours, _ = cv2.findContours(
            fg.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, color, 1)
    return out


def _submission_rle(image_id: str, value: Union[str, np.ndarray]) -> str:
    """One row's RLE: a string checked and stripped, or a binary mask
    encoded."""
    if isinstance(value, str):
        try:
            rle_validate(value)
        except ValueError as err:
            raise ValueError(f'ImageId {image_id!r}: {err}') from None
        return value.strip()
    mask = np.asarray(value)
    if mask.ndim != 2:
        raise ValueError(f'ImageId {image_id!r}: the mask must be 2-D '
                         f'(H, W), got shape {mask.shape}')
    if mask.dtype != np.bool_:
        # A probability map would otherwise be encoded as "any non-zero
        # pixel": a whole-image mask.
        foreground = mask[mask != 0]
        allowed = (1, 255) if np.issubdtype(mask.dtype, np.integer) else (1,)
        if foreground.size and (foreground.min() != foreground.max()
                                or foreground[0] not in allowed):
            raise ValueError(
                f'ImageId {image_id!r}: the mask must be binary (bool, 0 and '
                f'1, or integers 0 and 255), got other {mask.dtype} values: '
                f'threshold or post-process probabilities first')
    return rle_encode(mask)


def write_submission(path: str,
                     entries: Union[Mapping[str, Union[str, np.ndarray]],
                                    Iterable[Tuple[str, Union[str,
                                                              np.ndarray]]]]
                     ) -> int:
    """Write a Kaggle submission ``ImageId,EncodedPixels``.

    Written whole or not at all: a bad entry leaves no file, nor a half
    one (:func:`~mmseg_ptx.utils.write_atomically`).

    Args:
        path (str): Output CSV path.
        entries: ImageId to a binary mask (bool, 0 and 1, or integers 0
            and 255; encoded with the competition's column-major RLE, ``-1``
            when empty) or an already encoded RLE string (checked, written
            without surrounding blanks); a mapping or (ImageId, value)
            pairs.

    Returns:
        int: Number of rows written.

    Raises:
        ValueError: A repeated ImageId, a malformed RLE string or a mask
            that is not binary (probabilities, say); the message names the
            ImageId.
    """
    items = entries.items() if isinstance(entries, Mapping) else entries
    seen: Dict[str, bool] = {}
    text = io.StringIO()
    writer = csv.writer(text, lineterminator='\n')
    writer.writerow(['ImageId', 'EncodedPixels'])
    for image_id, value in items:
        if image_id in seen:
            raise ValueError(f'Duplicate ImageId {image_id!r} in the '
                             'submission')
        seen[image_id] = True
        writer.writerow([image_id, _submission_rle(image_id, value)])
    write_atomically(path, text.getvalue().encode('utf-8'))
    return len(seen)
