import json
import pickle

import numpy as np
import pytest
from mmengine.logging import MMLogger
from mmseg.registry import DATASETS
from siim_testdata import SECRET_PATIENT, make_dicom_root, make_png_root

from mmseg_ptx.datasets import (SIIMPneumothoraxDataset, read_image_ids,
                                read_split)

POS1, POS2, NEG1, NEG2 = '1.2.3.10', '1.2.3.11', '1.2.3.20', '1.2.3.21'
ROWS = [
    (POS1, '10 5'),
    (NEG1, '-1'),
    (POS2, '0 10'),
    (POS2, '40 3'),  # a second region of the same image
    (NEG2, '-1'),
]


@pytest.fixture
def log_messages(monkeypatch):
    """Collect everything logged through mmengine's current logger."""
    messages = []
    logger = MMLogger.get_current_instance()
    monkeypatch.setattr(logger, 'log',
                        lambda level, msg, *a, **k: messages.append(msg))
    return messages


def _build(root, **kwargs):
    kwargs.setdefault('pipeline', [])
    return SIIMPneumothoraxDataset(data_root=str(root), **kwargs)


@pytest.mark.parametrize('stage1', [False, True])
def test_dicom_layout(tmp_path, stage1):
    make_dicom_root(tmp_path, ROWS, stage1=stage1)
    ds = _build(tmp_path)
    assert len(ds) == 4
    infos = {ds.get_data_info(i)['image_id']: ds.get_data_info(i)
             for i in range(len(ds))}
    assert set(infos) == {POS1, POS2, NEG1, NEG2}
    assert infos[POS2]['rle'] == ['0 10', '40 3']
    assert infos[POS1]['rle'] == ['10 5']
    assert infos[NEG1]['rle'] == []
    # Where the strings came from, for the bounds errors of loading.
    assert infos[POS2]['rle_source'] == f'{ds.ann_file}, lines 4, 5'
    assert infos[POS1]['rle_source'] == f'{ds.ann_file}, line 2'
    assert 'rle_source' not in infos[NEG1]
    assert [infos[i]['has_pneumothorax'] for i in (POS1, POS2, NEG1, NEG2)
            ] == [True, True, False, False]
    info = infos[POS2]
    # Nested Study/Series folders are searched; ImageId is the file stem.
    assert info['img_path'].endswith(f'/1.2.study0/1.2.series2/{POS2}.dcm')
    assert info['img_path'].startswith(str(tmp_path / 'dicom-images-train'))
    assert info['seg_fields'] == [] and info['reduce_zero_label'] is False
    assert 'label_map' in info and 'seg_map_path' not in info
    assert ds.metainfo['classes'] == ('background', 'pneumothorax')
    assert len(ds.metainfo['palette']) == 2


def test_registered_and_serialised(tmp_path):
    make_dicom_root(tmp_path, ROWS)
    ds = DATASETS.build(
        dict(type='SIIMPneumothoraxDataset', data_root=str(tmp_path),
             pipeline=[], serialize_data=True))
    assert isinstance(ds, SIIMPneumothoraxDataset)
    assert ds.data_list == []  # moved into data_bytes by mmengine
    flags = [ds.get_data_info(i)['has_pneumothorax'] for i in range(len(ds))]
    assert sorted(flags) == [False, False, True, True]
    # Data loader workers receive the dataset pickled.
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.get_data_info(0) == ds.get_data_info(0)
    assert ds[0]['image_id'] == ds.get_data_info(0)['image_id']


def test_orphans_are_reported_and_skipped(tmp_path, log_messages):
    rows = ROWS + [('csvonly.1', '-1'), ('csvonly.2', '3 4')]
    make_dicom_root(tmp_path, rows, tree_only=['1.2.3.99'])
    ds = _build(tmp_path)
    assert {ds.get_data_info(i)['image_id'] for i in range(len(ds))} == {
        POS1, POS2, NEG1, NEG2}
    text = '\n'.join(log_messages)
    assert '2 image(s) are listed in' in text
    assert 'csvonly.1, csvonly.2' in text
    assert '1 image(s) under' in text and '1.2.3.99' in text


def test_strict_raises_on_orphans(tmp_path):
    make_dicom_root(tmp_path, ROWS, tree_only=['1.2.3.99'])
    with pytest.raises(ValueError, match=r'1\.2\.3\.99.*strict'):
        _build(tmp_path, strict=True)


def test_header_values_never_logged(tmp_path, log_messages, recwarn):
    """Neither building the dataset (its warning about an image missing
    from the CSV names the file) nor reading every image through it puts
    the DICOM headers' patient data into a log or a warning."""
    make_dicom_root(tmp_path, ROWS, tree_only=['1.2.3.99'])
    ds = _build(tmp_path, split='train', neg_keep_ratio=1.0, val_ratio=0.5,
                pipeline=[dict(type='mmseg.LoadDicomImageFromFile'),
                          dict(type='mmseg.LoadRLEAnnotations')])
    assert any('1.2.3.99' in m for m in log_messages)
    for i in range(len(ds)):
        assert ds[i]['img'].shape[:2] == (64, 64)
    messages = log_messages + [str(w.message) for w in recwarn]
    assert not any(SECRET_PATIENT in m or 'SECRET-ID' in m
                   for m in messages)


def test_contradictory_rows_are_positive_with_warning(tmp_path,
                                                      log_messages):
    make_dicom_root(tmp_path, ROWS + [(NEG1, '5 5')])
    ds = _build(tmp_path)
    info = next(ds.get_data_info(i) for i in range(len(ds))
                if ds.get_data_info(i)['image_id'] == NEG1)
    assert info['has_pneumothorax'] and info['rle'] == ['5 5']
    # Only the mask row's line: the -1 row holds no RLE to blame.
    assert info['rle_source'] == f'{ds.ann_file}, line 7'
    assert any('both -1 and mask rows' in m for m in log_messages)


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError,
                       match=f'^data_root {tmp_path}/nowhere is not a '
                       'directory$'):
        _build(tmp_path / 'nowhere')
    # A relative one (as the configs have) is read from the current folder:
    # the message says which folder that made.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError,
                       match=f'^data_root data/siim is not a directory '
                       f'\\({tmp_path}/data/siim: a relative data_root is '
                       'read from the current folder;'):
        _build('data/siim')
    make_dicom_root(tmp_path, ROWS)
    with pytest.raises(FileNotFoundError, match='other-dir'):
        _build(tmp_path, image_dir='other-dir')
    with pytest.raises(FileNotFoundError, match='missing.csv'):
        _build(tmp_path, ann_file='missing.csv')
    (tmp_path / 'bad.csv').write_text('ImageId,Mask\na,-1\n')
    with pytest.raises(ValueError, match=r"bad\.csv.*EncodedPixels"):
        _build(tmp_path, ann_file='bad.csv')
    (tmp_path / 'none.csv').write_text('ImageId,EncodedPixels\n9.9,-1\n')
    with pytest.raises(ValueError, match='No labelled image'):
        _build(tmp_path, ann_file='none.csv', strict=False)
    with pytest.raises(ValueError, match='layout'):
        _build(tmp_path, layout='nifti')
    with pytest.raises(ValueError, match='reduce_zero_label'):
        _build(tmp_path, reduce_zero_label=True)
    # A mistyped argument: named with this class (Python's own error names
    # BaseSegDataset.__init__) and the nearest name.
    with pytest.raises(TypeError, match=r"^SIIMPneumothoraxDataset got an "
                       r"unexpected argument 'neg_keep_ration'; did you mean "
                       r"'neg_keep_ratio'\?$"):
        _build(tmp_path, neg_keep_ration=0.2)
    with pytest.raises(TypeError, match=r"argument 'ignore_idx'; did you "
                       r"mean 'ignore_index'\?$"):
        _build(tmp_path, ignore_idx=255)

    # A base class that takes any argument decides itself.
    import mmseg_ptx.datasets.siim as siim

    class AnyArgument:
        def __init__(self, **kwargs):
            pass

    with monkeypatch.context() as patch:
        patch.setattr(siim, 'BaseSegDataset', AnyArgument)
        siim._check_arguments(dict(neg_keep_ration=0.2), 'X')

    class MyDataset(SIIMPneumothoraxDataset):
        """A user's subclass, named in the error its config caused."""

    with pytest.raises(TypeError, match=r"^MyDataset got an unexpected "
                       r"argument 'spilt'; did you mean 'split'\?$"):
        MyDataset(data_root=str(tmp_path), spilt='val')
    # MMSeg's usual way to name folders: said, not a TypeError.
    with pytest.raises(ValueError, match='image_dir.*not as data_prefix'):
        _build(tmp_path, data_prefix=dict(img_path='dicom-images-train'))
    # Reordered or fewer classes would relabel the masks behind the
    # metric's back (label 1 is pneumothorax everywhere).
    for classes in (('pneumothorax', 'background'), ('pneumothorax', )):
        with pytest.raises(ValueError, match='would relabel'):
            _build(tmp_path, metainfo=dict(classes=classes))
        # Said before the data is read.
        with pytest.raises(ValueError, match='would relabel'):
            _build(tmp_path / 'nowhere', metainfo=dict(classes=classes))
    assert len(_build(tmp_path, metainfo=dict(
        classes=('background', 'pneumothorax')))) == 4


def test_duplicate_image_id_in_tree(tmp_path):
    make_dicom_root(tmp_path, ROWS)
    dup = tmp_path / 'dicom-images-train' / 'x' / 'y'
    dup.mkdir(parents=True)
    (dup / f'{POS1}.dcm').write_bytes(b'')
    with pytest.raises(ValueError, match='found twice'):
        _build(tmp_path)


def _make_balanced_root(root):
    rows = [(f'1.2.5.{i}', '1 2' if i < 6 else '-1') for i in range(26)]
    make_dicom_root(root, rows)
    return {i: r != '-1' for i, r in rows}


def test_split_files_written_then_reused(tmp_path):
    labels = _make_balanced_root(tmp_path)
    kwargs = dict(neg_keep_ratio=0.5, val_ratio=0.5, split_seed=3)
    train = _build(tmp_path, split='train', **kwargs)
    split_dir = tmp_path / 'splits'
    meta = json.loads((split_dir / 'split_meta.json').read_text())
    assert meta['settings']['seed'] == 3
    assert meta['settings']['num_images'] == 26
    # 6 positives + 10 of 20 negatives; each group split half/half.
    assert meta['counts']['balanced_negative'] == 10
    assert meta['counts']['train'] == len(train) == 8
    stored = read_split(str(split_dir))
    train_ids = [train.get_data_info(i)['image_id'] for i in range(len(train))]
    assert train_ids == stored.train
    assert sum(labels[i] for i in train_ids) == 3
    val = _build(tmp_path, split='val', **kwargs)
    val_ids = {val.get_data_info(i)['image_id'] for i in range(len(val))}
    assert val_ids == set(stored.val) and not val_ids & set(train_ids)
    # The files are the source of truth on later runs.
    mtime = (split_dir / 'train.txt').stat().st_mtime_ns
    again = _build(tmp_path, split='train', **kwargs)
    assert [again.get_data_info(i)['image_id']
            for i in range(len(again))] == train_ids
    assert (split_dir / 'train.txt').stat().st_mtime_ns == mtime


def test_an_empty_validation_split_names_val_ratio(tmp_path):
    _make_balanced_root(tmp_path)
    with pytest.raises(ValueError, match=r'The val split in .* is empty '
                       r'\(val_ratio=0.0: 0 puts every image in training\); '
                       'set val_ratio > 0, or train without validation'):
        _build(tmp_path, split='val', val_ratio=0.0).full_init()


def test_split_with_other_settings_is_refused(tmp_path):
    _make_balanced_root(tmp_path)
    _build(tmp_path, split='train', neg_keep_ratio=0.5, val_ratio=0.5)
    before = (tmp_path / 'splits' / 'train.txt').read_text()
    with pytest.raises(FileExistsError, match='split_dir or delete'):
        _build(tmp_path, split='train', neg_keep_ratio=1.0, val_ratio=0.5)
    # Another split_dir works and leaves the first one alone.
    _build(tmp_path, split='train', neg_keep_ratio=1.0, val_ratio=0.5,
           split_dir='splits_all')
    assert (tmp_path / 'splits' / 'train.txt').read_text() == before
    assert (tmp_path / 'splits_all' / 'train.txt').exists()


def test_split_for_other_data_is_refused(tmp_path):
    _make_balanced_root(tmp_path)
    _build(tmp_path, split='train', neg_keep_ratio=1.0, val_ratio=0.5)
    # Same settings, but a label changed: the fingerprint differs.
    csv_path = tmp_path / 'train-rle.csv'
    csv_path.write_text(
        csv_path.read_text().replace('1.2.5.7,-1', '1.2.5.7,4 4'))
    with pytest.raises(FileExistsError, match='labels_sha256'):
        _build(tmp_path, split='train', neg_keep_ratio=1.0, val_ratio=0.5)


def test_lists_of_another_rank_without_meta_are_ours(tmp_path,
                                                     log_messages):
    """DDP ranks build the dataset at once: one may find the lists that
    another wrote and not yet its split_meta.json. Lists equal to the
    computed split are that, not a hand-made split: no warning, and the
    meta file is written."""
    _make_balanced_root(tmp_path)
    kwargs = dict(neg_keep_ratio=0.5, val_ratio=0.5, split_seed=3)
    first = _build(tmp_path, split='train', **kwargs)
    split_dir = tmp_path / 'splits'
    meta = (split_dir / 'split_meta.json').read_text()
    (split_dir / 'split_meta.json').unlink()
    log_messages.clear()
    again = _build(tmp_path, split='train', **kwargs)
    assert [again.get_data_info(i)['image_id'] for i in range(len(again))
            ] == [first.get_data_info(i)['image_id']
                  for i in range(len(first))]
    assert not any('hand-made split' in m for m in log_messages)
    assert (split_dir / 'split_meta.json').read_text() == meta


def test_hand_made_split(tmp_path, log_messages):
    _make_balanced_root(tmp_path)
    split_dir = tmp_path / 'splits'
    split_dir.mkdir()
    (split_dir / 'train.txt').write_text('1.2.5.0\n1.2.5.10\n')
    (split_dir / 'val.txt').write_text('1.2.5.1\n')
    ds = _build(tmp_path, split='train')
    assert [ds.get_data_info(i)['image_id'] for i in range(len(ds))] == [
        '1.2.5.0', '1.2.5.10']
    assert any('hand-made split' in m for m in log_messages)
    assert not (split_dir / 'split_meta.json').exists()
    (split_dir / 'val.txt').write_text('9.9.9\n')
    with pytest.raises(ValueError, match=r'9\.9\.9.*other data'):
        _build(tmp_path, split='val')


def test_half_a_hand_made_split_is_named(tmp_path):
    _make_balanced_root(tmp_path)
    split_dir = tmp_path / 'splits'
    split_dir.mkdir()
    (split_dir / 'train.txt').write_text('1.2.5.0\n1.2.5.10\n')
    with pytest.raises(FileNotFoundError, match=r'train\.txt exists without '
                       r'val\.txt'):
        _build(tmp_path, split='train')
    assert sorted(p.name for p in split_dir.iterdir()) == ['train.txt']


def test_hand_made_split_where_the_settings_give_none(tmp_path):
    # Four images are too few for the default val_ratio: the computed split
    # fails, which must not stop a hand-made split from being used.
    make_dicom_root(tmp_path / 'computed', ROWS)
    with pytest.raises(ValueError, match='too few'):
        _build(tmp_path / 'computed', split='train', neg_keep_ratio=1.0)
    make_dicom_root(tmp_path / 'hand', ROWS)
    split_dir = tmp_path / 'hand' / 'splits'
    split_dir.mkdir()
    (split_dir / 'train.txt').write_text(f'{POS1}\n{NEG1}\n{NEG2}\n')
    (split_dir / 'val.txt').write_text(f'{POS2}\n')
    ds = _build(tmp_path / 'hand', split='val', neg_keep_ratio=1.0)
    assert [ds.get_data_info(i)['image_id'] for i in range(len(ds))] == [POS2]
    assert not (split_dir / 'split_meta.json').exists()


def test_class_balanced_dataset_repeats_the_positives(tmp_path):
    # mmengine's own class balancing, through get_cat_ids.
    from mmengine.dataset import ClassBalancedDataset
    make_dicom_root(tmp_path, ROWS + [('1.2.3.22', '-1')])
    ds = _build(tmp_path)
    assert [ds.get_cat_ids(i) for i in range(len(ds))] == [
        [0, 1] if ds.get_data_info(i)['has_pneumothorax'] else [0]
        for i in range(len(ds))]
    # Positives in 2 of 5 images: repeated ceil(sqrt(0.8 / 0.4)) = 2 times.
    balanced = ClassBalancedDataset(ds, oversample_thr=0.8)
    ids = [balanced.get_data_info(i)['image_id']
           for i in range(len(balanced))]
    assert sorted(ids) == sorted([POS1, POS1, POS2, POS2, NEG1, NEG2,
                                  '1.2.3.22'])


def test_indices_and_lazy_init(tmp_path):
    make_dicom_root(tmp_path, ROWS)
    ds = _build(tmp_path, lazy_init=True)
    assert not (tmp_path / 'splits').exists()
    ds.full_init()
    assert len(ds) == 4
    assert len(_build(tmp_path, indices=2)) == 2


def test_png_layout(tmp_path, log_messages):
    pos = np.zeros((16, 16), np.uint8)
    pos[2:5, 3:9] = 1
    neg = np.zeros((16, 16), np.uint8)
    masks = {'1.2.7.1': pos, '1.2.7.2': neg, '1.2.7.3': neg, '1.2.7.4': pos}
    make_png_root(tmp_path, masks, image_only=['stray.png'],
                  csv_only=['1.2.7.9'], no_mask=['1.2.7.4'])
    ds = _build(tmp_path, layout='png')
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [i['image_id'] for i in infos] == ['1.2.7.1', '1.2.7.2',
                                              '1.2.7.3']
    assert [i['has_pneumothorax'] for i in infos] == [True, False, False]
    assert infos[0]['img_path'] == str(tmp_path / 'png_images' /
                                       '0_train_1_.png')
    assert infos[0]['seg_map_path'] == str(tmp_path / 'png_masks' /
                                           '0_train_1_.png')
    assert 'rle' not in infos[0]
    text = '\n'.join(log_messages)
    assert '1.2.7.9' in text and '1.2.7.4' in text and 'stray.png' in text
    with pytest.raises(ValueError, match='image is missing'):
        _build(tmp_path, layout='png', strict=True)


def test_png_masks_through_mmseg_load_annotations(tmp_path):
    """A user's pipeline with mmseg's LoadAnnotations instead of
    LoadBinaryMaskFromFile: the 0/255 masks give labels 0/1, not 255
    (mmseg's ignore index, which would drop every pneumothorax pixel)."""
    pos = np.zeros((16, 16), np.uint8)
    pos[2:5, 3:9] = 1
    make_png_root(tmp_path, {'1.2.7.1': pos})
    ds = _build(tmp_path, layout='png',
                pipeline=[dict(type='mmseg.LoadAnnotations')])
    np.testing.assert_array_equal(ds[0]['gt_seg_map'], pos)


def test_png_bad_flag(tmp_path):
    make_png_root(tmp_path, {'1.2.7.1': np.zeros((4, 4), np.uint8)})
    csv_path = tmp_path / 'stage_1_train_images.csv'
    csv_path.write_text(csv_path.read_text().replace(',0\n', ',maybe\n'))
    with pytest.raises(ValueError, match=r'line 2.*has_pneumo'):
        _build(tmp_path, layout='png')


def test_png_file_listed_for_two_image_ids(tmp_path):
    """One file under two ImageIds would be two samples, maybe one in
    training and one in validation."""
    make_png_root(tmp_path, {'1.2.7.1': np.zeros((4, 4), np.uint8),
                             '1.2.7.2': np.zeros((4, 4), np.uint8)})
    csv_path = tmp_path / 'stage_1_train_images.csv'
    lines = csv_path.read_text().splitlines()
    filename = lines[1].split(',')[1]
    csv_path.write_text('\n'.join(lines + [f'1.2.7.3,{filename},0']) + '\n')
    match = (rf'line 4: new_filename {filename} is listed for ImageId '
             r'1\.2\.7\.3 and ImageId 1\.2\.7')
    with pytest.raises(ValueError, match=match):
        _build(tmp_path, layout='png')


def test_read_image_ids(tmp_path):
    """The PNG re-release's file -> ImageId list: stage-1 spellings (a BOM,
    spaces after the commas), other columns ignored; a file or an ImageId
    listed twice is an error naming the line."""
    path = tmp_path / 'ids.csv'
    path.write_text('\ufeffImageId, new_filename, has_pneumo\n'
                    '1.2.1, 0_test_.png, 0\n1.2.2, 1_test_.png, 1\n')
    assert read_image_ids(str(path)) == {'0_test_.png': '1.2.1',
                                         '1_test_.png': '1.2.2'}
    path.write_text('ImageId,new_filename\n1.2.1,a.png\n1.2.1,b.png\n')
    with pytest.raises(ValueError, match=r'line 3: ImageId 1\.2\.1 is listed '
                       'for new_filename b.png and new_filename a.png'):
        read_image_ids(str(path))
    path.write_text('ImageId\n1.2.1\n')
    with pytest.raises(ValueError, match=r"lacks the column\(s\) "
                       r"\['new_filename'\]"):
        read_image_ids(str(path))


@pytest.mark.parametrize('row, match', [
    # A truncated row: not an image without pneumothorax (that is -1).
    (f'{POS1},', r'line 7: ImageId 1\.2\.3\.10 has an empty EncodedPixels'),
    (f'{POS1}', r'line 7: 1 values, expected 2'),
    # Not "listed in the CSV but without a file (e.g. )".
    (',1 2', r'line 7: the ImageId is empty'),
    # An unquoted comma: the columns cannot be trusted.
    (f'{NEG1},-1,123 4', r'line 7: 3 values, expected 2'),
    # Found when the data set loads, not when the image is first drawn.
    (f'{POS1},10 5 7', r'line 7: ImageId 1\.2\.3\.10: Malformed RLE: 3 '
     'numbers'),
    (f'{POS1},10 -5', r'line 7: ImageId 1\.2\.3\.10: Malformed RLE: run '
     'length must be positive'),
])
def test_malformed_csv_rows_are_errors(tmp_path, row, match):
    make_dicom_root(tmp_path, ROWS)
    csv_path = tmp_path / 'train-rle.csv'
    csv_path.write_text(csv_path.read_text() + row + '\n')
    with pytest.raises(ValueError, match=r'train-rle\.csv, ' + match):
        _build(tmp_path)


def test_csv_field_sizes(tmp_path):
    make_dicom_root(tmp_path, ROWS)
    csv_path = tmp_path / 'train-rle.csv'
    rows = csv_path.read_text()
    # Longer than csv's default field limit (128 KiB), as the RLE of a
    # very fragmented mask can be.
    long_rle = '1 1 ' * 40_000
    csv_path.write_text(rows + f'{POS1},' + long_rle + '\n')
    ds = _build(tmp_path)
    infos = {ds.get_data_info(i)['image_id']: ds.get_data_info(i)
             for i in range(len(ds))}
    # Read whole, as POS1's second region (values are stripped).
    assert infos[POS1]['rle'] == ['10 5', long_rle.strip()]
    csv_path.write_text(rows + f'{POS1},' + '1' * (2**24 + 1) + '\n')
    with pytest.raises(ValueError, match=r'train-rle\.csv, line 7: field '
                       'larger than field limit'):
        _build(tmp_path)


def test_csv_that_is_not_utf8(tmp_path):
    make_dicom_root(tmp_path, ROWS)
    csv_path = tmp_path / 'train-rle.csv'
    csv_path.write_bytes(csv_path.read_bytes() + 'caf\xe9,-1\n'.encode(
        'latin-1'))
    with pytest.raises(ValueError, match=r'train-rle\.csv is not UTF-8'):
        _build(tmp_path)
