"""Benchmark PneumothoraxMetric against scikit-learn's average precision.

Both sides see the same synthetic validation set (about 1% pneumothorax
pixels, two thirds of the images positive, spatially smooth scores with
missed lesions and false alarms). Each side runs in its own fresh process
so peak memory is its own:

- PneumothoraxMetric streams the images through ``process()`` one at a time
  and ``evaluate()`` at the end (the whole metric: Dice, per-image Dice, PR
  curve).
- scikit-learn needs every pixel's float32 probability and label in memory
  at once (the reference pipeline's way); only the
  ``average_precision_score`` call is timed.

Example::

    python tools/benchmark_metric.py                   # 100 images, ~1 min
    python tools/benchmark_metric.py --num-images 725 --size 512
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import queue as queue_module
import resource
import time
import tracemalloc

import numpy as np

MB = 1024.0**2


def make_image(index: int, size: int, seed: int):
    """One synthetic image: (gt (H, W) int64, 2-channel logits (2, H, W))."""
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed * 100_003 + index)
    yy, xx = torch.meshgrid(
        torch.arange(size), torch.arange(size), indexing='ij')
    gt = torch.zeros(size, size, dtype=torch.long)
    if torch.rand(1, generator=g) < 2 / 3:
        # A disc of ~1.5% of the image: ~1% foreground over the set.
        radius = size * (0.015 / np.pi)**0.5
        cy, cx = (torch.rand(2, generator=g) * 0.6 + 0.2) * size
        gt[(yy - cy)**2 + (xx - cx)**2 < radius**2] = 1

    def smooth_noise(cells: int):
        low = torch.randn(1, 1, cells, cells, generator=g)
        return F.interpolate(
            low, size=(size, size), mode='bilinear', align_corners=False)[0,
                                                                          0]

    pixel = torch.randn(size, size, generator=g)
    # Lesion pixels: mostly detected, a smooth part missed.
    lesion = 2.0 + 3.0 * smooth_noise(8) + pixel
    background = -7.0 + 2.5 * smooth_noise(16) + pixel
    # Occasional false-alarm patches.
    background = background + 9.0 * (smooth_noise(8) > 1.8)
    logit = torch.where(gt.bool(), lesion, background)
    return gt, torch.stack([torch.zeros_like(logit), logit])


def _rss_mb() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError('VmRSS not found in /proc/self/status')


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_metric(args, queue) -> None:
    import torch
    from tqdm import tqdm

    import mmseg_ptx  # noqa: F401
    from mmseg_ptx.evaluation import PneumothoraxMetric
    torch.set_num_threads(args.threads)
    metric = PneumothoraxMetric()
    base = _rss_mb()
    tracemalloc.start()
    elapsed = 0.0
    retained = 0
    for i in tqdm(range(args.num_images), desc='PneumothoraxMetric'):
        gt, logits = make_image(i, args.size, args.seed)
        sample = dict(
            seg_logits=dict(data=logits), gt_sem_seg=dict(data=gt[None]))
        t0 = time.perf_counter()
        metric.process({}, [sample])
        elapsed += time.perf_counter() - t0
        retained = max(
            retained,
            sum(
                r[k].nbytes for r in metric.results
                for k in ('hist', 'hist_sum') if r[k] is not None))
    t0 = time.perf_counter()
    res = metric.evaluate(args.num_images)
    elapsed += time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    queue.put(
        dict(
            time=elapsed,
            rss=_peak_rss_mb() - base,
            traced=traced_peak / MB,
            retained=retained / MB,
            ap=res['ap'],
            bound=res['ap_error_bound'],
            dice=res['dice'],
            pixels=res['num_pixels'],
            pos=res['num_pos_pixels']))


def run_sklearn(args, queue) -> None:
    import torch
    from sklearn.metrics import average_precision_score
    from tqdm import tqdm
    torch.set_num_threads(args.threads)
    npix = args.size * args.size
    # Preallocated, so no freed temporaries hide sklearn's own peak.
    y_true = np.empty(args.num_images * npix, dtype=np.uint8)
    y_score = np.empty(args.num_images * npix, dtype=np.float32)
    for i in tqdm(range(args.num_images), desc='scikit-learn data'):
        gt, logits = make_image(i, args.size, args.seed)
        y_true[i * npix:(i + 1) * npix] = gt.flatten().numpy()
        y_score[i * npix:(i + 1) * npix] = torch.softmax(
            logits, 0)[1].flatten().numpy()
    held = (y_true.nbytes + y_score.nbytes) / MB
    base = _rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    ap = average_precision_score(y_true, y_score)
    elapsed = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    queue.put(
        dict(
            time=elapsed,
            rss=_peak_rss_mb() - base,
            traced=traced_peak / MB,
            retained=held,
            ap=ap))


def run_isolated(target, args) -> dict:
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(args, queue))
    proc.start()
    # Poll: a side that raises or is killed (sklearn at the reference size
    # needs several GB) never puts a result, and a plain get() would wait
    # for ever.
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(
                    f'{target.__name__} exited with {proc.exitcode} '
                    'without a result (see its error above)') from None
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f'{target.__name__} exited with {proc.exitcode}')
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--num-images',
        type=int,
        default=100,
        help='images in the synthetic set (the reference val set: 725; '
        'sklearn then needs ~4 min and several GB)')
    parser.add_argument(
        '--size', type=int, default=512, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--threads', type=int, default=1, help='torch threads per side')
    args = parser.parse_args()
    for name in ('num_images', 'size', 'threads'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')

    ours = run_isolated(run_metric, args)
    ref = run_isolated(run_sklearn, args)

    print(f'\n{args.num_images} images of {args.size}x{args.size}: '
          f'{ours["pixels"]:,} pixels, {ours["pos"]:,} positive '
          f'({100 * ours["pos"] / ours["pixels"]:.2f}%)')
    header = (f'{"method":<22}{"time s":>10}{"peak RSS MB":>14}'
              f'{"tracemalloc MB":>16}{"held MB":>10}{"AP":>10}')
    print(header)
    print('-' * len(header))
    for name, r in (('PneumothoraxMetric', ours), ('sklearn AP', ref)):
        print(f'{name:<22}{r["time"]:>10.3f}{r["rss"]:>14.1f}'
              f'{r["traced"]:>16.1f}{r["retained"]:>10.1f}{r["ap"]:>10.5f}')
    print('\npeak RSS: growth during the timed part; held: histograms kept '
          'by the metric / scores+labels sklearn needs in memory.')
    print(f'speed-up: {ref["time"] / ours["time"]:.1f}x '
          f'(metric includes Dice and the per-image numbers)')
    print(f'|ap - sklearn ap| = {abs(ours["ap"] - ref["ap"]):.2e} '
          f'(guaranteed bound {ours["bound"]:.2e})')


if __name__ == '__main__':
    main()
