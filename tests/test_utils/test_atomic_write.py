"""write_atomically and atomic_path: the old file or the whole new one,
never half."""
import os
import shutil
import stat

import pytest

from mmseg_ptx.utils import (atomic_path, remove_leftover_temporaries,
                             write_atomically)


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


def test_atomic_path_for_writers_that_take_a_path(tmp_path):
    path = tmp_path / 'out' / 'averaged.pth'
    with atomic_path(path) as tmp:
        assert os.path.dirname(tmp) == str(path.parent)
        assert not os.path.exists(tmp) and not path.exists()
        with open(tmp, 'wb') as f:
            f.write(b'weights')
        assert not path.exists()  # renamed only when the block ends
    assert path.read_bytes() == b'weights'
    # A writer that fails leaves the old file and no temporary one.
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            with open(tmp, 'wb') as f:
                f.write(b'half')
            raise RuntimeError('disk full')
    assert path.read_bytes() == b'weights'
    assert os.listdir(path.parent) == ['averaged.pth']
    # One that fails before writing anything too.
    with pytest.raises(RuntimeError):
        with atomic_path(path):
            raise RuntimeError('cannot serialise')
    assert os.listdir(path.parent) == ['averaged.pth']
    # A writer that makes no file, or a folder: said, the old file kept,
    # nothing left behind.
    with pytest.raises(OSError, match='the writer made no file'):
        with atomic_path(path):
            pass
    for target in (path, path.parent / 'new.pth'):
        with pytest.raises(OSError, match='the writer made no file'):
            with atomic_path(target) as tmp:
                os.mkdir(tmp)
                open(os.path.join(tmp, 'part'), 'w').close()
    assert path.read_bytes() == b'weights'
    assert os.listdir(path.parent) == ['averaged.pth']


def test_atomic_path_refuses_links_and_removes_them(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    a_file, a_dir = tmp_path / 'file', tmp_path / 'dir'
    a_file.write_bytes(b'f')
    a_dir.mkdir()
    (a_dir / 'keep').write_bytes(b'k')
    for target in (a_file, a_dir, tmp_path / 'nowhere'):
        with pytest.raises(OSError, match='the writer made no file'):
            with atomic_path(out / 'a.pth') as tmp:
                os.symlink(target, tmp)
        assert os.listdir(out) == []
    # The links went, not what they pointed at.
    assert a_file.read_bytes() == b'f'
    assert (a_dir / 'keep').read_bytes() == b'k'


def test_a_failing_cleanup_keeps_the_first_error(tmp_path, monkeypatch):
    def cannot(*args, **kwargs):
        raise PermissionError('cannot remove')

    monkeypatch.setattr(shutil, 'rmtree', cannot)
    monkeypatch.setattr(os, 'remove', cannot)
    with pytest.raises(OSError, match='the writer made no file'):
        with atomic_path(tmp_path / 'a.pth') as tmp:
            os.mkdir(tmp)
    with pytest.raises(RuntimeError, match='disk full'):
        with atomic_path(tmp_path / 'b.pth') as tmp:
            open(tmp, 'wb').close()
            raise RuntimeError('disk full')


def test_a_folder_in_the_way_is_an_error_and_left_alone(tmp_path):
    (tmp_path / 'out.json').mkdir()
    with pytest.raises(OSError):
        write_atomically(tmp_path / 'out.json', b'x')
    assert os.listdir(tmp_path) == ['out.json']


def test_leftovers_of_killed_writes_are_removed(tmp_path):
    """write_atomically's temporaries written before the given time go; a
    write still running (newer), look-alikes and folders stay."""
    tag = '0123456789abcdef' * 2
    old = [tmp_path / f'.epoch_3.pth.{tag}.tmp',
           tmp_path / f'.best_dice_epoch_2.pth.{tag}.tmp']
    running = tmp_path / f'.epoch_3.pth.{"f" * 32}.tmp'
    kept = [
        running,
        tmp_path / 'epoch_3.pth',
        tmp_path / f'.epoch_3.pth.{tag[:-1]}.tmp',  # not a uuid4 hex
        tmp_path / f'.epoch_3.pth.{tag}.tmp.bak',
        tmp_path / f'epoch_3.pth.{tag}.tmp',
    ]
    for p in old + kept:
        p.write_bytes(b'half')
        os.utime(p, (1000, 1000))
    os.utime(running, (3000, 3000))
    folder = tmp_path / f'.dir.{tag}.tmp'
    folder.mkdir()
    os.utime(folder, (1000, 1000))
    assert sorted(remove_leftover_temporaries(tmp_path, older_than=2000)) \
        == sorted(map(str, old))
    assert sorted(os.listdir(tmp_path)) == sorted(
        [p.name for p in kept] + [folder.name])


def test_leftovers_default_to_those_before_this_process(tmp_path):
    earlier = tmp_path / f'.last_checkpoint.{"a" * 32}.tmp'
    earlier.write_bytes(b'')
    os.utime(earlier, (1000, 1000))
    now = tmp_path / f'.last_checkpoint.{"b" * 32}.tmp'
    now.write_bytes(b'')
    assert remove_leftover_temporaries(str(tmp_path)) == [str(earlier)]
    assert os.listdir(tmp_path) == [now.name]
