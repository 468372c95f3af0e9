"""Files written whole or not at all."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from typing import Iterator, Optional, Union

#: When this process imported the module: a temporary file last written
#: before it is no write of this process's.
_IMPORTED_AT = time.time()
#: The names write_atomically gives its temporary files (uuid4().hex: 32
#: hex digits).
_TEMPORARY = re.compile(r'\..+\.[0-9a-f]{32}\.tmp', re.DOTALL)


def write_atomically(path: Union[str, os.PathLike], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed over it.

    A reader, or a run resumed after this process was killed, sees the old
    file or the whole new one, never a truncated one. The temporary file
    (``.<name>.<random>.tmp`` beside ``path``, so that the rename stays on
    one file system) has a name of its own per call, so processes writing
    the same file at once (DDP ranks) do not write into each other's; it
    is opened with ``open()``, so the file gets the permissions the umask
    gives (``mkstemp``'s would be its owner's only: a shared data folder's
    users read each other's files). A killed write leaves the temporary
    file (see :func:`remove_leftover_temporaries`).

    Args:
        path (str | os.PathLike): The file; its folder is made if missing.
        data (bytes): The content.
    """
    with atomic_path(path) as tmp:
        with open(tmp, 'xb') as f:
            f.write(data)


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike]) -> Iterator[str]:
    """A temporary path to write ``path``'s new content to, renamed over
    ``path`` when the block ends, removed where it raises.

    For writers that take a path and would otherwise need the whole file in
    memory first (``torch.save`` of a checkpoint); the temporary file is
    named and placed as :func:`write_atomically`'s. The writer must create
    a file at exactly the path it is given, in a format that does not
    depend on the name: ``np.save`` (which adds ``.npy``) or ``cv2.imwrite``
    (which picks the format from the suffix) do not fit.

    Args:
        path (str | os.PathLike): The file; its folder is made if missing.

    Yields:
        str: The temporary path (not yet a file).

    Raises:
        OSError: The writer left no file at the temporary path (nothing,
            or a folder), or the rename failed.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f'.{name}.{uuid.uuid4().hex}.tmp')
    try:
        yield tmp
        if os.path.islink(tmp) or not os.path.isfile(tmp):
            raise OSError(f'Writing {path}: the writer made no file at its '
                          f'temporary path {tmp}')
        os.replace(tmp, path)  # fails where path is a folder, say
    except BaseException:
        # Whatever the writer left; the error raised stays the first one.
        with contextlib.suppress(OSError):
            if os.path.isdir(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp)
            elif os.path.lexists(tmp):
                os.remove(tmp)
        raise


def remove_leftover_temporaries(folder: Union[str, os.PathLike],
                                older_than: Optional[float] = None
                                ) -> list[str]:
    """Remove the temporary files that killed writes left in ``folder``.

    :func:`write_atomically` cannot clean up after a process killed
    mid-write (SIGKILL, a job's time limit): its temporary file stays,
    as large as the file (a whole checkpoint with its optimizer state).
    A requeued run calls this for the folder it writes to. Only files
    named as :func:`write_atomically` names them and last written before
    ``older_than`` are removed, so the write of another process still
    running is left alone.

    Args:
        folder (str | os.PathLike): The folder.
        older_than (float, optional): A time (``time.time()``); files last
            modified at or after it are kept. Defaults to None: when this
            process imported the module, which a killed earlier run's
            files predate.

    Returns:
        list[str]: The paths removed.
    """
    if older_than is None:
        older_than = _IMPORTED_AT
    removed = []
    with os.scandir(os.fspath(folder) or '.') as entries:
        for entry in entries:
            if not _TEMPORARY.fullmatch(entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False) or (
                        entry.stat(follow_symlinks=False).st_mtime >=
                        older_than):
                    continue
                os.remove(entry.path)
            except FileNotFoundError:
                continue  # its writer renamed or removed it meanwhile
            removed.append(entry.path)
    return removed
