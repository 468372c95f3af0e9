"""Listing the files of a data folder, and removing a tool's outputs."""
from __future__ import annotations

import os
import os.path as osp
import shutil
from typing import Iterable, List, Sequence, Union

__all__ = ['list_files', 'remove_paths']


def list_files(root: str, suffixes: Union[str, Sequence[str]]) -> List[str]:
    """Paths relative to ``root`` of every file ending in one of
    ``suffixes`` (case-insensitive), in sorted order.

    Data folders on shared storage are often trees of symbolic links, so
    linked folders are followed; each real folder is listed once, so a
    link cycle ends and two links to one folder do not list its files
    twice (which would give each image twice). A folder that cannot be
    listed (no permission, a stale network mount) is an error naming it:
    ``os.walk`` would skip it, and its images would look missing from the
    data set rather than unreadable.

    Args:
        root (str): The folder to search recursively.
        suffixes (str | Sequence[str]): File name endings, e.g. ``'.dcm'``.

    Returns:
        list[str]: The relative paths.

    Raises:
        OSError: ``root`` or a folder under it cannot be listed; the
            message names it.
    """
    if isinstance(suffixes, str):
        suffixes = (suffixes, )
    suffixes = tuple(s.lower() for s in suffixes)
    found = []
    seen = {osp.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root,
                                                onerror=_raise_unlistable,
                                                followlinks=True):
        # Pruning in place is how os.walk is told not to descend.
        keep = []
        for name in sorted(dirnames):
            real = osp.realpath(osp.join(dirpath, name))
            if real not in seen:
                seen.add(real)
                keep.append(name)
        dirnames[:] = keep
        found += [
            osp.relpath(osp.join(dirpath, name), root)
            for name in filenames if name.lower().endswith(suffixes)
        ]
    return sorted(found)


def _raise_unlistable(err: OSError) -> None:
    raise type(err)(err.errno, f'Cannot list the folder {err.filename}: '
                    f'{err.strerror}') from err


def remove_paths(root: str, names: Iterable[str]) -> None:
    """Remove ``root/<name>`` for each name that exists: a folder with its
    contents, a file, or a link (not what it points to).

    Args:
        root (str): The folder holding them.
        names (Iterable[str]): Names in ``root``.
    """
    for name in names:
        path = osp.join(root, name)
        if osp.isdir(path) and not osp.islink(path):
            shutil.rmtree(path)
        elif osp.lexists(path):
            os.remove(path)
