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
    'pipeline_mismatch', 'val_pipeline_difference', 'tta_pipeline_difference'
]

# Test pipelines load the ground truth for evaluation; inference has none.
ANNOTATION_LOADERS = ('LoadRLEAnnotations', 'LoadBinaryMaskFromFile',
                      'LoadAnnotations')


def _pipeline_inside(dataset: Mapping) -> Optional[List[dict]]:
    """A data set config's pipeline; a wrapper's (``RepeatDataset``,
    ``ClassBalancedDataset``) is its data set's, a ``ConcatDataset``'s that
    of its members where they share one. None where there is none."""
    if dataset.get('pipeline') is not None:
        return list(dataset['pipeline'])
    if dataset.get('dataset') is not None:
        return _pipeline_inside(dataset['dataset'])
    members = [_pipeline_inside(d) for d in dataset.get('datasets') or []]
    if members and all(m is not None and pipeline_difference(members[0], m)
                       is None for m in members):
        return members[0]
    return None


def _dataset_pipeline(cfg: Config, loader: str) -> Optional[List[dict]]:
    return _pipeline_inside((cfg.get(loader) or {}).get('dataset') or {})


def config_test_pipeline(cfg: Config) -> Optional[List[dict]]:
    """The test pipeline a config gives its model: its test set's (what
    ``tools/test.py`` runs; inside a data set wrapper, or the one the
    members of a ``ConcatDataset`` share), else its ``test_pipeline`` (a
    model config without a test set).

    Args:
        cfg (Config): A config.

    Returns:
        list[dict], optional: The pipeline; None where the config has
        neither.
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
    """A warning where a config's ``test_pipeline`` would give the model
    another input than its test set's pipeline, which the tools run, else
    None.

    Which of the two the config's author meant cannot be told: a child
    config that redefined only ``test_pipeline`` left the data loaders at
    the base's (mmengine resolved the variable in the base file); one that
    set the test set's pipeline left ``test_pipeline`` unused.

    Args:
        cfg (Config): A config.

    Returns:
        str, optional: The warning, naming the first differing step.
    """
    test = _dataset_pipeline(cfg, 'test_dataloader')
    variable = cfg.get('test_pipeline')
    if test is None or variable is None:
        return None
    difference = pipeline_difference(test, variable)
    if difference is None:
        return None
    return ("the tools run test_dataloader's pipeline, which differs from "
            f"the config's test_pipeline ({difference}): where "
            'test_pipeline was changed, set val_dataloader and '
            'test_dataloader to it as well')


def val_pipeline_difference(cfg: Config) -> Optional[str]:
    """Where the validation set's pipeline (what
    ``tools/tune_postprocess.py`` tunes through) gives the model another
    input than the test set's (what ``tools/test.py`` and
    ``tools/infer.py`` predict through).

    Args:
        cfg (Config): A config.

    Returns:
        str, optional: The first difference in words; None where they
        agree or either is missing.
    """
    test = _dataset_pipeline(cfg, 'test_dataloader')
    val = _dataset_pipeline(cfg, 'val_dataloader')
    if test is None or val is None:
        return None
    return pipeline_difference(test, val)


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
