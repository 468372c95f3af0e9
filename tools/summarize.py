"""Write PERFORMANCE_SUMMARY.md, its plots and prediction pictures."""
import argparse
import os.path as osp
import sys

import mmseg_ptx  # noqa: F401  (stack fixes + registration)
from mmseg_ptx.apis import check_device, reports_usage_errors
from mmseg_ptx.reporting.summary import (InvalidMetricsHistory,
                                         NoValidationRecords,
                                         write_performance_summary)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Performance report of a training run')
    parser.add_argument('work_dir', help='the run\'s work dir')
    parser.add_argument('--config', help='config (default: the one in '
                        'work_dir)')
    parser.add_argument('--checkpoint', help='checkpoint for the pictures '
                        '(default: best_*.pth in work_dir)')
    parser.add_argument('--stats', help='tools/dataset_stats.py JSON '
                        '(default: <data_root>/<split_dir>/stats.json, '
                        'where that tool writes it, else '
                        '<data_root>/stats.json)')
    parser.add_argument('--no-images', action='store_true',
                        help='skip the prediction pictures')
    parser.add_argument('--num-pos', type=int, default=5,
                        help='positive validation images drawn')
    parser.add_argument('--num-neg', type=int, default=2,
                        help='negative validation images drawn')
    parser.add_argument('--max-images', type=int,
                        help='validation images scanned for the pictures')
    parser.add_argument('--device', help='e.g. cuda:0 or cpu')
    args = parser.parse_args()
    if args.num_pos < 0 or args.num_neg < 0:
        parser.error('--num-pos and --num-neg must be >= 0')
    if args.max_images is not None and args.max_images < 1:
        parser.error('--max-images must be >= 1')
    for flag in ('config', 'checkpoint', 'stats'):
        path = getattr(args, flag)
        # A checkpoint may be a URL, as mmengine loads them.
        if path is not None and '://' not in path and not osp.isfile(path):
            parser.error(f'--{flag} {path} is not a file')
    return args


@reports_usage_errors
def main() -> int:
    args = parse_args()
    check_device(args.device)
    try:
        path = write_performance_summary(
            args.work_dir, config=args.config, checkpoint=args.checkpoint,
            stats=args.stats, images=not args.no_images,
            num_pos=args.num_pos, num_neg=args.num_neg,
            max_images=args.max_images, device=args.device)
    # One line, no traceback: a run without (readable) validation
    # records, status 1 (a bad --device or a --checkpoint that is none:
    # status 2, from reports_usage_errors, as in the other tools).
    except (NoValidationRecords, InvalidMetricsHistory) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'Report written: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
