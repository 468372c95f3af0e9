"""Predict pneumothorax masks and a Kaggle submission for radiographs.

    python tools/infer.py CONFIG CHECKPOINT INPUT --out DIR [--tta]
        [--extra-model CONFIG2 CHECKPOINT2] [--save-prob]
        [--dtype {float32,bfloat16}] [--fuse-conv-bn] [--workers N]

INPUT is a DICOM/PNG/JPEG file or a folder searched recursively. Writes
DIR/masks/<ImageId>.png (0/255, original resolution), DIR/overlays/,
DIR/probs/<ImageId>.npy (with --save-prob), DIR/submission.csv and, when an
image cannot be read or predicted, DIR/errors.txt; the exit status is then
1. A DIR holding an earlier run's outputs needs --overwrite.
"""
import argparse
import collections
import csv
import json
import os
import os.path as osp
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Deque, Dict, List, Optional, Set, Tuple

import cv2
import numpy as np
from tqdm import tqdm

import mmseg_ptx  # noqa: F401  (stack fixes + registration)
from mmseg_ptx.apis import (IMAGE_SUFFIXES, UsageError, add_cfg_options_arg,
                            build_postprocessor, check_device,
                            default_device, draw_overlay,
                            find_images, image_reader, load_models,
                            merge_cfg_options, pipeline_mismatch,
                            postprocess_mismatch, predict_probabilities,
                            read_config, reports_usage_errors,
                            require_folder, write_submission)
from mmseg_ptx.datasets import read_image_ids
from mmseg_ptx.datasets.files import list_files, remove_paths
from mmseg_ptx.datasets.rle import EMPTY_RLE, rle_encode


def parse_postprocess_cfg(values):
    """``['{"min_area": 500}']`` or ``['min_area=500', ...]`` -> dict.

    Raises:
        ValueError: Neither a JSON object nor key=value pairs.
    """
    if values is None:
        return None
    if len(values) == 1 and values[0].lstrip().startswith('{'):
        try:
            return json.loads(values[0])
        except json.JSONDecodeError as err:
            raise ValueError(f'{values[0]!r} is not a JSON object '
                             f'({err}); or give key=value pairs') from None
    out = {}
    for item in values:
        key, sep, value = item.partition('=')
        if not sep:
            raise ValueError(f'expects key=value, got {item!r}')
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


#: What a run writes in --out; an earlier run's are replaced only with
#: --overwrite (its masks would otherwise mix with this run's).
OUTPUTS = ('submission.csv', 'errors.txt', 'masks', 'overlays', 'probs')


def earlier_outputs(out: str, overwrite: bool) -> List[str]:
    """An earlier run's outputs in ``out``; an error without
    ``overwrite``."""
    existing = [n for n in OUTPUTS if osp.lexists(osp.join(out, n))]
    if existing and not overwrite:
        raise UsageError(
            f'{out} already holds what this tool writes '
            f'({", ".join(existing)}), an earlier run\'s outputs or '
            'another\'s files; pass --overwrite to replace an earlier '
            'run\'s outputs or choose another --out')
    return existing


def image_id_of(path: str) -> str:
    """The submission's ImageId of an image file: its name without an
    image suffix (:data:`~mmseg_ptx.apis.IMAGE_SUFFIXES`, any case).

    Kaggle's DICOMs are named by their SOPInstanceUID; one given as a file
    without a suffix keeps its whole name, whose last dotted part is the
    UID's, not an extension.
    """
    name = osp.basename(path)
    stem, suffix = osp.splitext(name)
    return stem if suffix.lower() in IMAGE_SUFFIXES else name


#: The kind of file a run writes, per image, in each of its folders.
OUTPUT_SUFFIXES = {'masks': '.png', 'overlays': '.png', 'probs': '.npy'}


def earlier_image_ids(out: str) -> Set[str]:
    """The ImageIds an earlier run in ``out`` wrote outputs for: the rows
    of its submission.csv, and the names it wrote both a mask and an
    overlay for (a run stopped before its submission)."""
    def stems(folder: str) -> Set[str]:
        path, suffix = osp.join(out, folder), OUTPUT_SUFFIXES[folder]
        return {name[:-len(suffix)] for name in os.listdir(path)
                if name.endswith(suffix)} if osp.isdir(path) else set()

    ids = stems('masks') & stems('overlays')
    submission = osp.join(out, 'submission.csv')
    if osp.isfile(submission):
        with open(submission, newline='') as f:
            ids.update(row[0] for row in list(csv.reader(f))[1:] if row)
    return ids


def remove_earlier_outputs(out: str, earlier: List[str]) -> None:
    """Remove an earlier run's outputs (:func:`earlier_outputs`): its files
    in ``out`` and, in its folders, the file of each image it wrote them
    for (:func:`earlier_image_ids`). Anything else in those folders (a
    user's notes or masks, say) stays, with its folder, and is named on
    stderr."""
    ids = earlier_image_ids(out)
    kept = []
    for name in earlier:
        folder = osp.join(out, name)
        if (name not in OUTPUT_SUFFIXES or osp.islink(folder)
                or not osp.isdir(folder)):
            remove_paths(out, [name])
            continue
        suffix = OUTPUT_SUFFIXES[name]
        for entry in sorted(os.listdir(folder)):
            path = osp.join(folder, entry)
            if (entry.endswith(suffix) and entry[:-len(suffix)] in ids
                    and not osp.isdir(path)):
                os.remove(path)
            else:
                kept.append(osp.join(name, entry))
        if not os.listdir(folder):
            os.rmdir(folder)
    if kept:
        more = ', ...' if len(kept) > 5 else ''
        print(f'Kept {len(kept)} file(s) of {out} that this tool did not '
              f'write: {", ".join(kept[:5])}{more}', file=sys.stderr)


def refuse_clashes(out: str, image_ids: List[str], save_prob: bool) -> None:
    """Refuse a run that would write over files in ``out`` that are not an
    earlier run's outputs (:func:`earlier_image_ids`), e.g. ground-truth
    masks in a ``masks/`` beside the images: ``--overwrite`` replaces an
    earlier run's outputs only."""
    earlier = earlier_image_ids(out)
    outputs = [
        osp.join(folder, image_id + suffix)
        for image_id in image_ids if image_id not in earlier
        for folder, suffix in OUTPUT_SUFFIXES.items()
        if folder != 'probs' or save_prob
    ]
    clashes = [rel for rel in outputs if osp.lexists(osp.join(out, rel))]
    if clashes:
        more = ', ...' if len(clashes) > 5 else ''
        raise UsageError(
            f'{len(clashes)} file(s) in {out} have the names of this '
            f'run\'s outputs but are not an earlier run\'s: '
            f'{", ".join(clashes[:5])}{more}; move them away or choose '
            'another --out (a run stopped between writing an image\'s mask '
            'and its overlay leaves such a mask: remove it)')


def is_output(path: str) -> bool:
    """Whether an image file is a mask or overlay this tool wrote: a PNG in
    ``masks/`` or ``overlays/`` of a folder that has both (an ``--out``,
    the current one or an earlier or interrupted run's). Such PNGs are
    named like the images they were made from."""
    folder = osp.dirname(osp.realpath(path))
    return (osp.basename(folder) in ('masks', 'overlays')
            and path.lower().endswith('.png')
            and _is_out_folder(osp.dirname(folder)))


def _is_out_folder(folder: str) -> bool:
    """Whether ``folder`` looks like an ``--out`` of this tool: it has
    both ``masks/`` and ``overlays/``."""
    return all(osp.isdir(osp.join(folder, d)) for d in ('masks', 'overlays'))


def is_run_file(path: str) -> bool:
    """Whether a file that is no image is one this tool wrote:
    ``submission.csv``, ``errors.txt`` or ``probs/*.npy`` of a folder with
    ``masks/`` and ``overlays/`` (an ``--out``, as for :func:`is_output`).
    """
    folder = osp.dirname(osp.realpath(path))
    name = osp.basename(path)
    if osp.basename(folder) == 'probs' and name.endswith('.npy'):
        folder = osp.dirname(folder)
    elif name not in ('submission.csv', 'errors.txt'):
        return False
    return _is_out_folder(folder)


def image_ids(paths: List[str], listed: Optional[Dict[str, str]],
              errors: List[Tuple[str, str]]) -> Dict[str, str]:
    """The ImageId of each file: :func:`image_id_of`, or, with a CSV of
    ``--image-ids``, the one it lists for the file name. A file the CSV
    does not list gets none and is added to ``errors``.

    Args:
        paths (list[str]): The images.
        listed (dict, optional): ``--image-ids``' file name -> ImageId.
        errors (list): Gets ``(path, reason)`` of each file left out.

    Returns:
        dict[str, str]: path -> ImageId of the files that have one.
    """
    if listed is None:
        return {path: image_id_of(path) for path in paths}
    ids = {}
    for path in paths:
        image_id = listed.get(osp.basename(path))
        if image_id is None:
            errors.append((path, 'not listed in --image-ids: no ImageId'))
        else:
            ids[path] = image_id
    return ids


def drop_duplicate_ids(ids: Dict[str, str],
                       errors: List[Tuple[str, str]]) -> List[str]:
    """The files of ``ids`` (path -> ImageId) but those whose ImageId
    another file has too.

    Which of them the submission's row should come from is unknown, so
    none is predicted; each is added to ``errors``.
    """
    by_id: Dict[str, List[str]] = {}
    for path, image_id in ids.items():
        by_id.setdefault(image_id, []).append(path)
    kept = []
    for path, image_id in ids.items():
        same = by_id[image_id]
        if len(same) == 1:
            kept.append(path)
            continue
        others = ', '.join(p for p in same if p != path)
        errors.append((path, f'ImageId {image_id!r} is also the ImageId of '
                       f'{others}: none of them is predicted'))
    return kept


def write_outputs(image_id: str, img: np.ndarray, prob: np.ndarray,
                  postprocess, dirs: Dict[str, str], save_prob: bool) -> str:
    """Post-process one probability map and write the image's files.

    Returns:
        str: The mask's competition RLE.
    """
    mask = postprocess(prob)
    outputs = [(osp.join(dirs['masks'], f'{image_id}.png'), mask * 255),
               (osp.join(dirs['overlays'], f'{image_id}.png'),
                draw_overlay(img, mask))]
    for path, picture in outputs:
        # OpenCV reports a failed write (a full disk, say) by its result.
        if not cv2.imwrite(path, picture):
            raise OSError(f'Cannot write {path}')
    if save_prob:
        np.save(osp.join(dirs['probs'], f'{image_id}.npy'),
                prob.astype(np.float16))
    return rle_encode(mask)


#: Prediction failures before any success that end the run.
FAIL_FAST = 8
#: (H, W) of the SIIM radiographs, the grid Kaggle's RLE is scored on.
KAGGLE_SHAPE = (1024, 1024)


def predict_each(models, ids: List[str], images: list, tta: bool
                 ) -> Tuple[list, List[Optional[Exception]]]:
    """Probabilities of a batch; where the batch fails, of each image on
    its own, so that an image the pipeline or model cannot take (a 1 x 600
    strip resizes to height 0) costs only itself.

    Returns:
        tuple: One probability map (or None) and one exception (or None)
        per image.
    """
    try:
        return (predict_probabilities(models, images, tta=tta, names=ids),
                [None] * len(ids))
    except Exception as err:  # noqa: BLE001  (any failure of a batch)
        if len(ids) == 1:
            return [None], [err]
    each = [predict_each(models, [i], [img], tta)
            for i, img in zip(ids, images)]
    return ([p for probs, _ in each for p in probs],
            [e for _, errs in each for e in errs])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Pneumothorax masks and submission for radiographs')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('input', help='image file or folder (recursive)')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--batch-size', type=int, default=8,
                        help='images per forward pass (default 8)')
    parser.add_argument(
        '--workers', type=int, default=min(8, os.cpu_count() or 1),
        help='threads that read images and write outputs while the model '
        'predicts (default: the CPU count, at most 8)')
    parser.add_argument(
        '--device', default=None, help='cuda:0, cpu, ... (default: GPU '
        'when available)')
    parser.add_argument(
        '--dtype', choices=['float32', 'bfloat16'], default='float32',
        help='dtype of the network weights: bfloat16 skips autocast\'s '
        'per-layer casts on a GPU (probabilities stay float32; slow on '
        'CPUs without native bf16)')
    parser.add_argument(
        '--fuse-conv-bn', action='store_true',
        help='fold BatchNorm into the convolutions (the same probabilities '
        'up to rounding, one kernel fewer per folded layer)')
    parser.add_argument(
        '--save-prob', action='store_true',
        help='also save float16 probability maps as probs/<ImageId>.npy')
    parser.add_argument(
        '--no-postprocess', action='store_true',
        help='plain 0.5 threshold instead of the configured post-processing')
    parser.add_argument(
        '--postprocess-cfg', nargs='+', metavar='KEY=VALUE',
        help='override TripletThresholdPostProcessor arguments: a JSON '
        'object or key=value pairs, e.g. min_area=500')
    parser.add_argument(
        '--tta', action='store_true',
        help='average with the horizontally flipped image')
    parser.add_argument(
        '--extra-model', nargs=2, action='append', default=[],
        metavar=('CONFIG', 'CHECKPOINT'),
        help='another model whose probabilities are averaged in '
        '(repeatable)')
    parser.add_argument(
        '--overwrite', action='store_true',
        help='replace the outputs of an earlier run in --out')
    parser.add_argument(
        '--image-ids', metavar='CSV',
        help='a CSV with the columns ImageId and new_filename (as the PNG '
        're-release\'s stage_1_train_images.csv) giving the ImageId of '
        'each file, for images not named by their ImageId; files it does '
        'not list are errors')
    # As tools/tune_postprocess.py's (tuned.json records them): CONFIG's.
    add_cfg_options_arg(parser)
    args = parser.parse_args()
    if args.batch_size < 1 or args.workers < 1:
        parser.error('--batch-size and --workers must be positive')
    try:
        args.postprocess_cfg = parse_postprocess_cfg(args.postprocess_cfg)
    except ValueError as err:
        parser.error(f'--postprocess-cfg {err}')
    if args.no_postprocess and args.postprocess_cfg:
        parser.error('--no-postprocess and --postprocess-cfg exclude each '
                     'other')
    return args


@reports_usage_errors
def main() -> int:
    args = parse_args()
    try:
        paths = find_images(args.input)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    if osp.isdir(args.input):
        others = sum(
            not name.lower().endswith(IMAGE_SUFFIXES)
            and not is_run_file(osp.join(args.input, name))
            for name in list_files(args.input, ''))
        if others:
            print(f'Leaving out {others} file(s) under INPUT that do not '
                  f'end in {", ".join(IMAGE_SUFFIXES)} (a DICOM without '
                  'the suffix is read when named on its own)',
                  file=sys.stderr)
    outputs = {p for p in paths if is_output(p)}
    if outputs:
        print(f'Leaving out {len(outputs)} mask/overlay PNG(s) of this '
              'tool\'s runs under INPUT', file=sys.stderr)
        paths = [p for p in paths if p not in outputs]
    errors: List[Tuple[str, str]] = []
    listed = None
    if args.image_ids is not None:
        try:
            listed = read_image_ids(args.image_ids)
        except (OSError, ValueError) as err:
            raise UsageError(f'--image-ids: {err}') from None
    ids = image_ids(paths, listed, errors)
    paths = drop_duplicate_ids(ids, errors)
    if not paths and not errors:
        raise UsageError(f'no image ({", ".join(IMAGE_SUFFIXES)}) under '
                         f'{args.input}')
    require_folder(args.out, '--out')
    earlier = earlier_outputs(args.out, args.overwrite)
    refuse_clashes(args.out, [ids[p] for p in paths], args.save_prob)
    check_device(args.device)
    device = args.device or default_device()
    # Before the models load (minutes for Swin-B): a bad --postprocess-cfg
    # fails at once.
    cfg = read_config(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    specs = [(cfg, args.checkpoint)] + [
        tuple(pair) for pair in args.extra_model
    ]
    try:
        postprocess = build_postprocessor(cfg, args.postprocess_cfg,
                                          enabled=not args.no_postprocess)
    except (TypeError, ValueError) as err:
        given = (f' with --postprocess-cfg {args.postprocess_cfg}'
                 if args.postprocess_cfg else '')
        raise UsageError(f'the post-processing of {args.config}{given}: '
                         f'{err}') from None
    mismatch = postprocess_mismatch(cfg)
    if mismatch and not args.no_postprocess:
        print(f'Warning: {mismatch}', file=sys.stderr)
    mismatch = pipeline_mismatch(cfg)
    if mismatch:
        print(f'Warning: {mismatch}', file=sys.stderr)
    models = load_models(specs, device=device, dtype=args.dtype,
                         fuse_conv_bn=args.fuse_conv_bn)
    print(f'{len(paths)} images, {len(models)} model(s) on {device} in '
          f'{args.dtype}{", BatchNorm folded" if args.fuse_conv_bn else ""}, '
          f'tta={args.tta}, {postprocess}')
    # Only once the models load: a mistyped checkpoint keeps them.
    remove_earlier_outputs(args.out, earlier)
    if not paths:
        # Every file failed before prediction: errors.txt still lists them,
        # where a job looks for them.
        os.makedirs(args.out, exist_ok=True)
        return report_errors(errors, args.out)

    dirs = {k: osp.join(args.out, k) for k in ('masks', 'overlays', 'probs')}
    for key, folder in dirs.items():
        if key != 'probs' or args.save_prob:
            os.makedirs(folder, exist_ok=True)
    read = image_reader(models)
    batches = [paths[i:i + args.batch_size]
               for i in range(0, len(paths), args.batch_size)]
    rles: Dict[str, str] = {}
    writes: Deque[Tuple[str, str, Future]] = collections.deque()

    def finish_write() -> None:
        image_id, path, future = writes.popleft()
        try:
            rles[image_id] = future.result()
        except Exception as err:  # noqa: BLE001  (this image's outputs)
            errors.append((path, 'writing its outputs failed: '
                           f'{type(err).__name__}: {err}'))

    predicted = failed_first = 0
    # Images not of the Kaggle size: (path, shape).
    other_sizes: List[Tuple[str, Tuple[int, ...]]] = []
    bar = tqdm(total=len(paths), unit='img', desc='infer')
    # Reading, post-processing and writing (PNG encoding above all) take
    # the host longer than a GPU takes to predict: threads do them while
    # the model predicts (OpenCV, Pillow and numpy release the GIL).
    with ThreadPoolExecutor(args.workers) as pool:
        upcoming = [pool.submit(read, p) for p in batches[0]]
        for index, batch in enumerate(batches):
            reads = upcoming
            if index + 1 < len(batches):
                upcoming = [pool.submit(read, p) for p in batches[index + 1]]
            batch_ids, images, sources = [], [], {}
            for path, future in zip(batch, reads):
                try:
                    img = future.result()
                except (OSError, ValueError) as err:
                    errors.append((path, str(err)))
                    continue
                sources[ids[path]] = path
                batch_ids.append(ids[path])
                images.append(img)
            probs, failures = predict_each(models, batch_ids, images,
                                           args.tta)
            for image_id, img, prob, err in zip(batch_ids, images, probs,
                                                failures):
                if err is not None:
                    errors.append((sources[image_id], 'prediction failed: '
                                   f'{type(err).__name__}: {err}'))
                    failed_first += not predicted
                    if failed_first == FAIL_FAST:
                        # Nothing has worked yet: likely the model or its
                        # config, not the images; stop with the traceback.
                        print(f'The first {FAIL_FAST} images all failed in '
                              'prediction; stopping', file=sys.stderr)
                        raise err
                    continue
                predicted += 1
                if prob.shape != KAGGLE_SHAPE:
                    other_sizes.append((sources[image_id], prob.shape))
                writes.append((image_id, sources[image_id], pool.submit(
                    write_outputs, image_id, img, prob, postprocess, dirs,
                    args.save_prob)))
            # Bounded: each pending write holds its image and map.
            while len(writes) > 2 * args.workers + args.batch_size:
                finish_write()
            bar.update(len(batch))
        while writes:
            finish_write()
    bar.close()

    csv_path = osp.join(args.out, 'submission.csv')
    rows = write_submission(csv_path, rles)
    num_pos = sum(rle != EMPTY_RLE for rle in rles.values())
    print(f'{rows} images predicted ({num_pos} with pneumothorax, '
          f'{rows - num_pos} empty) -> {csv_path}')
    if other_sizes:
        path, (height, width) = other_sizes[0]
        print(f'warning: {len(other_sizes)} of the {predicted} images are '
              f'not {KAGGLE_SHAPE[0]} x {KAGGLE_SHAPE[1]} (first: {path}, '
              f'{height} x {width}): their masks and RLE rows are at their '
              'own size, and min_area counts their pixels. Kaggle scores '
              'RLE on the 1024 x 1024 DICOMs: predict those, not a '
              'resized copy.', file=sys.stderr)
    if errors:
        # Not '-1' rows: an image nobody looked at is not a negative one.
        print(f'{csv_path} has no row for the {len(errors)} file(s) below; '
              'Kaggle needs one for every test image', file=sys.stderr)
    return report_errors(errors, args.out)


#: Failed files printed on stderr where errors.txt lists them all.
PRINTED_ERRORS = 10


def report_errors(errors: List[Tuple[str, str]], out: str) -> int:
    """List the failed files in ``out``/errors.txt and print the first
    :data:`PRINTED_ERRORS`; the exit status."""
    if not errors:
        return 0
    lines = [(path, " ".join(reason.split())) for path, reason in errors]
    shown = lines[:PRINTED_ERRORS]
    for path, reason in shown:
        print(f'ERROR {path}: {reason}', file=sys.stderr)
    errors_path = osp.join(out, 'errors.txt')
    with open(errors_path, 'w') as f:
        for path, reason in lines:
            f.write(f'{path}\t{reason}\n')
    more = (f' (the first {len(shown)} above)'
            if len(shown) < len(lines) else '')
    print(f'{len(errors)} file(s) failed, listed in {errors_path}{more}',
          file=sys.stderr)
    return 1


if __name__ == '__main__':
    sys.exit(main())
