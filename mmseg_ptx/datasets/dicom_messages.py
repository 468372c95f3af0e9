"""Keeping DICOM header values out of pydicom's warnings and log records.

pydicom quotes element values in its warnings and log records (``Invalid
value for VR UI: '...'``, ``Unknown encoding '...'``), and in a file with
a corrupt length a quoted value runs on into the elements after it: the
patient's name, ID and dates. Warnings and logs end up in training logs,
so while this package reads a file, pydicom's warnings are shown as
:class:`DicomReadWarning` naming the file with the quoted values withheld,
and its log records likewise (its debug records, which list elements, are
dropped).

Only the display of warnings is changed (``warnings.showwarning``), not the
filters: a user's filters apply as always (``ignore`` hides them, ``error``
raises them), and which warnings were already shown is kept, which
``warnings.catch_warnings`` would reset for the whole process on every
read. The hooks are installed by the outermost read and removed by the
last one to finish, across threads.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import warnings
from typing import Iterator, Union

import pydicom

__all__ = ['DicomReadWarning', 'redact', 'pydicom_values_withheld']

#: From the first quote on: pydicom quotes the values in its messages.
_QUOTED = re.compile(r"""['"].*""", re.DOTALL)
_PYDICOM_DIR = os.path.dirname(os.path.abspath(pydicom.__file__)) + os.sep
_LOGGER = logging.getLogger('pydicom')

_lock = threading.Lock()
_depth = 0
_shown_by = None  # the showwarning the outermost read replaced
_current = threading.local()  # the file this thread is reading


class DicomReadWarning(UserWarning):
    """A pydicom warning while a file was read, with the file's path and
    without the header values pydicom quoted."""


def redact(message: str) -> str:
    """A pydicom message's first line without the values it quotes.

    Args:
        message (str): The message.

    Returns:
        str: At most 200 characters, cut at the first quote.
    """
    first = message.splitlines()[0] if message else ''
    return _QUOTED.sub('<value withheld>', first)[:200]


def _where() -> str:
    path = getattr(_current, 'path', None)
    return f'DICOM file {path}' if path is not None else 'A DICOM file'


def _show(message, category, filename, lineno, file=None, line=None):
    if os.path.abspath(filename).startswith(_PYDICOM_DIR):
        message = f'{_where()}: {redact(str(message))}'
        category, line = DicomReadWarning, ''
    _shown_by(message, category, filename, lineno, file, line)


class _RedactRecords(logging.Filter):

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False  # debug mode logs every element with its value
        record.msg = f'{_where()}: {redact(record.getMessage())}'
        record.args = ()
        return True


_FILTER = _RedactRecords()


@contextlib.contextmanager
def pydicom_values_withheld(path: Union[str, os.PathLike]
                            ) -> Iterator[None]:
    """Read ``path`` with pydicom's warnings and log records redacted.

    Args:
        path (str | os.PathLike): The file being read, named in the
            redacted messages.
    """
    global _depth, _shown_by
    with _lock:
        if _depth == 0:
            _shown_by = warnings.showwarning
            warnings.showwarning = _show
            _LOGGER.addFilter(_FILTER)
        _depth += 1
    outer = getattr(_current, 'path', None)
    _current.path = path
    try:
        yield
    finally:
        _current.path = outer
        with _lock:
            _depth -= 1
            if _depth == 0:
                # Someone who replaced it meanwhile keeps theirs.
                if warnings.showwarning is _show:
                    warnings.showwarning = _shown_by
                _LOGGER.removeFilter(_FILTER)
