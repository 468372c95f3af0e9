"""Average the weights of several checkpoints into one.

    python tools/average_checkpoints.py CKPT CKPT [CKPT ...] --out FILE

The last few checkpoints of a run (this project's schedule keeps the
last three ``epoch_*.pth``: those of every 10th epoch, and of an epoch
with a new best Dice, which mmengine's CheckpointHook saves again), or
those of runs of one config, averaged into one model for
``tools/test.py`` and ``tools/infer.py``
(mmseg_ptx.models.utils.average_checkpoints says what is averaged). The
output keeps the newest checkpoint's ``meta``; it has no optimizer state,
so no run resumes from it.
"""
import argparse
import os.path as osp
import sys

import torch
from tqdm import tqdm

import mmseg_ptx  # noqa: F401  (stack fixes + registration)
from mmseg_ptx.apis import (UsageError, reports_usage_errors, require_file,
                            require_writable_file)
from mmseg_ptx.models.utils import average_checkpoints
from mmseg_ptx.utils import atomic_path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Average the weights of checkpoints of one model')
    parser.add_argument('checkpoints', nargs='+',
                        help='two or more checkpoint files (or URLs)')
    parser.add_argument('--out', required=True,
                        help='the averaged checkpoint (a new file)')
    return parser.parse_args()


@reports_usage_errors
def main() -> int:
    args = parse_args()
    for path in args.checkpoints:
        require_file(path, 'Checkpoint', urls=True)
    if len(args.checkpoints) < 2:
        raise UsageError('give two or more checkpoints to average')
    # Nothing a user made is overwritten, an input least of all.
    if osp.lexists(args.out):
        raise UsageError(f'--out {args.out} exists; choose a new file name')
    require_writable_file(args.out, '--out')
    with tqdm(total=len(args.checkpoints), desc='checkpoints',
              unit='file') as bar:
        try:
            checkpoint = average_checkpoints(
                args.checkpoints, progress=lambda _: bar.update())
        except ValueError as err:
            raise UsageError(str(err)) from None
    # Under a temporary name of its own, renamed: an interrupted save
    # leaves no truncated checkpoint, and no file of the user's is taken.
    with atomic_path(args.out) as tmp:
        torch.save(checkpoint, tmp)
    meta = checkpoint['meta']
    newest = (f' (meta of epoch {meta["epoch"]}, iteration {meta["iter"]})'
              if 'epoch' in meta and 'iter' in meta else '')
    print(f'Averaged {len(args.checkpoints)} checkpoints into '
          f'{args.out}{newest}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
