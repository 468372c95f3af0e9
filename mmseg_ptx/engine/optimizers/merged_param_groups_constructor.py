"""An optimizer constructor that keeps one parameter group per setting."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn
from torch.optim import Optimizer


def merge_param_groups(groups: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Merge parameter groups whose options (``lr``, ``weight_decay``, ...)
    are all equal.

    Groups keep the order of their first member; parameters keep their
    order within a group.

    Args:
        groups (list[dict]): Groups as ``torch.optim`` takes them, each with
            a ``params`` list.

    Returns:
        list[dict]: One group per distinct set of options.
    """
    merged: Dict[Tuple, Dict[str, Any]] = {}
    for group in groups:
        options = {k: v for k, v in group.items() if k != 'params'}
        key = tuple(sorted((k, repr(v)) for k, v in options.items()))
        if key not in merged:
            merged[key] = dict(options, params=[])
        merged[key]['params'] += list(group['params'])
    return list(merged.values())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class MergedParamGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, with ``paramwise_cfg`` groups merged.

    With a ``paramwise_cfg`` (MMSeg's Swin configs set one: no weight decay
    on norms and position tables), mmengine's
    :class:`~mmengine.optim.DefaultOptimWrapperConstructor` gives every
    parameter a group of its own: 376 groups for UPerNet + Swin-B. The
    optimizer then runs its Python bookkeeping and launches its (fused)
    kernel once per group. In an H200 profile at batch 16 (2026-11-26,
    docs/performance.md) the optimizer step took 22 ms of the 155 ms of
    GPU time in a 165 ms train step, of which the fused AdamW kernels were
    6 ms. This constructor builds the same per-parameter settings and then
    merges the groups with equal settings (two for Swin-B: with and
    without weight decay), so each update is one kernel launch per group.
    Every parameter gets the same learning rate, weight decay and update
    as before, and LR schedulers scale every group as before.

    An optimizer state saved with one group per parameter (by the default
    constructor) is merged the same way when it is loaded, so such runs
    resume too; with different base learning rates (``lr_mult``), only
    under LR schedulers that do not use their saved base values (a
    warning says which do). mmengine logs three lines per parameter while
    it builds the groups (about 1,100 for Swin-B); they are logged only at
    DEBUG level, and one line per merged group at INFO.

    Use it in a config::

        optim_wrapper = dict(
            constructor='MergedParamGroupsOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01),
            paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))

    It takes the default constructor's arguments (``optim_wrapper_cfg``,
    ``paramwise_cfg``).
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        optim_wrapper = super().__call__(model)
        optim_wrapper.optimizer.register_load_state_dict_pre_hook(
            _merge_saved_groups)
        return optim_wrapper

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   is_dcn_module: Optional[int] = None) -> None:
        """Add the module's parameter groups to ``params``, merged.

        mmengine's ``add_params`` recurses through ``self.add_params``:
        only the outermost call (empty ``prefix``) merges, once every
        parameter has its group.
        """
        if prefix:
            super().add_params(params, module, prefix, is_dcn_module)
            return
        groups: List[dict] = []
        logger = MMLogger.get_current_instance()
        level = logger.level
        # MMLogger filters in its handlers (the Runner's logger itself is
        # NOTSET): keep mmengine's lines where one of them shows DEBUG.
        if not any(h.level <= logging.DEBUG for h in logger.handlers):
            logger.setLevel(logging.WARNING)
        try:
            super().add_params(groups, module, prefix, is_dcn_module)
        finally:
            logger.setLevel(level)
        merged = merge_param_groups(groups)
        # Groups without an option of their own use the optimizer's.
        defaults = dict(lr=self.base_lr, weight_decay=self.base_wd)
        for i, group in enumerate(merged):
            options = {k: v for k, v in defaults.items() if v is not None}
            options.update((k, v) for k, v in group.items() if k != 'params')
            logger.info(f'param group {i}: {len(group["params"])} '
                        'parameters, ' +
                        ', '.join(f'{k}={v}' for k, v in options.items()))
        params += merged


def _merge_saved_groups(optimizer: Optimizer,
                        state_dict: Dict[str, Any]) -> Dict[str, Any]:
    """``load_state_dict`` pre-hook: a state saved with one group per
    parameter gets its groups merged like the optimizer's own.

    Saved groups list parameter indices in model order, and groups of one
    setting hold equal options (learning rates included: the scheduler
    scales them alike), so merging them gives the optimizer's layout. A
    state that still does not fit is left to torch's own error.
    """
    saved = state_dict['param_groups']
    if len(saved) > len(optimizer.param_groups):
        merged = merge_param_groups(saved)
        if len(merged) == len(optimizer.param_groups):
            state_dict = dict(state_dict, param_groups=merged)
            _warn_of_scheduler_base_values(len(saved), merged)
    return state_dict


def _warn_of_scheduler_base_values(saved: int,
                                   merged: List[Dict[str, Any]]) -> None:
    """The LR schedulers' saved states keep one base value per saved group
    (mmengine restores them as they are), so after merging, group ``i``
    takes the base value of saved group ``i``. That is only right where the
    merged groups start from one learning rate; otherwise say which
    schedulers go wrong."""
    base_lrs = {g['initial_lr'] for g in merged if 'initial_lr' in g}
    if len(base_lrs) > 1:
        MMLogger.get_current_instance().warning(
            f'An optimizer state of {saved} parameter groups was merged '
            f'into {len(merged)}, which start from different learning '
            f'rates ({", ".join(map(str, sorted(base_lrs)))}). The LR '
            "schedulers' saved base values (one per saved group) are not "
            'merged: CosineAnnealingLR with eta_min_ratio or past T_max, '
            'and CosineRestartLR, would resume with the wrong ones '
            '(LinearLR, PolyLR and CosineAnnealingLR with eta_min are '
            'unaffected). For those, resume this run with the default '
            'optimizer wrapper constructor.')
