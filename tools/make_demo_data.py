"""Write a synthetic SIIM-ACR data set in the Kaggle layout(s).

Example::

    python tools/make_demo_data.py --out data/siim_demo --num 200 --seed 0

See :func:`mmseg_ptx.datasets.synthetic.write_demo_dataset` for the layout.
"""
import argparse
import os.path as osp
import sys
import time

from mmseg_ptx.apis import UsageError, reports_usage_errors
from mmseg_ptx.datasets.synthetic import LAYOUTS, write_demo_dataset


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write synthetic chest radiographs with pneumothorax '
        'masks in the SIIM-ACR Kaggle layout (DICOM + train-rle.csv) '
        'and/or the PNG re-release layout.')
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--num', type=int, required=True,
                        help='number of images')
    parser.add_argument('--seed', type=int, required=True,
                        help='random seed (same seed, same data set)')
    parser.add_argument('--size', type=int, default=1024,
                        help='image side in pixels (default 1024, as in '
                        'the competition)')
    parser.add_argument('--layout', choices=LAYOUTS, default='dicom',
                        help='dicom: dicom-images-train/ + train-rle.csv; '
                        'png: png_images/, png_masks/ + '
                        'stage_1_train_images.csv; both: both')
    parser.add_argument('--positive-fraction', type=float, default=0.22,
                        help='fraction of images with pneumothorax '
                        '(default 0.22)')
    parser.add_argument('--stage1-header', action='store_true',
                        help="write the stage-1 CSV spelling "
                        "'ImageId, EncodedPixels' with ' -1' values")
    parser.add_argument('--overwrite', action='store_true',
                        help='replace a data set already in --out (its CSV, '
                        'image folders, split files and stats.json); '
                        'without it, one is an error unless this tool wrote '
                        'it')
    return parser.parse_args()


@reports_usage_errors
def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    try:
        masks = write_demo_dataset(
            args.out, args.num, args.seed, size=args.size,
            layout=args.layout, positive_fraction=args.positive_fraction,
            stage1_header=args.stage1_header, progress=True,
            overwrite=args.overwrite)
    except (FileExistsError, ValueError) as err:
        # A data set already there, bad counts or sizes: before anything
        # is written.
        raise UsageError(str(err)) from None
    seconds = time.perf_counter() - start
    # One decode per mask (they are kept as RLE).
    fg_counts = [int(m.sum()) for m in masks.values()]
    n_pos, fg = sum(c > 0 for c in fg_counts), sum(fg_counts)
    print(f'Wrote {len(masks)} images ({args.size}x{args.size}, layout '
          f'{args.layout}) to {osp.abspath(args.out)}')
    print(f'  positive images: {n_pos} ({n_pos / len(masks):.1%})')
    print(f'  foreground pixels: {fg / (len(masks) * args.size ** 2):.3%}')
    print(f'  time: {seconds:.1f} s ({len(masks) / seconds:.1f} images/s)')


if __name__ == '__main__':
    sys.exit(main())
