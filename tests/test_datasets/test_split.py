import json
import os
import random
import stat

import pytest

from mmseg_ptx.datasets.split import (SPLIT_FILES, SplitResult,
                                      balance_and_split, count_split,
                                      ids_sha256, read_split, write_split)


def _index(num_pos, num_neg):
    ids = [f'1.2.826.{i:05d}' for i in range(num_pos + num_neg)]
    return ids, [i < num_pos for i in range(num_pos + num_neg)]


def test_reference_counts():
    # The reference run: 2,379 pos + 8,296 neg -> 2,379 + 1,244 kept ->
    # 2,898 train / 725 val.
    ids, pos = _index(2379, 8296)
    result = balance_and_split(ids, pos)
    c = result.counts
    assert (c['original_positive'], c['original_negative']) == (2379, 8296)
    assert (c['balanced_positive'], c['balanced_negative']) == (2379, 1244)
    assert (len(result.train), len(result.val)) == (2898, 725)
    assert (c['train'], c['val']) == (2898, 725)
    labels = dict(zip(ids, pos))
    assert sum(labels[i] for i in result.train) == c['train_positive']
    assert sum(labels[i] for i in result.val) == c['val_positive'] == 476
    assert c['val_negative'] == 249
    assert not set(result.train) & set(result.val)
    assert result.train == sorted(result.train)


def test_deterministic_and_seed_dependent():
    ids, pos = _index(30, 170)
    a = balance_and_split(ids, pos, seed=1)
    b = balance_and_split(ids, pos, seed=1)
    c = balance_and_split(ids, pos, seed=2)
    assert (a.train, a.val) == (b.train, b.val)
    assert (a.train, a.val) != (c.train, c.val)
    assert a.counts == c.counts


@pytest.mark.parametrize('order,train_sha256,val_sha256', [
    ('balance_first', 'c81c7a23b2d0c59f', '11ac6c914fc6fa91'),
    ('split_first', '7d967ffd28b2a7ad', '9d564fa86f9fd8e3'),
])
def test_the_draw_is_pinned(order, train_sha256, val_sha256):
    """The ids a seed gives, pinned: split folders written by an earlier
    version must be regenerated identically (else the dataset refuses them
    as a different split). Change these only with the draw, deliberately.
    """
    ids, pos = _index(30, 170)
    result = balance_and_split(ids, pos, order=order)
    assert ids_sha256(result.train)[:16] == train_sha256
    assert ids_sha256(result.val)[:16] == val_sha256


def test_independent_of_input_order():
    ids, pos = _index(30, 170)
    pairs = list(zip(ids, pos))
    random.Random(0).shuffle(pairs)
    shuffled_ids, shuffled_pos = zip(*pairs)
    a = balance_and_split(ids, pos, order='split_first')
    b = balance_and_split(list(shuffled_ids), list(shuffled_pos),
                          order='split_first')
    assert (a.train, a.val) == (b.train, b.val)


@pytest.mark.parametrize('order', ['balance_first', 'split_first'])
def test_stratified(order):
    ids, pos = _index(100, 400)
    result = balance_and_split(
        ids, pos, neg_keep_ratio=0.5, val_ratio=0.2, order=order)
    c = result.counts
    # Each class group is split 80/20 on its own.
    assert c['val_positive'] == 20 and c['train_positive'] == 80
    if order == 'balance_first':
        # 200 kept negatives, 40 to validation.
        assert (c['train_negative'], c['val_negative']) == (160, 40)
    else:
        # 80 negatives to validation, half of the other 320 kept.
        assert (c['train_negative'], c['val_negative']) == (160, 80)


def test_split_first_keeps_natural_ratio_in_val():
    ids, pos = _index(2379, 8296)
    result = balance_and_split(ids, pos, order='split_first')
    c = result.counts
    natural = 2379 / (2379 + 8296)
    assert abs(c['val_positive'] / c['val'] - natural) < 0.002
    # Training negatives are undersampled only there.
    assert c['train_negative'] == round(0.15 * (8296 - c['val_negative']))
    labels = dict(zip(ids, pos))
    assert sum(labels[i] for i in result.val) == c['val_positive']
    # Reference order: validation is positive-heavy.
    ref = balance_and_split(ids, pos).counts
    assert ref['val_positive'] / ref['val'] > 0.6


@pytest.mark.parametrize('neg_keep_ratio, val_ratio',
                         [(0.15, 0.2), (0.5, 0.3), (0.0, 0.2), (1.0, 0.2),
                          (0.15, 0.0)])
@pytest.mark.parametrize('seed', [0, 1, 2, 3, 42])
def test_the_orders_nest(neg_keep_ratio, val_ratio, seed):
    """A model trained on one order's split can be validated on the
    other's validation set: neither order trains on the other's
    validation images (with the reference counts, independent rankings
    put up to tens of balance_first's training negatives into
    split_first's validation)."""
    ids, pos = _index(238, 830)
    kwargs = dict(neg_keep_ratio=neg_keep_ratio, val_ratio=val_ratio,
                  seed=seed)
    balanced = balance_and_split(ids, pos, **kwargs)
    natural = balance_and_split(ids, pos, order='split_first', **kwargs)
    assert not set(balanced.train) & set(natural.val)
    assert not set(natural.train) & set(balanced.val)
    assert set(balanced.val) <= set(natural.val)
    c = natural.counts
    assert c['val_negative'] == round(val_ratio * 830)
    assert c['train_negative'] == round(neg_keep_ratio *
                                        (830 - c['val_negative']))


def test_no_undersampling():
    ids, pos = _index(10, 90)
    result = balance_and_split(ids, pos, neg_keep_ratio=1.0)
    assert sorted(result.train + result.val) == sorted(ids)


def test_invalid_arguments():
    ids, pos = _index(5, 5)
    with pytest.raises(ValueError, match='neg_keep_ratio'):
        balance_and_split(ids, pos, neg_keep_ratio=1.5)
    with pytest.raises(ValueError, match='val_ratio'):
        balance_and_split(ids, pos, val_ratio=1.0)
    with pytest.raises(ValueError, match='order'):
        balance_and_split(ids, pos, order='random')
    with pytest.raises(ValueError, match='duplicates'):
        balance_and_split(ids + ids[:1], pos + pos[:1])
    with pytest.raises(ValueError, match='labels'):
        balance_and_split(ids, pos[:-1])
    with pytest.raises(ValueError, match='validation split is empty'):
        balance_and_split(ids[:2], pos[:2], val_ratio=0.1)


def test_count_split():
    labels = {'a': True, 'b': False, 'c': True, 'd': False}
    c = count_split(['a', 'b'], ['c'], labels)
    assert c == dict(original_positive=2, original_negative=2,
                     balanced_positive=2, balanced_negative=1, train=2,
                     val=1, train_positive=1, train_negative=1,
                     val_positive=1, val_negative=0)


def test_write_read_round_trip(tmp_path):
    ids, pos = _index(20, 80)
    result = balance_and_split(ids, pos, neg_keep_ratio=0.5)
    meta = dict(neg_keep_ratio=0.5, seed=42, order='balance_first')
    split_dir = tmp_path / 'splits'
    write_split(str(split_dir), result, meta)
    assert (split_dir / 'train.txt').read_text().splitlines() == result.train
    stored = json.loads((split_dir / 'split_meta.json').read_text())
    assert stored['settings'] == meta
    assert stored['counts'] == result.counts
    back = read_split(str(split_dir))
    assert (back.train, back.val, back.counts) == (result.train, result.val,
                                                   result.counts)
    # Writing the same split again (another rank, a rerun) is harmless.
    write_split(str(split_dir), result, meta)
    assert not [p for p in split_dir.iterdir() if p.name.startswith('.')]


def test_split_files_follow_the_umask(tmp_path):
    """On a shared data folder other users' runs read the split."""
    ids, pos = _index(20, 80)
    result = balance_and_split(ids, pos, neg_keep_ratio=0.5)
    old = os.umask(0o022)
    try:
        write_split(str(tmp_path), result, dict(seed=42))
    finally:
        os.umask(old)
    for name in SPLIT_FILES:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


def test_unwritable_split_folder_says_the_way_out(tmp_path, monkeypatch):
    """A read-only data folder (stood in for: root writes through
    permission bits) or a split_dir below a file: the error names the
    folder, the reason and split_dir, and keeps its errno's type."""
    from mmseg_ptx.datasets import split as split_module
    ids, pos = _index(20, 80)
    result = balance_and_split(ids, pos)

    def read_only(path, data):
        raise OSError(30, 'Read-only file system', path)

    monkeypatch.setattr(split_module, 'write_atomically', read_only)
    with pytest.raises(OSError) as err:
        write_split(str(tmp_path / 'splits'), result, dict(seed=42))
    assert err.value.errno == 30
    assert (f'Cannot write the split files in {tmp_path}/splits '
            '(Read-only file system): give the data sets a split_dir you '
            'can write to') in str(err.value)
    # A split already there (a read-only data folder that holds its split)
    # is read, not written again.
    monkeypatch.undo()
    write_split(str(tmp_path / 'splits'), result, dict(seed=42))
    monkeypatch.setattr(split_module, 'write_atomically', read_only)
    write_split(str(tmp_path / 'splits'), result, dict(seed=42))
    monkeypatch.undo()
    afile = tmp_path / 'a_file'
    afile.write_text('')
    with pytest.raises(NotADirectoryError, match=f'files in {afile}/splits '
                       '\\(Not a directory\\): give the data sets'):
        write_split(str(afile / 'splits'), result, dict(seed=42))


def test_refuses_other_settings(tmp_path):
    ids, pos = _index(20, 80)
    result = balance_and_split(ids, pos)
    write_split(str(tmp_path), result, dict(seed=42))
    before = (tmp_path / 'train.txt').read_text()
    other = balance_and_split(ids, pos, seed=7)
    with pytest.raises(FileExistsError, match='seed.*delete'):
        write_split(str(tmp_path), other, dict(seed=7))
    assert (tmp_path / 'train.txt').read_text() == before


def test_refuses_to_overwrite_hand_made_lists(tmp_path):
    (tmp_path / 'train.txt').write_text('x\ny\n')
    (tmp_path / 'val.txt').write_text('z\n')
    result = SplitResult(train=['a'], val=['b'])
    with pytest.raises(FileExistsError, match='train.txt'):
        write_split(str(tmp_path), result, dict(seed=1))
    assert (tmp_path / 'train.txt').read_text() == 'x\ny\n'
    assert not (tmp_path / 'split_meta.json').exists()
    back = read_split(str(tmp_path))
    assert (back.train, back.val, back.counts) == (['x', 'y'], ['z'], {})
    # A split_first split with the same settings but other ids: most
    # likely one of a version that drew it apart from balance_first's.
    with pytest.raises(FileExistsError, match=r'train.txt exists and holds '
                       r'a different split than the one requested \(split_'
                       r'first splits written before 2026-11-28'):
        write_split(str(tmp_path), result, dict(order='split_first'))


def test_one_hand_made_list_alone_names_the_other(tmp_path):
    result = SplitResult(train=['a'], val=['b'])
    for name, other in (('train.txt', 'val.txt'), ('val.txt', 'train.txt')):
        folder = tmp_path / name
        folder.mkdir()
        (folder / name).write_text('x\n')
        with pytest.raises(FileNotFoundError,
                           match=rf'{name} exists without {other} .*a '
                           r'hand-made split needs both lists'):
            write_split(str(folder), result, dict(seed=1))
        assert (folder / name).read_text() == 'x\n'
        assert sorted(p.name for p in folder.iterdir()) == [name]
    # With split_meta.json the lists are one of ours: a stale split to
    # delete, not half a hand-made one.
    folder = tmp_path / 'ours'
    folder.mkdir()
    (folder / 'train.txt').write_text('x\n')
    (folder / 'split_meta.json').write_text(
        json.dumps(dict(settings=dict(seed=1), counts={})))
    with pytest.raises(FileExistsError, match='holds a different split'):
        write_split(str(folder), result, dict(seed=1))
    # The same list alone is another DDP rank's half-written split.
    folder = tmp_path / 'half'
    folder.mkdir()
    (folder / 'train.txt').write_text('a\n')
    write_split(str(folder), result, dict(seed=1))
    assert read_split(str(folder)).val == ['b']


def test_read_split_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='train.txt'):
        read_split(str(tmp_path))
    (tmp_path / 'train.txt').write_text('a\nb\n')
    (tmp_path / 'val.txt').write_text('b\n')
    with pytest.raises(ValueError, match='both'):
        read_split(str(tmp_path))
    # An image listed twice would be trained on twice.
    (tmp_path / 'train.txt').write_text('a\nc\n\n a\nc\n')
    with pytest.raises(ValueError, match=r'lists 2 ImageId\(s\) more than '
                       r'once: a on lines 1, 4; c on lines 2, 5$'):
        read_split(str(tmp_path))


def test_read_split_strips_hand_made_lists(tmp_path):
    """Blanks around ids and empty lines (a hand-edited list) do not make
    ids that match no image."""
    (tmp_path / 'train.txt').write_text('a  \n b\r\n\n')
    (tmp_path / 'val.txt').write_text('c\n')
    assert read_split(str(tmp_path)).train == ['a', 'b']
