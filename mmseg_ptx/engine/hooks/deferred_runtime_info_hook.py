"""RuntimeInfoHook that reads the train step's log values back in batches."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine.hooks import LoggerHook, RuntimeInfoHook
from mmengine.utils import apply_to
from mmseg.registry import HOOKS


@HOOKS.register_module()
class DeferredRuntimeInfoHook(RuntimeInfoHook):
    """mmengine's ``RuntimeInfoHook``, reading the train step's log values
    back from the GPU only where something reads them.

    ``RuntimeInfoHook`` puts every value of the train step's outputs (the
    losses, ``acc_seg``, ...) into the message hub after every iteration
    with ``.item()``. On a GPU each such read makes the host wait until the
    GPU has finished the step, so the host cannot queue the next step's
    work ahead and the GPU idles while the host loads the next batch and
    launches its first kernels. This hook keeps the values on the device
    and puts them into the message hub all at once, in the same order and
    with the same values (one copy per dtype): at every iteration where a
    ``LoggerHook`` logs, at least every ``interval`` iterations, at the
    end of each epoch and of training, before validation and before a
    checkpoint is saved (the message hub is part of it). Logged losses
    and metrics, visualizer scalars and checkpoints are therefore the same
    as with ``RuntimeInfoHook``; only a hook reading ``train/`` scalars
    from the message hub at other iterations sees them as of the last
    read-back. The logged ``time`` of an iteration becomes the host's
    time; the wait for the GPU lands on the iterations that read back, so
    its mean over the log window still gives the throughput.
    The values are read back late, so they must not be changed in place
    after the train step (mmengine's ``parse_losses`` makes new tensors).

    Everything else (learning rates, epoch and iteration counters,
    validation metrics) is ``RuntimeInfoHook``'s own. For the host not to
    wait at all, the data preprocessor should copy batches without
    blocking (``data_preprocessor=dict(non_blocking=True)``), and the loss
    should not read its values back (this project's ``DiceCELoss`` does
    not).

    Use it in a config in place of ``RuntimeInfoHook``::

        default_hooks = dict(
            runtime_info=dict(type='DeferredRuntimeInfoHook'))

    Args:
        interval (int): Read the values back at least every ``interval``
            train iterations, so that they do not pile up on the device
            when no ``LoggerHook`` reads them. Defaults to 50.
    """

    priority = 'VERY_HIGH'

    def __init__(self, interval: int = 50) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(
                f'interval must be an integer >= 1, got {interval!r}')
        self.interval = interval
        self._pending: List[Tuple[str, Any]] = []
        self._logger_intervals: List[int] = []

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._pending = []  # nothing left from a run that failed
        self._logger_intervals = [
            hook.interval for hook in runner.hooks
            if isinstance(hook, LoggerHook)
        ]

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        if outputs is not None:
            for key, value in outputs.items():
                if isinstance(value, torch.Tensor):
                    value = value.detach()  # no autograd graph kept alive
                self._pending.append((f'train/{key}', value))
        if (any(
                self.every_n_inner_iters(batch_idx, n)
                for n in self._logger_intervals + [self.interval])
                or self.end_of_epoch(runner.train_dataloader, batch_idx)
                or self.is_last_train_iter(runner)):
            self.flush(runner)

    def after_train_epoch(self, runner) -> None:
        self.flush(runner)

    def after_train(self, runner) -> None:
        self.flush(runner)
        super().after_train(runner)

    def before_val(self, runner) -> None:
        self.flush(runner)
        super().before_val(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._pending and 'message_hub' in checkpoint:
            self.flush(runner)
            # The runner serialised the message hub before calling this
            # hook; serialise it again, as it does.
            checkpoint['message_hub'] = apply_to(
                runner.message_hub.state_dict(),
                lambda x: hasattr(x, 'cpu'), lambda x: x.cpu())

    def flush(self, runner) -> None:
        """Put every pending value into the message hub, in the order the
        iterations produced them; device scalars are read back with one
        copy per device and dtype."""
        pending, self._pending = self._pending, []
        values = [value for _, value in pending]
        groups: Dict[Tuple[torch.device, torch.dtype],
                     List[int]] = defaultdict(list)
        for i, value in enumerate(values):
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                groups[(value.device, value.dtype)].append(i)
        for indices in groups.values():
            host = torch.stack([values[i].reshape(())
                                for i in indices]).tolist()
            for i, item in zip(indices, host):
                values[i] = item
        for (key, _), value in zip(pending, values):
            runner.message_hub.update_scalar(key, value)
