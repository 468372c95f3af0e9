"""Files written whole or not at all."""
from __future__ import annotations

import os
import uuid
from typing import Union


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
    file.

    Args:
        path (str | os.PathLike): The file; its folder is made if missing.
        data (bytes): The content.
    """
    path = os.fspath(path)
    folder, name = os.path.split(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f'.{name}.{uuid.uuid4().hex}.tmp')
    try:
        with open(tmp, 'xb') as f:
            f.write(data)
        os.replace(tmp, path)  # fails where path is a folder, say
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
