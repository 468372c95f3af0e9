"""Keeping DICOM header values out of pydicom's warnings and log records.

pydicom quotes element values in its warnings and log records (``Invalid
value for VR UI: '...'``, ``Unknown encoding '...'``), and in a file with
a corrupt length a quoted value runs on into the elements after it: the
patient's name, ID and dates. Warnings and logs end up in training logs,
so while this package reads a file, pydicom's warnings are shown as
:class:`DicomReadWarning` naming the file with the quoted values withheld,
and its log records likewise, its child loggers' included (its debug
records, which list elements, are dropped, and tracebacks are left out of
the records).

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

__all__ = [
    'DicomReadWarning', 'redact', 'redact_lines', 'pydicom_values_withheld'
]

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


def redact_lines(message: str, limit: int = 600) -> str:
    """The lines of a pydicom message without the values it quotes.

    For messages whose later lines say what went wrong, such as a pixel
    decoder's list of plugins and the packages they miss, and only where
    what the message quotes is known not to be header bytes (a registered
    transfer syntax's name): a value of a corrupt length runs on into the
    header's following elements, line breaks and quotes included. Each
    line is cut at its first quote; after a line with an unclosed quote
    nothing more is kept.

    Args:
        message (str): The message.
        limit (int): The most characters returned. Defaults to 600.

    Returns:
        str: The lines kept, joined by ``'; '``.
    """
    kept = []
    for line in message.splitlines():
        kept.append(_QUOTED.sub('<value withheld>', line).strip())
        if (line.count("'") + line.count('"')) % 2:
            break
    joined = '; '.join(line for line in kept if line)
    # 'raised by all available plugins:; pillow: ...' reads better without
    # the separator after a colon.
    return joined.replace(':; ', ': ')[:limit]


class _RedactRecords(logging.Filter):

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False  # debug mode logs every element with its value
        record.msg = f'{_where()}: {redact(record.getMessage())}'
        record.args = ()
        # A traceback's exception message may quote values too.
        record.exc_info = record.exc_text = record.stack_info = None
        return True


_FILTER = _RedactRecords()
_filtered: list = []  # the loggers _FILTER was added to


def _pydicom_loggers() -> list:
    """``pydicom`` and its child loggers (``pydicom.pixels.decoders.base``
    and others): a logger's filters do not see its children's records."""
    return [_LOGGER] + [
        logger
        for name, logger in list(logging.Logger.manager.loggerDict.items())
        if name.startswith('pydicom.') and isinstance(logger, logging.Logger)
    ]


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
            # Still installed if another thread's warnings.catch_warnings
            # put it back after the last read: keep what it replaced (else
            # _show would call itself).
            if warnings.showwarning is not _show:
                _shown_by = warnings.showwarning
            warnings.showwarning = _show
            _filtered[:] = _pydicom_loggers()
            for logger in _filtered:
                logger.addFilter(_FILTER)
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
                for logger in _filtered:
                    logger.removeFilter(_FILTER)
                _filtered.clear()
