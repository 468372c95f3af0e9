import os

import pytest

from mmseg_ptx.datasets.files import list_files, remove_paths


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'')


def test_list_files_sorted_relative_case_insensitive(tmp_path):
    for rel in ['b/2.dcm', 'b/1.DCM', 'a/z/3.dcm', 'a/notes.txt', '0.dcm',
                'c.dcm']:
        _touch(tmp_path / rel)
    # Sorted as paths (os.walk gives a folder's files before its
    # subfolders').
    assert list_files(str(tmp_path), '.dcm') == [
        '0.dcm', os.path.join('a', 'z', '3.dcm'),
        os.path.join('b', '1.DCM'), os.path.join('b', '2.dcm'), 'c.dcm']
    assert list_files(str(tmp_path), ('.txt', '.nothing')) == [
        os.path.join('a', 'notes.txt')]


def test_list_files_follows_links_once(tmp_path):
    data = tmp_path / 'data'
    _touch(tmp_path / 'store' / 'study' / '1.dcm')
    data.mkdir()
    # A tree of links to shared storage, two links to one folder, and a
    # link back up the tree (a cycle os.walk would follow forever).
    (data / 'link_a').symlink_to(tmp_path / 'store')
    (data / 'link_b').symlink_to(tmp_path / 'store')
    (tmp_path / 'store' / 'study' / 'up').symlink_to(data)
    assert list_files(str(data), '.dcm') == [
        os.path.join('link_a', 'study', '1.dcm')]


def test_remove_paths_keeps_link_targets(tmp_path):
    _touch(tmp_path / 'out' / 'masks' / 'a.png')
    _touch(tmp_path / 'out' / 'submission.csv')
    _touch(tmp_path / 'elsewhere' / 'keep.png')
    (tmp_path / 'out' / 'probs').symlink_to(tmp_path / 'elsewhere')
    remove_paths(str(tmp_path / 'out'),
                 ['masks', 'submission.csv', 'probs', 'missing'])
    assert list((tmp_path / 'out').iterdir()) == []
    assert (tmp_path / 'elsewhere' / 'keep.png').is_file()


def test_list_files_names_a_folder_it_cannot_list(tmp_path, monkeypatch):
    # os.walk skips such a folder unless told otherwise: its images would
    # look missing from the data set instead of unreadable. (Simulated:
    # permissions do not stop root, which CI may run as.)
    _touch(tmp_path / 'study_a' / '1.dcm')
    _touch(tmp_path / 'study_b' / '2.dcm')
    scandir = os.scandir

    def refuse_study_b(path):
        if os.path.basename(path) == 'study_b':
            raise PermissionError(13, 'Permission denied', path)
        return scandir(path)

    monkeypatch.setattr(os, 'scandir', refuse_study_b)
    with pytest.raises(PermissionError,
                       match='Cannot list the folder .*study_b: '
                       'Permission denied'):
        list_files(str(tmp_path), '.dcm')


def test_list_files_missing_root_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'):
        list_files(str(tmp_path / 'nowhere'), '.dcm')
