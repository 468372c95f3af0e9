"""Swin's window partition copies: mmseg's vs SwinTransformerSDPA's gathers.

Times only the data movement around the window attention -- zero pad,
cyclic shift, window partition, and back -- forward and backward, at the
stage shapes of a Swin backbone (default Swin-B at 512x512, window 12).
mmseg's ``ShiftWindowMSA`` and this project's ``ShiftWindowMSASDPA`` each
run with their attention replaced by a cast to the autocast dtype, which is
what stock's qkv projection does first under autocast; stock also rebuilds
its shift mask in every forward, as it does in a real run. Before timing,
each shape is checked to give both modules bit for bit the same output and
input gradient.

The last line sums the stages as a backbone has them (``--depths``, half of
each stage's blocks shifted): the copy time per image of the whole
backbone's train step.

Example::

    python tools/benchmark_window_tokens.py --device cuda --batch-size 16
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor, nn
from tqdm import tqdm

import mmseg_ptx  # noqa: F401  (stack fixes)
from mmseg_ptx.compat import autocast_dtype
from mmseg_ptx.models.backbones.swin_sdpa import ShiftWindowMSASDPA
from mmseg_ptx.reporting.json_io import write_json
from mmseg.models.backbones.swin import ShiftWindowMSA


class CastAttention(nn.Module):
    """Stand-in for ``WindowMSA``: only the autocast cast of its qkv
    projection's input. Keeps the bias table, whose dtype the shift mask
    takes."""

    def __init__(self, attention: nn.Module) -> None:
        super().__init__()
        self.relative_position_bias_table = (
            attention.relative_position_bias_table)

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        dtype = autocast_dtype(x.device.type)
        return x if dtype is None else x.to(dtype)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--img-size', type=int, default=512)
    parser.add_argument(
        '--embed-dims', type=int, default=128, help='stage 1 channels')
    parser.add_argument('--window-size', type=int, default=12)
    parser.add_argument(
        '--depths', type=int, nargs=4, default=[2, 2, 18, 2],
        help='blocks per stage, for the backbone total')
    parser.add_argument(
        '--amp', choices=['none', 'bf16'], default='bf16',
        help='autocast dtype (bf16: float32 tokens cast as in training)')
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--json', help='also write the rows here')
    args = parser.parse_args(argv)
    for name in ('batch_size', 'img_size', 'embed_dims', 'window_size',
                 'iters'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')
    if args.img_size % 32:
        parser.error('--img-size must be a multiple of 32 (4 stages, '
                     'patch size 4)')
    return args


def build(module_type: type, dims: int, window: int, shift: int,
          device: str) -> nn.Module:
    module = module_type(
        embed_dims=dims, num_heads=1, window_size=window, shift_size=shift)
    module.w_msa = CastAttention(module.w_msa)
    return module.to(device)


def step(module: nn.Module, x: Tensor, hw: tuple, grad: Tensor,
         amp: str) -> Tensor:
    x.grad = None
    with torch.autocast(
            x.device.type, dtype=torch.bfloat16, enabled=amp == 'bf16'):
        out = module(x, hw)
    out.backward(grad)
    return out


def time_module(module: nn.Module, x: Tensor, hw: tuple, grad: Tensor,
                args: argparse.Namespace, desc: str) -> Dict[str, float]:
    for _ in range(args.warmup):
        step(module, x, hw, grad, args.amp)
    times = []
    for _ in tqdm(range(args.iters), desc=desc, leave=False):
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        step(module, x, hw, grad, args.amp)
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return dict(ms_min=min(times) * 1e3,
                ms_median=statistics.median(times) * 1e3)


def measure_stage(stage: int, shifted: bool,
                  args: argparse.Namespace) -> Dict[str, Any]:
    side = args.img_size // 2**(stage + 2)
    dims = args.embed_dims * 2**stage
    ws = args.window_size
    shift = ws // 2 if shifted else 0
    gen = torch.Generator().manual_seed(stage)
    x = torch.randn(args.batch_size, side * side, dims, generator=gen)
    x = x.to(args.device).requires_grad_()
    out_dtype = torch.bfloat16 if args.amp == 'bf16' else torch.float32
    grad = torch.randn(x.shape, generator=gen).to(args.device, out_dtype)
    row = dict(stage=stage + 1, shape=[side, side, dims], shifted=shifted)
    results = {}
    for name, module_type in (('stock', ShiftWindowMSA),
                              ('gather', ShiftWindowMSASDPA)):
        module = build(module_type, dims, ws, shift, args.device)
        out = step(module, x, (side, side), grad, args.amp)
        results[name] = (out.detach(), x.grad.clone())
        row[name] = time_module(module, x, (side, side), grad, args,
                                f'stage {stage + 1} {name}')
    for what, a, b in zip(('output', 'input gradient'), results['stock'],
                          results['gather']):
        if not torch.equal(a, b):
            raise RuntimeError(f'stage {stage + 1} (shifted={shifted}): '
                               f'the {what}s differ; not the same copies')
    row['speedup'] = row['stock']['ms_min'] / row['gather']['ms_min']
    return row


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    rows = [
        measure_stage(stage, shifted, args) for stage in range(4)
        for shifted in (False, True)
    ]
    totals = {
        name: sum(row[name]['ms_min'] * args.depths[row['stage'] - 1] / 2
                  for row in rows) / args.batch_size
        for name in ('stock', 'gather')
    }
    device = (torch.cuda.get_device_name(args.device)
              if torch.device(args.device).type == 'cuda' else
              f'cpu ({torch.get_num_threads()} threads)')
    print(f'{device}, torch {torch.__version__}, batch {args.batch_size}, '
          f'{args.img_size} px, window {args.window_size}, amp {args.amp}; '
          f'forward + backward, min ms over {args.iters} iterations')
    print('stage | H x W x C       | shifted | stock ms | gather ms | '
          'speed-up')
    for row in rows:
        shape = ' x '.join(map(str, row['shape']))
        print(f'{row["stage"]:<5} | {shape:<15} | {str(row["shifted"]):<7} '
              f'| {row["stock"]["ms_min"]:8.3f} | '
              f'{row["gather"]["ms_min"]:9.3f} | {row["speedup"]:.2f}x')
    print(f'backbone (depths {args.depths}) per image: stock '
          f'{totals["stock"]:.3f} ms, gather {totals["gather"]:.3f} ms, '
          f'{totals["stock"] / totals["gather"]:.2f}x')
    result = dict(
        settings=vars(args),
        device=device,
        torch=torch.__version__,
        rows=rows,
        backbone_ms_per_image=totals)
    if args.json:
        write_json(result, args.json)
        print(f'JSON written to {args.json}')
    return result


if __name__ == '__main__':
    main()
