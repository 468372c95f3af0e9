"""Strict JSON files for the hooks and tools."""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from mmseg_ptx.utils.atomic_write import write_atomically

__all__ = ['read_json', 'to_jsonable', 'write_json']


def read_json(path: str) -> Any:
    """Read a JSON file; a malformed one is an error naming it.

    Args:
        path (str): The file.

    Returns:
        Any: Its content.

    Raises:
        ValueError: The file is not valid (UTF-8) JSON.
    """
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f'{path} is not valid JSON: {err}') from None


def to_jsonable(value: Any) -> Any:
    """Python scalars for JSON; NaN and infinities become ``null``.

    Metrics are NaN where they are undefined (e.g. the Dice of the
    positive images of an all-negative subset); ``json.dump`` would write
    a bare ``NaN``, which strict JSON readers reject.

    Args:
        value (Any): Nested dicts, lists, tuples, NumPy arrays, numbers
            (Python, NumPy or 0-d tensors) and strings.

    Returns:
        Any: The same structure with plain Python values.
    """
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray) and value.ndim:
        return to_jsonable(value.tolist())
    if hasattr(value, 'item') and np.ndim(value) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(obj: Any, path: str, indent: int = 1) -> None:
    """Write ``obj`` as strict JSON (see :func:`to_jsonable`).

    Written whole or not at all (:func:`~mmseg_ptx.utils.write_atomically`),
    so a crash never leaves half a file in place of a good one.

    Args:
        obj (Any): What to write.
        path (str): The file.
        indent (int): JSON indentation. Defaults to 1.
    """
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)
    write_atomically(path, (text + '\n').encode('utf-8'))
