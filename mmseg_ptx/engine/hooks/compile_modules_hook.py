"""torch.compile of a segmentor's network modules."""
from __future__ import annotations

from types import MethodType
from typing import Any, Callable, Sequence

import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from mmseg_ptx.models.segmentors import segmentors_of

#: The parts of an mmseg EncoderDecoder that hold nearly all of its compute.
DEFAULT_MODULES = ('backbone', 'neck', 'decode_head', 'auxiliary_head')
#: The blocks of mmseg's Swin backbones (``SwinTransformerSDPA`` included),
#: for ``blocks``: what ``--compile-scope blocks`` compiles one by one.
SWIN_BLOCKS = ('SwinBlock', )


def compile_modules(model: torch.nn.Module,
                    names: Sequence[str] = DEFAULT_MODULES,
                    blocks: Sequence[str] = (),
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

    With ``blocks``, a named module that contains blocks of those classes
    (``'SwinBlock'``) gets each block compiled on its own and the glue
    between them (patch embedding, patch merging) runs eagerly: PyTorch's
    "regional compilation". In eval mode the blocks of one stage trace to
    the same graph, which Inductor compiles once and then takes from its
    cache, so the compile time grows with the number of distinct block
    shapes rather than with the depth (Swin-B: 8 graphs for 24 blocks). In
    training that holds for ``SwinTransformerSDPA``, whose stochastic depth
    is :class:`~mmseg_ptx.models.TensorDropPath`; mmseg's
    ``SwinTransformer`` gives every block its own drop probability as a
    Python float, a constant dynamo specialises on, so there each block
    compiles on its own. Shapes are static by default (``dynamic=False``):
    the stages' different shapes would otherwise make dynamo recompile the
    block with symbolic shapes, which takes minutes and gives slower
    kernels. Dynamo's recompile limit is raised to fit every block, mode
    and a few input sizes. A compiled block keeps torch's
    ``Module.compile`` binding to itself, so a deep copy of a model with
    compiled blocks would run the original blocks' weights: copy first,
    then compile (mmengine's ``EMAHook`` copies the model but never calls
    the copy; whole modules are compiled copy-safe).

    Args:
        model (torch.nn.Module): The segmentor (unwrapped from DDP).
        names (Sequence[str]): Attribute names of the submodules; missing
            or ``None`` ones are skipped.
        blocks (Sequence[str]): Class names of blocks to compile one by
            one inside the named modules. Defaults to none: each named
            module is compiled whole.
        **compile_kwargs: Passed to :func:`torch.compile` (``mode``,
            ``dynamic``, ...).

    Returns:
        list[str]: The compiled modules' names, blocks as dotted paths
        (``'backbone.stages.0.blocks.0'``).
    """
    compiled, num_blocks = [], 0
    if blocks:
        if not hasattr(torch.nn.Module, 'compile'):
            raise RuntimeError(
                'Compiling blocks needs torch >= 2.2 (nn.Module.compile), '
                f'this is torch {torch.__version__}: compile the whole '
                'modules instead (no blocks)')
        compile_kwargs.setdefault('dynamic', False)
    for name in names:
        module = getattr(model, name, None)
        if module is None:
            continue
        found = _find_blocks(module, tuple(blocks))
        if not found:
            module.forward = _compiled_forward(module, compile_kwargs)
            compiled.append(name)
            continue
        for path, block in found:
            # Blocks are called as modules (``block(x, hw_shape)``), so
            # Module.compile, which compiles the call, reaches them.
            block.compile(**compile_kwargs)
            compiled.append(f'{name}.{path}')
            num_blocks += 1
    if num_blocks:
        # All blocks share one compiled code object (Module._call_impl):
        # room for each block in train and eval mode at two input sizes.
        allow_recompiles(4 * num_blocks)
    return compiled


def allow_recompiles(graphs: int) -> None:
    """Let dynamo compile one code object into at least ``graphs``
    graphs (one per input shape, train/eval mode, module it runs for).

    Past its limit (8 by default) dynamo runs that code eagerly, with a
    warning only: the run goes on uncompiled.

    Args:
        graphs (int): The number of graphs to make room for; limits that
            are higher already stay.
    """
    config = torch._dynamo.config
    for name, before_2_6 in (('recompile_limit', 'cache_size_limit'),
                             ('accumulated_recompile_limit',
                              'accumulated_cache_size_limit')):
        # Renamed in torch 2.6, whose config module raises KeyError (not
        # AttributeError) for unknown names: no hasattr.
        for key in (name, before_2_6):
            try:
                current = getattr(config, key)
            except (AttributeError, KeyError):
                continue
            setattr(config, key, max(current, graphs))
            break


def _compiled_forward(module: torch.nn.Module,
                      compile_kwargs: dict) -> Callable:
    """``module.forward`` compiled, bound to ``module`` as a method.

    Compiling the bound ``module.forward`` would tie the compiled function
    to this module: ``copy.deepcopy`` keeps a function as it is, so a copy
    of the model (mmengine's ``EMAHook`` makes one) would run the original
    module's weights. A method deep-copies to one bound to the copy.
    """
    forward = module.forward
    if isinstance(forward, MethodType) and forward.__self__ is module:
        return MethodType(
            torch.compile(forward.__func__, **compile_kwargs), module)
    # A forward set on the instance (a plain function or callable object):
    # it holds its own references, and a copy holds the same ones.
    return torch.compile(forward, **compile_kwargs)


def _find_blocks(module: torch.nn.Module,
                 blocks: tuple) -> list[tuple[str, torch.nn.Module]]:
    """The outermost submodules whose class name is in ``blocks``."""
    found: list[tuple[str, torch.nn.Module]] = []
    for path, sub in module.named_modules():
        if type(sub).__name__ not in blocks or any(
                path.startswith(f'{outer}.') for outer, _ in found):
            continue
        found.append((path, sub))
    return found


@HOOKS.register_module()
class CompileModulesHook(Hook):
    """Compile the model's backbone, neck and heads before running.

    Add to a config as ``custom_hooks = [dict(type='CompileModulesHook')]``.
    The first iterations (and the first validation) are slow while the
    graphs compile. Under ``tools/test.py --tta`` or ``--extra-model`` the
    modules of every segmentor inside are compiled.

    Args:
        modules (Sequence[str]): Submodules to compile. Defaults to
            backbone, neck, decode_head and auxiliary_head.
        blocks (Sequence[str]): Class names of blocks compiled one by one
            instead of their module as a whole, e.g. ``['SwinBlock']``
            (see :func:`compile_modules`). Defaults to none.
        **compile_kwargs: Passed to :func:`torch.compile`.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 modules: Sequence[str] = DEFAULT_MODULES,
                 blocks: Sequence[str] = (),
                 **compile_kwargs: Any) -> None:
        self.modules = tuple(modules)
        self.blocks = tuple(blocks)
        self.compile_kwargs = compile_kwargs
        self._done = False

    def before_run(self, runner) -> None:
        if self._done:
            return
        # Every segmentor that runs: through DDP, a TTA model
        # (tools/test.py --tta) and ensemble members (--extra-model).
        # Other kinds of segmentors (mmseg's MultimodalEncoderDecoder, a
        # custom one) too: their own modules of those names.
        segmentors = segmentors_of(runner.model, strict=False)
        names = [
            name for model in segmentors for name in compile_modules(
                model, self.modules, self.blocks, **self.compile_kwargs)
        ]
        parts = list(dict.fromkeys(n for n in names if '.' not in n))
        num_blocks = sum('.' in n for n in names)
        if num_blocks:
            parts.append(f'{num_blocks} blocks')
        if not names:
            runner.logger.warning(
                'CompileModulesHook compiled nothing: the segmentor has '
                f'none of {list(self.modules)}')
        else:
            where = (f' in {len(segmentors)} segmentors'
                     if len(segmentors) > 1 else '')
            runner.logger.info(f'torch.compile{where}: {", ".join(parts)}')
        self._done = True
