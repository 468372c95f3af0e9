"""Tune the triplet-threshold post-processing on the validation set.

    python tools/tune_postprocess.py CONFIG CHECKPOINT --out tuned.json

Runs the model once over ``val_dataloader``'s data set, keeping per image
only the counts the grid needs (see mmseg_ptx.evaluation.triplet_search:
exact at the original resolution, no probability map is stored), then
scores every (top, min_area, bottom) point by the mean per-image
competition Dice. min_area is in pixels at the original resolution.

Ties go to the earlier grid point, in the order the values are given
(values given twice count once). The images must hold both classes.

The best setting's score is in-sample: chosen and scored on the same
images, so optimistic. With --folds K (default 5, fewer for fewer
images) the search is also
cross-validated: each of K folds of the images (stratified by positive and
negative, the same on every run) gets the setting chosen on the other
folds and is scored with it; the mean over all images so held out is an
honest estimate of the tuned score (the JSON's ``held_out``).

With --extra-model CONFIG CHECKPOINT (repeatable) the counts are those of
the models' averaged probabilities, as ``tools/infer.py --extra-model``
thresholds them: the first model predicts the validation items, each
extra one the same image through its own test pipeline.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional, Tuple

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

import mmseg_ptx  # noqa: F401  (stack fixes + registration)
from mmseg.registry import DATASETS
from mmseg_ptx.apis import (UsageError, add_cfg_options_arg, check_device,
                            default_device,
                            image_reader, load_models, merge_cfg_options,
                            pipeline_mismatch, predict_packed,
                            predict_probabilities, read_config,
                            reports_usage_errors, require_replaceable_json,
                            require_writable_file,
                            val_pipeline_difference)
from mmseg_ptx.evaluation import (cross_validate_triplet, search_triplet,
                                  triplet_folds, triplet_image_stats)
from mmseg_ptx.reporting import write_json


#: Folds of the held-out estimate where --folds is not given.
DEFAULT_FOLDS = 5
#: A positive share of the tuned images above which, without
#: --positive-share, the tool warns (the Kaggle sets: about 0.21-0.22).
POSITIVE_SHARE_WARNING = 0.35


def float_list(text):
    # A value given twice would be two identical grid rows.
    return list(dict.fromkeys(float(v) for v in text.split(',') if v.strip()))


def int_list(text):
    return list(dict.fromkeys(int(v) for v in text.split(',') if v.strip()))


def refuse_one_class(num: int, num_positive: int,
                     max_images: Optional[int]) -> None:
    """Refuse images of one class: on negatives alone every setting that
    empties each image scores 1, on positives alone every one that never
    empties does best, so the setting chosen would be the grid's first of
    a tie, not one for images of both kinds."""
    if 0 < num_positive < num:
        return
    kind = 'negative' if num_positive == 0 else 'positive'
    subset = (f' (the first {num}: --max-images {max_images})'
              if max_images == num else '')
    raise UsageError(
        f'the {num} validation image(s) tuned on{subset} are all {kind}: no '
        'post-processing setting can be chosen on images of one class. Tune '
        'on a validation set with positive and negative images')


def parse_args() -> Tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The arguments, and the parser for the check that needs the data."""
    parser = argparse.ArgumentParser(
        description='Grid-search TripletThresholdPostProcessor on the '
        'validation set (ties go to the earlier grid point, in the order '
        'the values are given)')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', default='tuned.json',
                        help='output JSON (default tuned.json; an earlier '
                        'run\'s is replaced, another file refused)')
    parser.add_argument('--top', type=float_list,
                        default='0.5,0.6,0.7,0.75,0.8,0.85,0.9',
                        help='top thresholds, comma-separated (default '
                        '%(default)s)')
    parser.add_argument('--min-area', type=int_list,
                        default='0,250,500,1000,1500,2000,3000,4000',
                        help='pixels at the original resolution, '
                        'comma-separated (default %(default)s)')
    parser.add_argument('--bottom', type=float_list,
                        default='0.2,0.3,0.4,0.5',
                        help='bottom thresholds, comma-separated (default '
                        '%(default)s)')
    parser.add_argument('--max-images', type=int, default=None,
                        help='use only the first N validation images')
    parser.add_argument('--folds', type=int, default=None,
                        help='estimate the tuned score on held-out images '
                        'by K-fold cross-validation (0 or 1: off; default '
                        f'{DEFAULT_FOLDS}, or one per image where there are '
                        'fewer)')
    parser.add_argument('--positive-share', type=float, default=None,
                        help='choose the setting by the mean Dice '
                        'reweighted to this share of positive images (the '
                        'Kaggle test set: about 0.21) instead of the '
                        'validation set\'s own share')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--device', default=None)
    parser.add_argument('--tta', action='store_true',
                        help='horizontal-flip TTA while predicting')
    parser.add_argument(
        '--extra-model', nargs=2, action='append', default=[],
        metavar=('CONFIG', 'CHECKPOINT'),
        help='another model whose probabilities are averaged in, as '
        'tools/infer.py --extra-model averages them (repeatable)')
    add_cfg_options_arg(parser)
    parser.add_argument('--show', type=int, default=10,
                        help='how many of the best settings to print')
    args = parser.parse_args()
    for name in ('top', 'bottom'):
        values = getattr(args, name)
        if not values or not all(0 < v < 1 for v in values):
            parser.error(f'--{name} needs thresholds in (0, 1)')
    if min(args.bottom) > max(args.top):
        parser.error('no setting has --bottom <= --top (the post-processor '
                     'rejects bottom > top)')
    if not args.min_area or min(args.min_area) < 0:
        parser.error('--min-area needs non-negative integers')
    for name in ('max_images', 'batch_size'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be at least 1')
    if args.num_workers < 0 or args.show < 0:
        parser.error('--num-workers and --show must be >= 0')
    if args.positive_share is not None and not 0 <= args.positive_share <= 1:
        parser.error('--positive-share must be in [0, 1]')
    if args.folds is not None and args.folds < 0:
        parser.error('--folds must be 0 (off) or more')
    if args.max_images is not None:
        check_folds(parser, args.folds, args.max_images)
    return parser, args


def check_folds(parser: argparse.ArgumentParser, folds: Optional[int],
                num_images: int) -> int:
    """The number of folds: ``--folds``, refused where it exceeds the
    images (every fold needs one), else :data:`DEFAULT_FOLDS` or, for
    fewer images, one per image.

    Args:
        parser (argparse.ArgumentParser): Reports the error.
        folds (int, optional): ``--folds``.
        num_images (int): The images tuned on.

    Returns:
        int: The folds; below 2 means no held-out estimate.
    """
    if folds is None:
        return min(DEFAULT_FOLDS, num_images)
    if folds > num_images:
        parser.error(f'--folds {folds} needs at least {folds} images, '
                     f'{num_images} are tuned on; pass a smaller --folds, '
                     'or 0 to skip the held-out estimate')
    return folds


def print_folds(held_out: dict, score: str = 'kaggle_dice') -> None:
    """Each fold's setting, chosen on the other folds, and its ``score``
    (a key of the fold's results)."""
    print(f'{held_out["num_folds"]}-fold cross-validation: each fold\'s '
          'setting is chosen on the other folds (in-sample) and scored on '
          'the fold (held-out):')
    print(f'{"fold":>4} {"images":>6} {"top":>6} {"min_area":>9} '
          f'{"bottom":>7} {"in-sample":>9} {"held-out":>8}')
    for i, fold in enumerate(held_out['folds']):
        print(f'{i:>4d} {fold["num_images"]:>6d} '
              f'{fold["top_threshold"]:>6.3g} {fold["min_area"]:>9d} '
              f'{fold["bottom_threshold"]:>7.3g} '
              f'{fold["in_sample"][score]:>9.4f} '
              f'{fold["held_out"][score]:>8.4f}')


@reports_usage_errors
def main() -> int:
    parser, args = parse_args()
    # An earlier tuned.json is replaced; any other file (or a folder) is
    # refused.
    require_replaceable_json(args.out, '--out', ('best', 'results'))
    require_writable_file(args.out, '--out')
    check_device(args.device)
    # Before the model's pass over the images (minutes for Swin-B), not
    # when the results are written.
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    cfg = read_config(args.config)
    merge_cfg_options(cfg, args.cfg_options)
    mismatch = pipeline_mismatch(cfg)
    if mismatch:
        print(f'Warning: {mismatch}', file=sys.stderr)
    difference = val_pipeline_difference(cfg)
    if difference:
        print("Warning: val_dataloader's pipeline, which this tool tunes "
              "through, differs from test_dataloader's, which tools/test.py "
              f'and tools/infer.py predict through ({difference})',
              file=sys.stderr)
    models = load_models([(cfg, args.checkpoint)] +
                         [tuple(pair) for pair in args.extra_model],
                         device=args.device or default_device())
    model, extras = models[0], models[1:]
    read = image_reader(models)
    dataset = DATASETS.build(model.cfg.val_dataloader.dataset)
    num = len(dataset) if args.max_images is None else min(
        args.max_images, len(dataset))
    if num == 0:
        print('The validation set is empty', file=sys.stderr)
        return 1
    # Before the model runs over the images, not after.
    folds = check_folds(parser, args.folds, num)
    flags = [dataset.get_data_info(i).get('has_pneumothorax')
             for i in range(num)]
    if None not in flags:
        refuse_one_class(num, sum(map(bool, flags)), args.max_images)
    loader = DataLoader(Subset(dataset, range(num)),
                        batch_size=args.batch_size,
                        num_workers=args.num_workers,
                        collate_fn=list)
    stats, plain = [], []
    for batch in tqdm(loader, desc='predict', unit='batch'):
        probs = predict_packed(model, batch, tta=args.tta)
        names = [p['data_samples'].metainfo.get('img_path') for p in batch]
        if extras:
            # Each extra model through its own test pipeline, as
            # tools/infer.py gives it the images; equal weights.
            others = predict_probabilities(extras, [read(n) for n in names],
                                           tta=args.tta, names=names)
            probs = [(p + len(extras) * torch.from_numpy(o)) / len(models)
                     for p, o in zip(probs, others)]
        for packed, prob, name in zip(batch, probs, names):
            gt = packed['data_samples'].gt_sem_seg.data[0]
            stats.append(
                triplet_image_stats(prob, gt, args.top, args.bottom,
                                    name=name))
            # The plain 0.5 threshold, as the baseline.
            plain.append(
                triplet_image_stats(prob, gt, [0.5], [0.5], name=name))

    share = args.positive_share
    num_positive = sum(s.gt > 0 for s in stats)
    print(f'{num} validation images, {num_positive} of them positive '
          f'({num_positive / num:.1%})')
    # By the masks: a dataset without has_pneumothorax, or whose labels
    # disagree with its masks.
    refuse_one_class(num, num_positive, args.max_images)
    if share is None and num_positive > POSITIVE_SHARE_WARNING * num:
        # A split_first validation set has the data's own share already
        # (a hand-made split, without split_meta.json, ignores the order).
        natural = (getattr(dataset, 'split_order', None) == 'split_first'
                   and osp.isfile(osp.join(dataset.split_dir,
                                           'split_meta.json')))
        print(f'warning: {num_positive / num:.0%} of the validation images '
              'are positive, against about 21 % in the Kaggle test set: '
              'the setting chosen here empties fewer images than one for '
              'that set. Pass --positive-share 0.21' +
              ('.' if natural else
               ', or tune on a natural validation set '
               '(configs/upernet_swin-b_ptx-512_natural-val.py).'),
              file=sys.stderr)
    try:
        rows = search_triplet(stats, args.top, args.min_area, args.bottom,
                              positive_share=share)
        baseline = search_triplet(plain, [0.5], [0], [0.5],
                                  positive_share=share)[0]
    except ValueError as err:
        if share is None:
            raise
        # A share that needs a class the images lack.
        raise UsageError(f'--positive-share: {err}') from None
    held_out = None
    if folds > 1:
        try:
            # The same per-image counts: no second pass of the model.
            held_out = cross_validate_triplet(stats, args.top,
                                              args.min_area, args.bottom,
                                              triplet_folds(stats, folds),
                                              positive_share=share)
        except ValueError as err:
            if share is None:
                raise
            # A share that needs a class a fold's rest lacks.
            raise UsageError(
                f'--positive-share: {err}; pass a smaller --folds, or 0 to '
                'skip the held-out estimate') from None
    best = rows[0]
    score = 'kaggle_dice' if share is None else 'kaggle_dice_reweighted'
    header = (f'{"top":>6} {"min_area":>9} {"bottom":>7} {"dice":>8} '
              f'{"dice_pos":>9} {"dice_neg":>9} {"empty":>6}')
    if share is not None:
        header += f' {"at share":>9}'
    print(f'{len(rows)} settings; mean per-image competition Dice' +
          ('' if share is None else
           f' (ranked by the mean at a positive share of {share:g})') + ':')
    print(header)
    for row in rows[:args.show]:
        print(f'{row["top_threshold"]:>6.3g} {row["min_area"]:>9d} '
              f'{row["bottom_threshold"]:>7.3g} {row["kaggle_dice"]:>8.4f} '
              f'{row["kaggle_dice_pos"]:>9.4f} '
              f'{row["kaggle_dice_neg"]:>9.4f} {row["num_empty"]:>6d}' +
              ('' if share is None else
               f' {row["kaggle_dice_reweighted"]:>9.4f}'))
    print(f'plain 0.5 threshold: {baseline[score]:.4f}')
    if held_out is not None:
        print_folds(held_out, score)

    pp = dict(type='TripletThresholdPostProcessor',
              top_threshold=best['top_threshold'],
              min_area=best['min_area'],
              bottom_threshold=best['bottom_threshold'])
    snippet = ('postprocess=dict(' + ', '.join(
        f'{k}={v!r}' for k, v in pp.items()) + ')')
    result = dict(
        config=osp.abspath(args.config),
        cfg_options=args.cfg_options,
        checkpoint=osp.abspath(args.checkpoint),
        extra_models=[[osp.abspath(c), osp.abspath(k)]
                      for c, k in args.extra_model],
        num_images=num,
        num_positive=num_positive,
        positive_share=share,
        tta=args.tta,
        best=best,
        postprocess=pp,
        config_snippet=snippet,
        baseline_threshold_0_5=baseline)
    if held_out is not None:
        result['held_out'] = held_out
    result.update(
        grid=dict(top=args.top, min_area=args.min_area, bottom=args.bottom),
        results=rows)
    # Strict JSON: per-class Dice of a subset without positives (or
    # negatives) is NaN, written as null.
    write_json(result, args.out, indent=2)
    print(f'best: {snippet}  ({score} {best[score]:.4f})')
    print('Use it in val_evaluator, which tools/infer.py reads, and in '
          'test_evaluator, which tools/test.py scores: a config that '
          'inherits test_evaluator = val_evaluator and changes '
          'val_evaluator must say test_evaluator = val_evaluator again. '
          'tools/test.py on these images then scores it in-sample too.')
    in_sample = (f'The best {score} {best[score]:.4f} is '
                 f'in-sample (the setting was chosen and scored on the same '
                 f'{num} images)')
    if held_out is None:
        print(f'{in_sample}; --folds K gives a held-out estimate')
    else:
        print(f'{in_sample}; {held_out["num_folds"]}-fold cross-validated '
              f'held-out estimate: {held_out[score]:.4f} '
              f'({held_out["num_same_as_all"]} of {held_out["num_folds"]} '
              'folds chose the same setting as the search on all images)')
    print(f'written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
