"""Test (and evaluate) a trained segmentor (MMSeg's interface)."""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.runner import Runner
from torch.distributed.elastic.multiprocessing.errors import record

import mmseg_ptx  # noqa: F401  (stack fixes + registration)
from mmseg_ptx.apis import (UsageError, add_runner_args, config_test_pipeline,
                            config_type_name, format_metrics_table,
                            has_custom_hook, leave_process_group,
                            load_config, loader_dataset,
                            mask_threshold_mismatch,
                            pipeline_difference, pipeline_mismatch,
                            postprocess_mismatch, read_config,
                            reports_usage_errors, require_file,
                            require_folder, tta_pipeline_difference)
from mmseg_ptx.engine.hooks import SWIN_BLOCKS, PRCurveHook
from mmseg_ptx.engine.hooks.prediction_writer_hook import \
    check_prediction_folder
from mmseg_ptx.models import INFERENCE_DTYPES
from mmseg_ptx.models.utils import load_runner_checkpoints_strictly


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out',
        help='directory to save the predicted masks (0/255 PNG, original '
        'resolution; the model\'s own prediction, before the post-processing '
        'that the *_pp metrics and tools/infer.py apply) for offline '
        'evaluation; a folder holding other files is refused unless an '
        'earlier test run wrote there (PREDICTIONS_BY_MMSEG_PTX.txt)')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where input | ground truth | prediction pictures '
        'are saved (a folder of other files is refused, as for --out)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--tta', action='store_true', help='test time augmentation')
    parser.add_argument(
        '--dtype',
        choices=list(INFERENCE_DTYPES),
        default='float32',
        help='hold the network in this dtype for testing '
        '(InferenceDtypeHook); float32 changes nothing')
    parser.add_argument(
        '--fuse-conv-bn',
        action='store_true',
        help='fold BatchNorm into the convolutions before testing '
        '(FuseConvBNHook): the same predictions up to rounding, one kernel '
        'fewer per folded layer')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the network before testing (CompileModulesHook; '
        'the first batch waits while it compiles, about half a minute for '
        'Swin-B on an H200: worth it for large test sets only)')
    parser.add_argument(
        '--compile-scope',
        choices=['modules', 'blocks'],
        default=None,
        help='with --compile: the backbone, neck and heads each compiled '
        'whole (modules, the default; the faster inference on an H200) or '
        'each Swin block on its own (blocks: smaller graphs, about as long '
        'to compile)')
    parser.add_argument(
        '--extra-model', nargs=2, action='append', default=[],
        metavar=('CONFIG', 'CHECKPOINT'),
        help='another model averaged in (EnsembleSegmentor); repeatable. '
        'All models see the first config\'s test pipeline (a warning names '
        'a model whose config has another)')
    add_runner_args(parser)
    args = parser.parse_args()
    if args.compile_scope is not None and not args.compile:
        parser.error('--compile-scope needs --compile')
    return args


def check_arguments(args: argparse.Namespace) -> None:
    """What the command line names, before anything is built.

    Raises:
        MissingFileError: A checkpoint (not a URL) that is not a file.
        UsageError: ``--out`` and ``--show-dir`` are one folder (the
            pictures would replace the masks, which have the same names),
            or either is a file or a folder of files the tool did not
            write.
    """
    for checkpoint in [args.checkpoint] + [c for _, c in args.extra_model]:
        require_file(checkpoint, 'Checkpoint', urls=True)
    if (args.out is not None and args.show_dir is not None
            and osp.realpath(args.out) == osp.realpath(args.show_dir)):
        raise UsageError(f'--out and --show-dir are the same folder, '
                         f'{args.out}; the pictures would replace the '
                         'masks, which have the same names')
    for flag, folder in (('--out', args.out), ('--show-dir', args.show_dir)):
        if folder is None:
            continue
        require_folder(folder, flag)
        try:
            check_prediction_folder(folder)
        except FileExistsError as err:
            raise UsageError(f'{flag}: {err}') from None


@reports_usage_errors
def main() -> None:
    args = parse_args()
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    # Printed once the Runner has set up the processes: by the first only.
    notes: List[str] = []
    for mismatch in (postprocess_mismatch(cfg), pipeline_mismatch(cfg)):
        if mismatch:
            notes.append(mismatch)

    held_in = held_in_note(cfg)
    vis_hook = (cfg.get('default_hooks') or {}).get('visualization')
    if args.show:
        dataset = cfg.test_dataloader.dataset
        if (config_type_name(dataset, '') == 'SIIMPneumothoraxDataset'
                and dataset.get('layout', 'dicom') == 'dicom'):
            raise UsageError(
                "--show displays through MMSeg's SegVisualizationHook, "
                'which reads each image with mmcv and cannot decode the '
                "DICOMs of this test set (layout='dicom'); use --show-dir "
                'DIR for input | ground truth | prediction pictures')
        if vis_hook is None:
            raise UsageError(
                '--show needs default_hooks.visualization '
                "(dict(type='SegVisualizationHook'))")
        vis_hook.update(draw=True, show=True, wait_time=args.wait_time)
    elif (vis_hook is not None
          and config_type_name(vis_hook, '') == 'SegVisualizationHook'
          and not vis_hook.get('draw', False)):
        # MMSeg's hook that draws nothing, whose warning says the results
        # are "NOT visualized or stored" while --out and --show-dir store
        # them. Removed: mmengine takes None only for its own hooks.
        cfg.default_hooks.pop('visualization')

    if args.extra_model:
        extra_cfgs = [read_config(c) for c, _ in args.extra_model]
        tested = config_test_pipeline(cfg)
        for (path, _), extra_cfg in zip(args.extra_model, extra_cfgs):
            own = config_test_pipeline(extra_cfg)
            # None: no pipeline to compare (a ConcatDataset whose members
            # disagree, say).
            difference = (pipeline_difference(tested, own)
                          if tested is not None and own is not None else
                          None)
            if difference:
                notes.append(
                    f'--extra-model {path} tests through another pipeline '
                    f'than {args.config} ({difference}); here it sees the '
                    "first config's: tools/infer.py and "
                    'tools/tune_postprocess.py give each model its own')
        # The members load their own checkpoints.
        cfg.model = dict(
            type='EnsembleSegmentor',
            models=[cfg.model] + [c.model for c in extra_cfgs],
            checkpoints=[args.checkpoint] +
            [ckpt for _, ckpt in args.extra_model])
        cfg.load_from = None

    if args.tta:
        # A child config may switch TTA off with tta_model = None.
        if not cfg.get('tta_model') or not cfg.get('tta_pipeline'):
            raise UsageError('--tta needs tta_model and tta_pipeline in '
                             f'the config {args.config}')
        if config_type_name(cfg.tta_model, '') == 'SegTTAModel':
            # MMSeg 1.2.2's SegTTAModel averages the views into
            # pred_sem_seg only: the seg_logits it returns, which
            # PneumothoraxMetric's AP, curves and thresholds and
            # PRCurveHook read, are the last view's.
            cfg.tta_model.type = 'SegTTAModelWithLogits'
            notes.append(
                "tta_model is MMSeg's SegTTAModel, whose seg_logits (the "
                "scores PneumothoraxMetric and the PR curves read) are the "
                "last view's alone: testing with SegTTAModelWithLogits, "
                'which averages them (the same masks for a 2-channel head)')
        difference = tta_pipeline_difference(cfg)
        if difference:
            notes.append(
                f'--tta runs tta_pipeline, which gives the model another '
                f'input than the test pipeline ({difference}), flips aside: '
                'tools/infer.py --tta and tools/tune_postprocess.py --tta '
                'only flip the images of the test and the validation '
                'pipeline, so their results are not this one\'s (where the '
                'test pipeline was changed, change tta_pipeline too)')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    # Of the model tested: an ensemble writes other masks than its members.
    mismatch = mask_threshold_mismatch(cfg)
    if mismatch:
        notes.append(mismatch)

    extra_hooks = []
    if args.fuse_conv_bn:
        extra_hooks.append(dict(type='FuseConvBNHook'))
    if args.dtype != 'float32':
        extra_hooks.append(dict(type='InferenceDtypeHook', dtype=args.dtype))
    if args.compile:
        if has_custom_hook(cfg, 'CompileModulesHook'):
            raise UsageError(
                f'--compile: the config {args.config} compiles already '
                '(a CompileModulesHook in custom_hooks); leave out --compile '
                'or that hook')
        extra_hooks.append(
            dict(type='CompileModulesHook', blocks=list(SWIN_BLOCKS))
            if args.compile_scope == 'blocks' else
            dict(type='CompileModulesHook'))
    if args.out is not None or args.show_dir is not None:
        # MMSeg's visualizer cannot read DICOM: our hook writes both.
        extra_hooks.append(
            dict(type='PredictionWriterHook', mask_dir=args.out,
                 panel_dir=args.show_dir))
    if extra_hooks:
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + extra_hooks

    check_arguments(args)  # the last check before anything is built
    # The Runner dumps its config as <work_dir>/<config file name>, which
    # in a training run's work dir is that run's config: without a file
    # name it is dumped as <work_dir>/<timestamp>.py. The experiment keeps
    # the config's name (<config>_<timestamp>, as mmengine names it).
    plain = cfg.to_dict()
    plain.setdefault('experiment_name',
                     osp.splitext(osp.basename(args.config))[0])
    try:
        runner = Runner.from_cfg(Config(plain))
    finally:
        # Also where building fails (an ensemble member's checkpoint,
        # loaded there): the notes may explain it.
        if is_main_process():
            for note in notes:
                print(f'Warning: {note}', file=sys.stderr)
    # Runner.test() would load it non-strictly: a checkpoint that does not
    # fit the config would be tested at random weights.
    load_runner_checkpoints_strictly(runner)
    metrics = runner.test()
    if metrics and is_main_process():
        print(format_metrics_table(metrics))
        if held_in:
            print(held_in)
        print(outputs_table(runner, args))
    leave_process_group()


def held_in_note(cfg: Config) -> Optional[str]:
    """What to say where the config tests images it trained or validated
    on: ``test_dataloader = val_dataloader`` (this project's configs and
    MMSeg's: the same dataset, pipeline aside), or a SIIM dataset on the
    training data root (dataset wrappers looked through) with
    ``split='val'``, ``'train'`` or None (every labelled image)."""
    def dataset(key: str) -> dict:
        return {k: v for k, v in loader_dataset(cfg, key).items()
                if k != 'pipeline'}

    def root(ds: dict) -> Optional[str]:
        return osp.realpath(ds['data_root']) if ds.get('data_root') else None

    test = dataset('test_dataloader')
    split = test.get('split')
    on_training_root = (
        config_type_name(test, '') == 'SIIMPneumothoraxDataset'
        and root(test) is not None
        and root(test) == root(dataset('train_dataloader')))
    if test and (test == dataset('val_dataloader')
                 or on_training_root and split == 'val'):
        return ('These are the validation images (the config\'s '
                'test_dataloader reads val_dataloader\'s): a best_*.pth was '
                'chosen on them, and a post-processing tuned on them scores '
                'in-sample, so these figures are not held out. A held-out '
                'score needs images outside training and validation.')
    if on_training_root and split in ('train', None):
        which = ('the training split' if split == 'train' else
                 'all the labelled images, the training split included')
        return (f'These are {which} of the training data '
                f"(test_dataloader's split={split!r}): the model learnt on "
                'them, so these figures are not held out.')
    return None


def outputs_table(runner: Runner, args: argparse.Namespace) -> str:
    """Where the run's outputs went: its log, the test PR curves the
    PRCurveHooks wrote, ``--out``'s masks and ``--show-dir``'s pictures."""
    rows = [('log', osp.join(runner.log_dir, f'{runner.timestamp}.log'))]
    rows += [('PR curve', path) for hook in runner.hooks
             if isinstance(hook, PRCurveHook)
             for path in hook.test_curve_paths]
    for name, folder in (('masks (--out)', args.out),
                         ('pictures (--show-dir)', args.show_dir)):
        if folder is not None:
            rows.append((name, folder))
    width = max(len(name) for name, _ in rows)
    lines = [f'  {name:<{width}}  {path}' for name, path in rows]
    return '\n'.join(['Outputs:'] + lines)


if __name__ == '__main__':
    # Under torchrun, the exception goes into the error file torchrun names
    # (TORCHELASTIC_ERROR_FILE): its failure summary then shows it, not
    # 'error_file: <N/A>' beside a peer's 'Connection closed by peer'.
    sys.exit(record(main)())
