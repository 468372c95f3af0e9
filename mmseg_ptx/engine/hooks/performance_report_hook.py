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
    warning instead of a report: the trained model is not lost to it.

    Args:
        images (bool): Render prediction pictures with the best
            checkpoint. Defaults to True.
        num_pos (int): Positive validation cases drawn. Defaults to 5.
        num_neg (int): Negative validation cases drawn. Defaults to 2.
        max_images (int, optional): Validation images scanned to pick the
            cases. Defaults to None (all).
    """

    priority = 'VERY_LOW'

    def __init__(self,
                 images: bool = True,
                 num_pos: int = 5,
                 num_neg: int = 2,
                 max_images: Optional[int] = None) -> None:
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
        runner.logger.info(f'Performance report written to {path}')
