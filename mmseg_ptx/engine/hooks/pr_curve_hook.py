"""Write PR curves and a metrics history after validation and test."""
from __future__ import annotations

import bisect
import logging
import os
import os.path as osp
import shutil
import time
from typing import Any, Dict, List, Optional, Tuple

from mmengine.dist import broadcast_object_list, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from mmseg.models.segmentors import SegTTAModel
from mmseg.registry import HOOKS
from mmseg_ptx.evaluation.metrics import PneumothoraxMetric, PRCurve
from mmseg_ptx.reporting import plot_pr_curve
from mmseg_ptx.reporting.history import curve_tag
from mmseg_ptx.reporting.json_io import read_json, write_json

__all__ = ['PRCurveHook']

# Training scalars worth keeping next to the validation numbers.
_TRAIN_KEYWORDS = ('loss', 'dice', 'iou', 'acc')


def _loop_step(runner) -> Optional[Tuple[str, int]]:
    """``('epoch', runner.epoch)`` for mmengine's epoch-based train loop,
    ``('iter', runner.iter)`` for its iteration-based one: the unit the
    loop validates by and where it stands; None for other loops (or none
    built)."""
    loop = getattr(runner, '_train_loop', None)
    if isinstance(loop, EpochBasedTrainLoop):
        return 'epoch', runner.epoch
    if isinstance(loop, IterBasedTrainLoop):
        return 'iter', runner.iter
    return None


def _validation_due(runner) -> bool:
    """Whether mmengine's train loop validates where ``runner`` stands
    (after ``runner.epoch`` epochs, or ``runner.iter`` iterations)."""
    step = _loop_step(runner)
    if getattr(runner, '_val_loop', None) is None or step is None:
        return False
    unit, done = step
    loop = runner._train_loop
    last = loop.max_epochs if unit == 'epoch' else loop.max_iters
    # The interval the loop would have used there (dynamic_intervals), as
    # its _decide_current_val_interval picks it.
    interval = loop.dynamic_intervals[
        bisect.bisect(loop.dynamic_milestones, done + 1) - 1]
    return done >= loop.val_begin and (done % interval == 0 or done == last)


def _progress(runner) -> tuple:
    """(epoch, iter) of the training loop, or (None, None) outside
    training: a loop not built (its config, a dict; ``runner.epoch`` would
    build it and its dataset) or none at all (a config without
    ``train_cfg``, whose ``runner.epoch`` is 0), as mmengine's
    ``LogProcessor`` tells them."""
    loop = getattr(runner, '_train_loop', None)
    if loop is None or isinstance(loop, dict):
        return None, None
    return runner.epoch, runner.iter


@HOOKS.register_module()
class PRCurveHook(Hook):
    """Save the PneumothoraxMetric PR curve and a per-epoch metrics history.

    On the main process, after every validation epoch of a training run it
    writes ``pr_curves/val_epoch_XXX.{png,json}`` (``val_iter_XXXXXX`` for
    iteration-based training) plus a copy as ``val_latest.{png,json}``,
    and appends the epoch's metrics to ``metrics_history.json``. A
    validation by a runner that has neither trained nor resumed (the
    train loop is not built) writes ``pr_curves/val.{png,json}`` only: the
    latest curve and the history stay the training run's. The history is
    a list of dicts with ``mode``, ``epoch``, ``iter``, the validation
    metrics under their evaluator names and the rank-0 training scalars
    whose name contains loss/dice/iou/acc (``train/<name>``, averaged over
    the iterations since the previous entry or since training started or
    resumed; ``train_from_epoch`` and ``train_from_iter`` are that
    window's first epoch and iteration). After a test epoch it
    writes ``pr_curves/test.{png,json}``. The JSON curve is thinned to
    about ``max_points`` points; its summary numbers come from the full
    curve.

    The history is the current run's: when training starts, records past
    the iteration it starts from (a new run in a used work dir, or a run
    resumed from an earlier checkpoint) are moved with the old file to
    ``metrics_history.<time of its last write>.json``.

    mmengine's ``CheckpointHook`` saves an epoch's checkpoint before that
    epoch is validated, so a job killed during the validation resumes
    after it, and the epoch would never be validated (a gap in the
    history, and a best checkpoint never considered). A resumed run whose
    history lacks the validation due at its starting point validates it
    first (before its first training epoch, or when training ends if none
    is left).

    Args:
        out_dir (str, optional): Root of the outputs. Defaults to None
            (the runner's ``work_dir``).
        plot (bool): Write the PNG plots. Defaults to True.
        max_points (int, optional): Curve points kept in the JSON files;
            None keeps all (up to ``num_bins`` of the metric). Defaults to
            2000.
    """

    priority = 'LOW'

    def __init__(self,
                 out_dir: Optional[str] = None,
                 plot: bool = True,
                 max_points: Optional[int] = 2000) -> None:
        # Checked now, not after the first epoch of training.
        if out_dir is not None and osp.exists(out_dir) \
                and not osp.isdir(out_dir):
            raise ValueError(f'PRCurveHook out_dir {out_dir} is a file; '
                             'give a folder')
        if max_points is not None and (not isinstance(max_points, int)
                                       or max_points < 1):
            raise ValueError('PRCurveHook max_points must be None (all) or '
                             f'a positive integer, got {max_points!r}')
        self.out_dir = out_dir
        self.plot = plot
        self.max_points = max_points
        self._prev_iter = 0
        self._prev_epoch = 0
        # A resumed run's missing validation, to run before training on.
        self._validate_first = False
        # The last validation's record, not yet written (_write_history).
        self._pending: Optional[dict] = None
        #: The files of the last test's curves (the main process's).
        self.test_curve_paths: List[str] = []

    def _root(self, runner) -> str:
        return self.out_dir if self.out_dir is not None else runner.work_dir

    def _history_path(self, runner) -> str:
        return osp.join(self._root(runner), 'metrics_history.json')

    def before_train(self, runner) -> None:
        """Start the history where training starts.

        Args:
            runner (Runner): The runner, after loading or resuming.
        """
        # A resumed run's message hub holds the buffers of every earlier
        # iteration: average the first record over this run's only.
        self._prev_iter = runner.iter
        self._prev_epoch = runner.epoch
        path = self._history_path(runner)
        missing, error = False, None
        if is_main_process() and osp.exists(path):
            try:
                missing = self._resume_history(runner, path)
            except Exception as err:  # noqa: BLE001  (raised again below)
                error = err
        # Every process validates, or none; every one stops on rank 0's
        # error (the others would wait for it at the next collective).
        flag = [missing, None if error is None else str(error)]
        broadcast_object_list(flag)
        if error is not None:
            raise error
        if flag[1] is not None:
            raise RuntimeError(f'The metrics history {path} could not be '
                               'read on another process (its error says '
                               'why); this one stops too')
        self._validate_first = flag[0]

    def _resume_history(self, runner, path: str) -> bool:
        """Keep the history up to where ``runner`` starts; whether it
        misses the validation due there (a run stopped in it)."""
        keep = self._keep_history_to(runner, path)
        # An epoch loop's validation is the epoch's (a checkpoint saved by
        # iteration may resume inside the next epoch).
        key, step = _loop_step(runner) or ('iter', runner.iter)
        missing = runner.iter > 0 and _validation_due(runner) and not any(
            h.get('mode') == 'val' and h.get(key) == step for h in keep)
        if missing and keep:
            # The resumed message hub holds the training scalars since the
            # last record: the validation's record gets them.
            self._prev_iter = keep[-1]['iter']
            self._prev_epoch = keep[-1].get('epoch') or 0
        return missing

    def before_train_epoch(self, runner) -> None:
        """Validate what a resumed run's history misses (see above).

        Args:
            runner (Runner): The runner.
        """
        if self._validate_first:
            self._validate_missing(runner)

    def after_train(self, runner) -> None:
        """Validate what a run resumed at its end misses (no epoch ran).

        Args:
            runner (Runner): The runner.
        """
        if self._validate_first:
            self._validate_missing(runner)

    def _validate_missing(self, runner) -> None:
        self._validate_first = False
        key, step = _loop_step(runner)
        unit = 'epoch' if key == 'epoch' else 'iteration'
        print_log(
            f'Validating {unit} {step} now: the run was stopped during its '
            'validation, or while it saved that validation\'s checkpoints '
            '(the checkpoint this run resumed from is saved first), so the '
            'metrics history has no record of it',
            logger='current',
            level=logging.WARNING)
        runner.val_loop.run()

    def _keep_history_to(self, runner, path: str) -> List[dict]:
        """The records of ``path`` up to where ``runner`` starts; later
        ones are moved aside with the old file."""
        history = self._load_history(path)
        keep = [
            h for h in history if isinstance(h.get('iter'), int)
            and 0 < h['iter'] <= runner.iter
        ]
        if len(keep) == len(history):
            return keep
        stamp = time.strftime('%Y%m%d_%H%M%S',
                              time.localtime(osp.getmtime(path)))
        backup = osp.join(osp.dirname(path), f'metrics_history.{stamp}.json')
        count = 1
        while osp.exists(backup):  # never replace an earlier backup
            count += 1
            backup = osp.join(osp.dirname(path),
                              f'metrics_history.{stamp}_{count}.json')
        os.replace(path, backup)
        if keep:
            write_json(keep, path)
        print_log(
            f'{path} held {len(history) - len(keep)} record(s) past '
            f'iteration {runner.iter}, where this run starts (of another '
            'run, or of a stopped attempt at this one); the old file is now '
            f'{backup}',
            logger='current',
            level=logging.WARNING)
        return keep

    @staticmethod
    def _load_history(path: str) -> List[dict]:
        try:
            history = read_json(path)
        except ValueError as err:
            raise ValueError(f'{err}; move it away to start a new '
                             'history') from None
        if not isinstance(history, list) or not all(
                isinstance(record, dict) for record in history):
            found = type(history).__name__ if not isinstance(
                history, list) else 'a list holding other values'
            raise ValueError(f'{path}: expected a JSON list of metric '
                             f'records (objects), found {found}; move it '
                             'away to start a new history')
        return history

    @staticmethod
    def _metrics_of(evaluator) -> List[PneumothoraxMetric]:
        return [
            m for m in getattr(evaluator, 'metrics', [])
            if isinstance(m, PneumothoraxMetric) and m.last_curve is not None
        ]

    def _write_curve(self, curve: PRCurve, curve_dir: str, stem: str,
                     title: str, extra: Dict[str, Any]) -> List[str]:
        os.makedirs(curve_dir, exist_ok=True)
        data = curve.to_dict(max_points=self.max_points)
        data.update(extra)
        paths = [osp.join(curve_dir, stem + '.json')]
        write_json(data, paths[0])
        if self.plot:
            paths.append(
                plot_pr_curve(curve, osp.join(curve_dir, stem + '.png'),
                              title=title))
        return paths

    def _save_curves(self, runner, evaluator, mode: str,
                     tag: Optional[str], latest: bool = False) -> List[str]:
        """Write each PneumothoraxMetric's curve; the files written."""
        written = []
        curve_dir = osp.join(self._root(runner), 'pr_curves')
        epoch, iteration = _progress(runner)
        extra = dict(mode=mode, epoch=epoch, iter=iteration)
        for metric in self._metrics_of(evaluator):
            # Several metrics of this type need their prefixes to differ.
            base = mode if not metric.prefix else f'{mode}_{metric.prefix}'
            stem = base if tag is None else f'{base}_{tag}'
            title = f'Pixel PR curve ({mode}' + (f', {tag})' if tag else ')')
            paths = self._write_curve(metric.last_curve, curve_dir, stem,
                                      title, extra)
            written += paths
            if latest:
                for path in paths:
                    ext = osp.splitext(path)[1]
                    shutil.copyfile(
                        path, osp.join(curve_dir, f'{base}_latest{ext}'))
        return written

    def _train_scalars(self, runner) -> Dict[str, float]:
        hub = getattr(runner, 'message_hub', None)
        _, iteration = _progress(runner)
        if hub is None or iteration is None:
            return {}
        window = iteration - self._prev_iter
        if window <= 0:  # no training since the previous record
            return {}
        out = {}
        for key, buffer in hub.log_scalars.items():
            name = key[len('train/'):] if key.startswith('train/') else None
            if name is None or not any(w in name for w in _TRAIN_KEYWORDS):
                continue
            if len(buffer.data[0]) == 0:
                continue
            out[key] = float(buffer.mean(window))
        return out

    def _append_history(self, runner, metrics: Dict[str, Any]) -> None:
        """Make this validation's record, written by :meth:`_write_history`
        once the checkpoint hooks have run."""
        epoch, iteration = _progress(runner)
        entry = dict(mode='val', epoch=epoch, iter=iteration)
        entry.update(metrics or {})
        scalars = self._train_scalars(runner)
        if scalars:
            # The window the training scalars are averaged over: since the
            # previous validation, or since training (re)started.
            entry.update(train_from_epoch=self._prev_epoch + 1,
                         train_from_iter=self._prev_iter + 1)
        entry.update(scalars)
        self._pending = entry
        self._prev_iter = iteration or 0
        self._prev_epoch = epoch or 0

    def _write_history(self, runner) -> None:
        """Write the record of the last validation, if not yet written.

        Not in ``after_val_epoch``: mmengine's CheckpointHook (VERY_LOW,
        after this hook) then removes the previous best checkpoint and
        saves the new one. A run stopped in between would have the record,
        so its resume would not validate that step again, and the best
        checkpoint would be lost. Written in ``after_val``, which comes
        after every hook's ``after_val_epoch``, a record means its
        checkpoints were saved; without it the resumed run validates the
        step again (:meth:`before_train`).
        """
        entry, self._pending = self._pending, None
        if entry is None:  # none, or not the main process (it makes them)
            return
        os.makedirs(self._root(runner), exist_ok=True)
        path = self._history_path(runner)
        history = self._load_history(path) if osp.exists(path) else []
        # A resumed run, or a runner.val() after training, validates an
        # epoch again: keep the newest validation, and the training
        # scalars of the record it replaces when no training came between.
        same = ('val', entry['epoch'], entry['iter'])
        for record in history:
            if (record.get('mode'), record.get('epoch'),
                    record.get('iter')) == same and (
                        'train_from_iter' not in entry):
                entry.update((k, v) for k, v in record.items()
                             if k.startswith('train'))
        history = [
            h for h in history
            if (h.get('mode'), h.get('epoch'), h.get('iter')) != same
        ]
        history.append(entry)
        write_json(history, path)

    def after_val_epoch(self,
                        runner,
                        metrics: Optional[Dict[str, float]] = None) -> None:
        """Write the validation curve and append to the metrics history.

        Args:
            runner (Runner): The runner.
            metrics (dict, optional): Validation metrics of this epoch.
        """
        if not is_main_process():
            return
        epoch, iteration = _progress(runner)
        training = iteration is not None
        self._save_curves(runner, runner.val_evaluator, 'val',
                          curve_tag(epoch, iteration), latest=training)
        if training:
            self._append_history(runner, metrics)

    def after_val(self, runner) -> None:
        """Write the validation's record, now that the checkpoint hooks
        have saved its checkpoints (see :meth:`_write_history`).

        Args:
            runner (Runner): The runner.
        """
        self._write_history(runner)

    def before_test(self, runner) -> None:
        """Warn where MMSeg's ``SegTTAModel`` tests (MMSeg's
        ``tools/test.py --tta`` with its ``default_runtime.py``): the
        scores it returns, which the curve is drawn from, are the last
        view's alone.

        Args:
            runner (Runner): The runner.
        """
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        if type(model) is SegTTAModel and is_main_process():
            print_log(
                "PRCurveHook: the model is MMSeg's SegTTAModel, whose "
                "seg_logits are the last augmented view's: the test curve "
                'and the PneumothoraxMetric scores are that view\'s, not the '
                "TTA's; use tta_model=dict(type='SegTTAModelWithLogits')",
                logger='current', level=logging.WARNING)

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        """Write the test curve.

        Args:
            runner (Runner): The runner.
            metrics (dict, optional): Test metrics (unused).
        """
        if not is_main_process():
            return
        self.test_curve_paths = self._save_curves(
            runner, runner.test_evaluator, 'test', None)
