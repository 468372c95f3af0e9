import os

from mmseg_ptx.datasets.files import list_files, remove_paths


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'')


def test_list_files_sorted_relative_case_insensitive(tmp_path):
    for rel in ['b/2.dcm', 'b/1.DCM', 'a/z/3.dcm', 'a/notes.txt', '0.dcm']:
        _touch(tmp_path / rel)
    assert list_files(str(tmp_path), '.dcm') == [
        '0.dcm', os.path.join('a', 'z', '3.dcm'),
        os.path.join('b', '1.DCM'), os.path.join('b', '2.dcm')]
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
