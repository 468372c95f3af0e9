"""Write the performance report when training ends."""
from __future__ import annotations

from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from mmseg_ptx.reporting.summary import (NoValidationRecords,
                                         write_performance_summary)


@HOOKS.register_module()
class PerformanceReportHook(Hook):
    """Run ``tools/summarize.py``'s report at the end of training.

    On the main process, after the last epoch, writes
    ``PERFORMANCE_SUMMARY.md``, ``precision_recall_curve.png``,
    ``detailed_metrics.png`` and ``images/`` into the work dir (it needs
    PRCurveHook's ``metrics_history.json``). The other ranks go on. A run
    without validation records (validation off, or no finite Dice) gets a
    warning instead of a report, and a report that fails an error in the
    log (with ``tools/summarize.py`` to retry): the trained run does not
    fail for it.

    Args:
        images (bool): Render prediction pictures with the best
            checkpoint. Defaults to True.
        num_pos (int): Pictures of the positive validation images with the
            best per-image Dice (the report's best cases, not a sample).
            Defaults to 5.
        num_neg (int): Pictures of the first negative validation images,
            in split order. Defaults to 2.
        max_images (int, optional): Validation images scanned to pick the
            cases. Defaults to None (all).
    """

    priority = 'VERY_LOW'

    def __init__(self,
                 images: bool = True,
                 num_pos: int = 5,
                 num_neg: int = 2,
                 max_images: Optional[int] = None) -> None:
        # As tools/summarize.py's options: a negative count would slice
        # the cases from the end.
        if num_pos < 0 or num_neg < 0:
            raise ValueError('PerformanceReportHook num_pos and num_neg must '
                             f'be >= 0, got {num_pos} and {num_neg}')
        if max_images is not None and max_images < 1:
            raise ValueError('PerformanceReportHook max_images must be None '
                             f'or >= 1, got {max_images}')
        self.images = images
        self.num_pos = num_pos
        self.num_neg = num_neg
        self.max_images = max_images

    def after_train(self, runner) -> None:
        if not is_main_process():
            return
        device = next(runner.model.parameters()).device
        try:
            path = write_performance_summary(
                runner.work_dir,
                config=runner.cfg,
                images=self.images,
                num_pos=self.num_pos,
                num_neg=self.num_neg,
                max_images=self.max_images,
                device=str(device),
                world_size=runner.world_size)
        except NoValidationRecords as err:
            runner.logger.warning(f'No performance report: {err}')
            return
        except Exception as err:  # noqa: BLE001
            # The run is done and its checkpoints are written: a report
            # that fails must not fail it (nor skip the after_run hooks).
            runner.logger.exception(
                f'The performance report failed ({type(err).__name__}: '
                f'{err}); the run\'s checkpoints and logs are complete. '
                f'Retry with: python tools/summarize.py {runner.work_dir}')
            return
        runner.logger.info(f'Performance report written to {path}')
