"""Which test pipeline a config gives its model, and where its pipelines
disagree.

mmengine resolves a config variable where the file uses it: a child config
that redefines ``test_pipeline`` (or a ``crop_size`` the base's pipelines
used) leaves the data loaders and ``tta_pipeline`` at the base's. The tools
then disagree silently: ``tools/test.py`` runs ``test_dataloader``'s
pipeline (``tta_pipeline`` with ``--tta``), ``tools/tune_postprocess.py``
``val_dataloader``'s, ``tools/infer.py`` the test one with its own flips.
The functions here name such differences so that the tools can warn.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence

from mmengine.config import Config

from .cli import config_type_name

__all__ = [
    'ANNOTATION_LOADERS', 'config_test_pipeline', 'pipeline_difference',
    'pipeline_mismatch', 'tta_pipeline_difference'
]

# Test pipelines load the ground truth for evaluation; inference has none.
ANNOTATION_LOADERS = ('LoadRLEAnnotations', 'LoadBinaryMaskFromFile',
                      'LoadAnnotations')


def _dataset_pipeline(cfg: Config, loader: str) -> Optional[List[dict]]:
    dataset = (cfg.get(loader) or {}).get('dataset') or {}
    pipeline = dataset.get('pipeline')
    return None if pipeline is None else list(pipeline)


def config_test_pipeline(cfg: Config) -> Optional[List[dict]]:
    """The test pipeline a config gives its model: its test set's (what
    ``tools/test.py`` runs), else its ``test_pipeline`` (a model config
    without a test set).

    Args:
        cfg (Config): A config.

    Returns:
        list[dict], optional: The pipeline; None where the config has
        neither (a wrapped data set keeps its pipelines inside).
    """
    pipeline = _dataset_pipeline(cfg, 'test_dataloader')
    if pipeline is None and cfg.get('test_pipeline') is not None:
        pipeline = list(cfg.test_pipeline)
    return pipeline


def _comparable(value: Any) -> Any:
    """A pipeline step as plain dicts and lists, its types unscoped."""
    if isinstance(value, Mapping):
        return {
            key: config_type_name(value) if key == 'type' else
            _comparable(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_comparable(item) for item in value]
    return value


def pipeline_difference(first: Sequence[dict],
                        other: Sequence[dict]) -> Optional[str]:
    """The first step where two test pipelines give the model a different
    input, in words.

    Ground-truth loading is left out: it changes the labels a metric reads,
    not what a model sees. Scoped type names (``mmseg.Resize``) and tuples
    against lists are no difference.

    Args:
        first (Sequence[dict]): One pipeline.
        other (Sequence[dict]): The other.

    Returns:
        str | None: ``'step N: <other> instead of <first>'``, or None where
        the pipelines give the same input.
    """
    first, other = ([
        _comparable(step) for step in steps
        if config_type_name(step) not in ANNOTATION_LOADERS
    ] for steps in (first, other))
    for step, (a, b) in enumerate(zip(first, other)):
        if a != b:
            return f'step {step}: {b} instead of {a}'
    if len(first) != len(other):
        return f'{len(other)} steps instead of {len(first)}'
    return None


def pipeline_mismatch(cfg: Config) -> Optional[str]:
    """A warning where a config's ``test_pipeline``, validation pipeline
    and test pipeline would give the model different inputs, else None.

    Args:
        cfg (Config): A config.

    Returns:
        str, optional: The warning, naming the first differing step of
        each pair that differs.
    """
    test = _dataset_pipeline(cfg, 'test_dataloader')
    if test is None:
        return None
    notes = []
    variable = cfg.get('test_pipeline')
    difference = (pipeline_difference(test, variable)
                  if variable is not None else None)
    if difference:
        notes.append(
            "the config's test_pipeline differs from test_dataloader's "
            f'pipeline ({difference}), which every tool runs: a config '
            'that sets test_pipeline must set val_dataloader and '
            'test_dataloader to it again')
    val = _dataset_pipeline(cfg, 'val_dataloader')
    difference = (pipeline_difference(test, val)
                  if val is not None else None)
    if difference:
        notes.append(
            "val_dataloader's pipeline differs from test_dataloader's "
            f'({difference}): tools/tune_postprocess.py tunes through the '
            'former, tools/test.py and tools/infer.py predict through the '
            'latter')
    return '; '.join(notes) or None


def tta_pipeline_difference(cfg: Config) -> Optional[str]:
    """Where ``tta_pipeline`` (what ``tools/test.py --tta`` runs), its
    flips left out, gives the model another input than the test pipeline
    (what ``tools/infer.py`` and ``tools/tune_postprocess.py --tta`` flip).

    Args:
        cfg (Config): A config with a ``tta_pipeline``.

    Returns:
        str, optional: The first difference in words (a ``TestTimeAug``
        step with several choices other than flips, such as scales, is
        one); None where they agree or either is missing.
    """
    test, tta = config_test_pipeline(cfg), cfg.get('tta_pipeline')
    if test is None or tta is None:
        return None
    steps = []
    for step in tta:
        if config_type_name(step) != 'TestTimeAug':
            steps.append(step)
            continue
        for choices in step.get('transforms', []):
            names = [config_type_name(choice) for choice in choices]
            if set(names) == {'RandomFlip'}:
                continue
            if len(choices) != 1:
                return (f'TestTimeAug has {len(choices)} choices of '
                        f'{", ".join(names)}')
            steps.append(choices[0])
    return pipeline_difference(test, steps)
