"""write_atomically: the old file or the whole new one, never half."""
import os
import stat

import pytest

from mmseg_ptx.utils import write_atomically


def test_writes_replaces_and_makes_the_folder(tmp_path):
    path = tmp_path / 'new' / 'split.txt'
    write_atomically(path, b'first')
    write_atomically(str(path), b'second')
    assert path.read_bytes() == b'second'
    assert os.listdir(path.parent) == ['split.txt']
    # The umask's permissions, as open() gives them (mkstemp: 0o600).
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / 'stats.json'
    path.write_bytes(b'old')

    class Killed(BaseException):
        """The process stopped before the rename."""

    def killed(*args):
        raise Killed

    monkeypatch.setattr(os, 'replace', killed)
    with pytest.raises(Killed):
        write_atomically(path, b'new')
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['stats.json']


def test_a_folder_in_the_way_is_an_error_and_left_alone(tmp_path):
    (tmp_path / 'out.json').mkdir()
    with pytest.raises(OSError):
        write_atomically(tmp_path / 'out.json', b'x')
    assert os.listdir(tmp_path) == ['out.json']
