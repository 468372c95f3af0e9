"""Train a segmentor with mmseg_ptx's components (MMSeg's interface)."""
import argparse
import logging

from mmengine.logging import print_log
from mmengine.runner import Runner

import mmseg_ptx  # noqa: F401  (stack fixes + registration)
from mmseg.registry import RUNNERS
from mmseg_ptx.apis import add_runner_args, load_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--resume',
        action='store_true',
        help='resume from the latest checkpoint in the work_dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic mixed precision training')
    parser.add_argument(
        '--amp-dtype',
        choices=['float16', 'bfloat16'],
        default='float16',
        help='autocast dtype with --amp (bfloat16 needs no loss scaling)')
    add_runner_args(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(args)

    if args.amp:
        if cfg.optim_wrapper.type == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in your config.',
                      logger='current', level=logging.WARNING)
        elif cfg.optim_wrapper.type != 'OptimWrapper':
            raise ValueError('--amp needs optim_wrapper.type OptimWrapper, '
                             f'got {cfg.optim_wrapper.type}')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.dtype = args.amp_dtype
            # bf16 has fp32's range: scaling the loss would only cost time.
            cfg.optim_wrapper.loss_scale = (
                'dynamic' if args.amp_dtype == 'float16' else 1.0)
    cfg.resume = args.resume

    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    runner.train()


if __name__ == '__main__':
    main()
