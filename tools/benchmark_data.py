"""Benchmark the data loading path and the RLE decoder.

(a) DICOM decode + RLE mask + resize to 512 + horizontal flip, through the
registered transforms, in images/s per process (and in total for several
worker processes); with ``--config``, the config's own training pipeline
instead, and the time each of its transforms takes; (b) RLE decoding
of 1024x1024 masks against the straightforward pixel-by-pixel Python loop
and against the competition helper's run-by-run loop (numpy slices per
run); (c) the host side of ``tools/infer.py`` per image: read the DICOM,
post-process a probability map, write the mask and overlay PNGs and encode
the RLE, with as many threads as ``infer.py --workers`` (what bounds its
images/s where the GPU predicts faster). Prints tables; the targets are
>= 100 images/s per process and >= 50x the loop decoder.

Example::

    python tools/benchmark_data.py --num 64 --workers 1 2 --threads 1 2
    python tools/benchmark_data.py --config configs/upernet_swin-b_ptx-512.py
"""
import argparse
import csv
import glob
import multiprocessing as mp
import os
import os.path as osp
import tempfile
import time
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from mmcv.transforms import Compose
from mmseg_ptx.datasets import rle_decode_union, rle_encode
from mmseg_ptx.datasets.synthetic import (synthesize_radiograph,
                                          write_demo_dataset)

PIPELINE = [
    dict(type='LoadDicomImageFromFile'),
    dict(type='LoadRLEAnnotations'),
    dict(type='Resize', scale=(512, 512), keep_ratio=False),
    dict(type='RandomFlip', prob=1.0, direction='horizontal'),
]


def loop_rle_decode(rle: str, height: int, width: int) -> np.ndarray:
    """The competition's ``rle2mask``: one Python iteration per run."""
    mask = np.zeros(width * height, dtype=np.uint8)
    if rle.strip() == '-1':
        return mask.reshape(width, height).T
    array = [int(x) for x in rle.split()]
    position = 0
    for start, length in zip(array[0::2], array[1::2]):
        position += start
        mask[position:position + length] = 1
        position += length
    return mask.reshape(width, height).T


def pixel_loop_rle_decode(rle: str, height: int,
                          width: int) -> np.ndarray:
    """The straightforward decoder: one Python iteration per pixel."""
    flat = [0] * (width * height)
    tokens = rle.split()
    if tokens != ['-1']:
        position = 0
        for start, length in zip(tokens[0::2], tokens[1::2]):
            position += int(start)
            for pixel in range(position, position + int(length)):
                flat[pixel] = 1
            position += int(length)
    return np.array(flat, dtype=np.uint8).reshape(width, height).T


def read_samples(data_root: str) -> list[dict]:
    """(img_path, rle rows) per image of a raw-layout data set."""
    paths = {osp.splitext(osp.basename(p))[0]: p for p in glob.glob(
        osp.join(data_root, 'dicom-images-train', '*', '*', '*.dcm'))}
    rles = defaultdict(list)
    with open(osp.join(data_root, 'train-rle.csv'), newline='') as f:
        reader = csv.reader(f)
        next(reader)
        for image_id, rle in reader:
            rles[image_id.strip()].append(rle.strip())
    return [dict(img_path=paths[i], image_id=i, rle=rles[i])
            for i in sorted(paths) if i in rles]


_pipeline = None


def build_transforms(pipeline: list[dict]) -> list:
    import mmseg_ptx  # noqa: F401  (registers the transforms)
    from mmengine.registry import init_default_scope
    from mmseg.registry import TRANSFORMS

    # mmcv's Compose would look names up in mmcv's registry; MMSeg's
    # registry also finds the plugin's and MMSeg's own transforms.
    init_default_scope('mmseg')
    return [TRANSFORMS.build(t) for t in pipeline]


def _init_worker(pipeline: list[dict]) -> None:
    global _pipeline
    _pipeline = Compose(build_transforms(pipeline))


def _run(samples: list[dict]) -> int:
    for sample in samples:
        if _pipeline(dict(sample)) is None:
            raise RuntimeError(f'the pipeline dropped {sample["img_path"]}')
    return len(samples)


def bench_pipeline(samples: list[dict], workers: int, repeats: int,
                   pipeline: list[dict]) -> float:
    """Images per second over ``repeats`` passes with ``workers``
    processes."""
    work = samples * repeats
    if workers == 1:
        _init_worker(pipeline)
        _run(samples[:2])  # warm-up: imports, first-call overheads
        start = time.perf_counter()
        _run(work)
        return len(work) / (time.perf_counter() - start)
    chunks = [work[i::workers * 4] for i in range(workers * 4)]
    with mp.get_context('spawn').Pool(workers, _init_worker,
                                      (pipeline, )) as pool:
        pool.map(_run, [samples[:2]] * workers)  # warm-up
        start = time.perf_counter()
        done = sum(pool.map(_run, chunks))
        return done / (time.perf_counter() - start)


def time_transforms(samples: list[dict], repeats: int,
                    pipeline: list[dict]) -> list[tuple[str, float]]:
    """Milliseconds per image that each transform takes, in one process."""
    transforms = build_transforms(pipeline)
    totals = [0.0] * len(transforms)
    for sample in samples * repeats:
        results = dict(sample)
        for i, transform in enumerate(transforms):
            start = time.perf_counter()
            results = transform(results)
            totals[i] += time.perf_counter() - start
    count = len(samples) * repeats
    return [(type(t).__name__, 1e3 * total / count)
            for t, total in zip(transforms, totals)]


def config_pipeline(path: str) -> list[dict]:
    """The training pipeline of a config (its train_dataloader's)."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    pipeline = cfg.get('train_dataloader', {}).get('dataset', {}).get(
        'pipeline')
    if not pipeline:
        raise SystemExit(f'{path}: no train_dataloader.dataset.pipeline')
    return [dict(t) for t in pipeline]


def bench_rle(num: int, size: int) -> tuple[float, float, float]:
    """Masks/s of the vectorised, the run-loop and the pixel-loop decoders
    on synthetic pneumothorax masks (one RLE row per region, like
    train-rle.csv)."""
    rows = []
    for i in tqdm(range(num), desc='RLE masks', unit='mask'):
        _, regions = synthesize_radiograph(
            np.random.default_rng([7, i]), size, positive=True)
        rows.append([rle_encode(r) for r in regions])

    def union(decoder):
        def decode(rles):
            mask = np.zeros((size, size), np.uint8)
            for rle in rles:
                mask |= decoder(rle, size, size)
            return mask
        return decode

    decoders = [(lambda r: rle_decode_union(r, size, size), 5),
                (union(loop_rle_decode), 5),
                (union(pixel_loop_rle_decode), 1)]
    timings = []
    for decode, repeats in decoders:
        start = time.perf_counter()
        for rles in rows * repeats:
            decode(rles)
        timings.append(repeats * len(rows) / (time.perf_counter() - start))
    for rles in rows[:4]:  # the decoders must agree
        expected = rle_decode_union(rles, size, size)
        for decode, _ in decoders[1:]:
            assert np.array_equal(decode(rles), expected)
    return tuple(timings)


def bench_outputs(samples: list[dict], threads: int,
                  repeats: int) -> float:
    """Images/s of tools/infer.py's work per image besides the model's, with
    ``threads`` threads as its ``--workers``: read the DICOM, post-process
    a probability map (a disk of 0.9; the configs' top and bottom
    thresholds, min_area 0 so that small images keep it: the same work),
    write the mask and overlay PNGs, encode the RLE."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2
    from infer import write_outputs  # tools/infer.py

    import mmseg_ptx  # noqa: F401  (registers the transforms)
    from mmseg.registry import MODELS, TRANSFORMS
    loader = TRANSFORMS.build(
        dict(type='LoadDicomImageFromFile', color_type='grayscale'))
    postprocess = MODELS.build(
        dict(type='TripletThresholdPostProcessor', min_area=0))

    def one(job):
        index, sample = job
        img = loader(dict(img_path=sample['img_path']))['img']
        prob = np.full(img.shape[:2], 0.05, np.float32)
        cv2.circle(prob, (img.shape[1] // 3, img.shape[0] // 2),
                   img.shape[0] // 12, 0.9, -1)
        return write_outputs(str(index), img, prob, postprocess, dirs,
                             False)

    jobs = list(enumerate(samples * repeats))
    with tempfile.TemporaryDirectory() as out:
        dirs = {k: osp.join(out, k) for k in ('masks', 'overlays')}
        for folder in dirs.values():
            os.makedirs(folder)
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            rles = list(pool.map(one, jobs))
        rate = len(jobs) / (time.perf_counter() - start)
    assert all(rle != '-1' for rle in rles)  # every mask was drawn
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data', help='raw-layout data root (default: a '
                        'temporary synthetic 1024 px set)')
    parser.add_argument('--num', type=int, default=32,
                        help='images to generate when --data is not given, '
                        'and masks for the RLE benchmark')
    parser.add_argument('--workers', type=int, nargs='+', default=[1],
                        help='worker process counts to time')
    parser.add_argument('--threads', type=int, nargs='+', default=[1],
                        help='thread counts for (c), as infer.py --workers')
    parser.add_argument('--repeats', type=int, default=3,
                        help='passes over the images per timing')
    parser.add_argument('--config', help='time this config\'s training '
                        'pipeline (and each of its transforms) instead of '
                        'DICOM + RLE + resize + flip')
    args = parser.parse_args()
    if min(args.num, args.repeats, *args.workers, *args.threads) < 1:
        # 1 worker means the main process; there is no 0.
        parser.error('--num, --repeats, --workers and --threads must be '
                     '>= 1')
    if args.config is not None and not osp.isfile(args.config):
        parser.error(f'--config {args.config} is not a file')
    pipeline = PIPELINE if args.config is None else config_pipeline(
        args.config)

    with tempfile.TemporaryDirectory() as tmp:
        data_root = args.data
        if data_root is None:
            data_root = tmp
            write_demo_dataset(tmp, args.num, seed=0, size=1024,
                               positive_fraction=0.5, progress=True)
        samples = read_samples(data_root)
        if not samples:
            raise SystemExit(f'No DICOMs with train-rle.csv rows under '
                             f'{data_root}')
        results = [(w, bench_pipeline(samples, w, args.repeats, pipeline))
                   for w in args.workers]
        per_transform = (None if args.config is None else time_transforms(
            samples, args.repeats, pipeline))
        outputs = [(t, bench_outputs(samples, t, args.repeats))
                   for t in args.threads]
    vec, loop, pixel_loop = bench_rle(args.num, 1024)

    name = ('DICOM + RLE + Resize 512 + flip' if args.config is None else
            f'the training pipeline of {args.config}')
    print(f'\n(a) {name}, {len(samples)} images x {args.repeats} passes '
          '(target >= 100 images/s per process)')
    print(f'{"workers":>8} {"images/s":>10} {"per process":>12}')
    for workers, rate in results:
        print(f'{workers:>8d} {rate:>10.1f} {rate / workers:>12.1f}')
    if per_transform:
        width = 2 + max(len(name) for name, _ in per_transform)
        print(f'\n{"transform":>{width}} {"ms/image":>9}')
        for transform, ms in per_transform:
            print(f'{transform:>{width}} {ms:>9.2f}')
        total = sum(ms for _, ms in per_transform)
        print(f'{"all":>{width}} {total:>9.2f}')
    print(f'\n(b) RLE decode of 1024x1024 masks, {args.num} masks '
          '(target >= 50x the loop decoder)')
    print(f'{"decoder":>22} {"masks/s":>10} {"vectorised is":>14}')
    print(f'{"vectorised":>22} {vec:>10.1f} {"":>14}')
    print(f'{"run loop (competition)":>22} {loop:>10.1f} '
          f'{vec / loop:>13.1f}x')
    print(f'{"pixel loop":>22} {pixel_loop:>10.1f} '
          f'{vec / pixel_loop:>13.1f}x')
    print(f'\n(c) tools/infer.py besides the model: read, post-process, '
          f'write mask + overlay PNGs, RLE; {len(samples)} images x '
          f'{args.repeats} passes')
    print(f'{"threads":>8} {"images/s":>10}')
    for threads, rate in outputs:
        print(f'{threads:>8d} {rate:>10.1f}')


if __name__ == '__main__':
    main()
