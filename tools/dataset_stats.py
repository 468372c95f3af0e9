"""Image counts, train/val split and pixel statistics of SIIM-ACR.

Example::

    python tools/dataset_stats.py data/siim --workers 8

prints Markdown tables and writes ``data/siim/splits/stats.json`` (keys:
``class_weights``, ``pixel_counts``, ``imbalance_ratio``, ``num_images``,
``settings``). The split is the one the dataset uses with the same
settings; it is written to ``--split-dir`` if it does not exist yet.
"""
import argparse
import os.path as osp
import sys

import mmseg_ptx  # noqa: F401  (registers the plugin, applies stack fixes)
from mmseg_ptx.apis import (logs_to_stderr, reports_usage_errors,
                            require_replaceable_json, require_writable_file)
from mmseg_ptx.datasets import compute_dataset_statistics, format_statistics
from mmseg_ptx.datasets.split import STATS_FILE
from mmseg_ptx.reporting.json_io import write_json


def parse_args():
    parser = argparse.ArgumentParser(
        description='Statistics of the SIIM-ACR pneumothorax data set: '
        'image counts before/after balancing, train/val split, pixel '
        'counts and class weights over the whole training split.')
    parser.add_argument('data_root', help='data set root, e.g. data/siim')
    parser.add_argument(
        '--layout', choices=['dicom', 'png'], default='dicom',
        help='raw DICOM + train-rle.csv, or the PNG re-release')
    parser.add_argument(
        '--split-dir', default='splits',
        help='split directory, relative to DATA_ROOT or absolute (read if '
        'present, written otherwise)')
    parser.add_argument(
        '--neg-keep-ratio', type=float, default=0.15,
        help='fraction of negative images kept (1.0: no undersampling)')
    parser.add_argument(
        '--val-ratio', type=float, default=0.2,
        help='fraction of each class sent to validation')
    parser.add_argument('--seed', type=int, default=42, help='split seed')
    parser.add_argument(
        '--split-order', choices=['balance_first', 'split_first'],
        default='balance_first',
        help='balance_first: undersample then split (the reference); '
        'split_first: validation keeps the natural distribution')
    parser.add_argument(
        '--workers', type=int, default=1,
        help='processes counting pixels (default: 1, in this process)')
    parser.add_argument(
        '--out',
        help='output JSON (default: DATA_ROOT/SPLIT_DIR/stats.json; an '
        'earlier run\'s is replaced, another file refused)')
    parser.add_argument(
        '--strict', action='store_true',
        help='fail on images without a label or file instead of skipping')
    args = parser.parse_args()
    if args.workers < 1:
        parser.error('--workers must be >= 1')
    return args


@reports_usage_errors
def main() -> None:
    args = parse_args()
    out = args.out or osp.join(args.data_root, args.split_dir, STATS_FILE)
    # Before the pixels are counted (minutes on the Kaggle set): an
    # earlier run's statistics are replaced, any other file is kept.
    require_replaceable_json(out, '--out', ('num_images', 'class_weights'))
    require_writable_file(out, '--out')
    try:
        # The data set's warnings (unlisted images, say) beside the tables.
        with logs_to_stderr():
            stats = compute_dataset_statistics(
                args.data_root,
                layout=args.layout,
                split_dir=args.split_dir,
                neg_keep_ratio=args.neg_keep_ratio,
                val_ratio=args.val_ratio,
                seed=args.seed,
                split_order=args.split_order,
                workers=args.workers,
                strict=args.strict)
    except (OSError, ValueError) as err:
        # A missing folder or CSV, an unreadable image, a malformed CSV row
        # or RLE, bad split settings: the message names the file and the
        # problem, a traceback would only bury it.
        raise SystemExit(f'error: {err}') from None
    print(format_statistics(stats))
    # Atomic (its folder made if missing): an interrupted run leaves no
    # half file for the report.
    write_json(stats, out, indent=2)
    # stdout holds the tables alone (tool > stats.md).
    print(f'Statistics written to {out}', file=sys.stderr)


if __name__ == '__main__':
    sys.exit(main())
