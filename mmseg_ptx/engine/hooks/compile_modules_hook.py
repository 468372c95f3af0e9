"""torch.compile of a segmentor's network modules."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

#: The parts of an mmseg EncoderDecoder that hold nearly all of its compute.
DEFAULT_MODULES = ('backbone', 'neck', 'decode_head', 'auxiliary_head')


def compile_modules(model: torch.nn.Module,
                    names: Sequence[str] = DEFAULT_MODULES,
                    **compile_kwargs: Any) -> list[str]:
    """Replace each named submodule's ``forward`` by its compiled version.

    mmengine's ``compile=True`` compiles the whole ``train_step`` instead:
    data preprocessor, losses and the optim wrapper's context included.
    With ``AmpOptimWrapper`` that fails on torch 2.11 (dynamo cannot trace
    mmengine's version check inside ``autocast``), and the Python-side data
    samples are of no use to the compiler anyway. The network modules are
    where the kernels are. ``forward`` is compiled rather than the module,
    because mmseg's heads are called through ``loss()``/``predict()``,
    which call ``self.forward`` directly.

    Args:
        model (torch.nn.Module): The segmentor (unwrapped from DDP).
        names (Sequence[str]): Attribute names of the submodules; missing
            or ``None`` ones are skipped.
        **compile_kwargs: Passed to :func:`torch.compile` (``mode``,
            ``dynamic``, ...).

    Returns:
        list[str]: The names that were compiled.
    """
    compiled = []
    for name in names:
        module = getattr(model, name, None)
        if module is None:
            continue
        module.forward = torch.compile(module.forward, **compile_kwargs)
        compiled.append(name)
    return compiled


@HOOKS.register_module()
class CompileModulesHook(Hook):
    """Compile the model's backbone, neck and heads before running.

    Add to a config as ``custom_hooks = [dict(type='CompileModulesHook')]``.
    The first iterations (and the first validation) are slow while the
    graphs compile.

    Args:
        modules (Sequence[str]): Submodules to compile. Defaults to
            backbone, neck, decode_head and auxiliary_head.
        **compile_kwargs: Passed to :func:`torch.compile`.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 modules: Sequence[str] = DEFAULT_MODULES,
                 **compile_kwargs: Any) -> None:
        self.modules = tuple(modules)
        self.compile_kwargs = compile_kwargs
        self._done = False

    def before_run(self, runner) -> None:
        if self._done:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        names = compile_modules(model, self.modules, **self.compile_kwargs)
        runner.logger.info(f'torch.compile: {", ".join(names)}')
        self._done = True
