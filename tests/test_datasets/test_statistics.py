import cv2
import numpy as np
import pytest
from siim_testdata import make_dicom_root, make_png_root

from mmseg_ptx.datasets import (compute_dataset_statistics, format_statistics,
                                read_split)
from mmseg_ptx.datasets.statistics import count_foreground_pixels


def _png_masks():
    a = np.zeros((16, 16), np.uint8)
    a[2:5, 3:9] = 1  # 18 pixels
    c = np.zeros((8, 32), np.uint8)
    c[0, :5] = 1  # 5 pixels
    d = np.zeros((16, 16), np.uint8)
    d[15, 15] = 1  # 1 pixel
    empty = np.zeros((16, 16), np.uint8)
    return {'1.2.7.1': a, '1.2.7.2': empty, '1.2.7.3': c, '1.2.7.4': d}


@pytest.mark.parametrize('workers', [1, 2])
def test_png_exact_counts(tmp_path, workers):
    make_png_root(tmp_path, _png_masks())
    stats = compute_dataset_statistics(
        str(tmp_path), layout='png', neg_keep_ratio=1.0, val_ratio=0.0,
        workers=workers, progress=False)
    # 4 images of 256 pixels, 18 + 5 + 1 foreground.
    assert stats['pixel_counts'] == [1000, 24]
    assert stats['class_weights'] == pytest.approx([1024 / 2000, 1024 / 48])
    assert stats['imbalance_ratio'] == pytest.approx(1000 / 24)
    assert stats['pixel_fractions'] == pytest.approx([1000 / 1024, 24 / 1024])
    n = stats['num_images']
    assert (n['original_positive'], n['original_negative']) == (3, 1)
    assert (n['train'], n['val'], n['train_positive']) == (4, 0, 3)
    assert n['original_total'] == 4
    assert stats['label_mismatches'] == 0
    assert stats['settings']['layout'] == 'png'
    assert stats['classes'] == ['background', 'pneumothorax']
    # The training images counted (all four here), for the report's check.
    from mmseg_ptx.datasets.split import ids_sha256, read_split
    train = read_split(str(tmp_path / 'splits')).train
    assert len(train) == 4
    assert stats['settings']['train_ids_sha256'] == ids_sha256(train)


def test_reference_weight_formula(tmp_path):
    # The reference's 107.45:1 imbalance gives its weights [0.5047, 54.22].
    mask = np.zeros((15, 723), np.uint8)  # 10,845 pixels
    mask[0, :100] = 1
    make_png_root(tmp_path, {'1.2.7.1': mask})
    stats = compute_dataset_statistics(
        str(tmp_path), layout='png', neg_keep_ratio=1.0, val_ratio=0.0,
        progress=False)
    assert stats['pixel_counts'] == [10745, 100]
    assert [round(w, 4) for w in stats['class_weights']] == [0.5047, 54.225]
    assert round(stats['imbalance_ratio'], 2) == 107.45


def test_only_the_training_split_is_counted(tmp_path):
    masks = {f'1.2.8.{i}': np.zeros((8, 8), np.uint8) for i in range(10)}
    for i in range(10):
        masks[f'1.2.8.{i}'][0, :i + 1] = 1 if i % 2 == 0 else 0
    make_png_root(tmp_path, masks)
    stats = compute_dataset_statistics(
        str(tmp_path), layout='png', neg_keep_ratio=1.0, val_ratio=0.4,
        progress=False)
    split = read_split(str(tmp_path / 'splits'))
    assert stats['num_images']['train'] == len(split.train) == 6
    fg = sum(int(masks[i].sum()) for i in split.train)
    assert stats['pixel_counts'] == [6 * 64 - fg, fg]
    assert fg != sum(int(m.sum()) for m in masks.values())


def test_unknown_id_in_hand_made_val_split(tmp_path):
    # Only training pixels are counted, yet a val.txt naming an image that
    # is not there is an error that names it (not a KeyError later).
    make_png_root(tmp_path, _png_masks())
    split_dir = tmp_path / 'splits'
    split_dir.mkdir()
    (split_dir / 'train.txt').write_text('1.2.7.1\n1.2.7.2\n')
    (split_dir / 'val.txt').write_text('1.2.7.3\n9.9.9\n')
    with pytest.raises(ValueError, match=r'val split.*9\.9\.9'):
        compute_dataset_statistics(
            str(tmp_path), layout='png', progress=False)


def test_dicom_exact_counts(tmp_path, capfd):
    pytest.importorskip('mmseg_ptx.datasets.dicom')
    rows = [
        ('1.2.9.1', '10 5'),
        ('1.2.9.2', '0 10'),
        ('1.2.9.2', '5 10'),  # overlaps the first row: union is 15 pixels
        ('1.2.9.3', '-1'),
        ('1.2.9.4', '0 20 44 20'),  # 32 x 64 image, 40 pixels
    ]
    make_dicom_root(tmp_path, rows, shapes={'1.2.9.4': (32, 64)})
    capfd.readouterr()
    stats = compute_dataset_statistics(
        str(tmp_path), neg_keep_ratio=1.0, val_ratio=0.0, progress=False)
    assert 'Counting training pixels' not in capfd.readouterr().err
    total = 3 * 64 * 64 + 32 * 64
    fg = 5 + 15 + 40
    assert stats['pixel_counts'] == [total - fg, fg]
    assert stats['class_weights'] == pytest.approx(
        [total / (2 * (total - fg)), total / (2 * fg)])
    assert stats['num_images']['original_positive'] == 3


def test_rle_past_the_image_names_file_and_line(tmp_path):
    # The bounds need the image's size: found here, not when the CSV is
    # read; the error names the file and the CSV's line.
    pytest.importorskip('mmseg_ptx.datasets.dicom')
    make_dicom_root(tmp_path, [('1.2.9.1', '-1'), ('1.2.9.2', '4090 10')])
    with pytest.raises(ValueError, match=r'Bad RLE for image 1\.2\.9\.2 '
                       r'\(.*1\.2\.9\.2\.dcm; .*train-rle\.csv, line 3; '
                       r'64x64 image\): .*past the end'):
        compute_dataset_statistics(str(tmp_path), neg_keep_ratio=1.0,
                                   val_ratio=0.0, progress=False)


def test_count_foreground_pixels_png(tmp_path):
    mask = np.zeros((4, 6), np.uint8)
    mask[1, 2:5] = 255
    cv2.imwrite(str(tmp_path / 'm.png'), mask)
    cv2.imwrite(str(tmp_path / 'i.png'), np.zeros((4, 6), np.uint8))
    info = dict(image_id='x', seg_map_path=str(tmp_path / 'm.png'),
                img_path=str(tmp_path / 'i.png'))
    assert count_foreground_pixels(info) == (3, 24)
    # Counted as training reads them (LoadBinaryMaskFromFile): any
    # non-zero value, 16-bit masks included.
    mask[0, 0] = 7
    cv2.imwrite(str(tmp_path / 'm.png'), mask)
    assert count_foreground_pixels(info) == (4, 24)
    cv2.imwrite(str(tmp_path / 'm.png'), (mask > 0).astype(np.uint16) * 65535)
    assert count_foreground_pixels(info) == (4, 24)
    open(tmp_path / 'm.png', 'wb').close()
    with pytest.raises(OSError, match=r'm\.png \(corrupt, empty'):
        count_foreground_pixels(info)


def test_count_foreground_pixels_refuses_a_mask_of_another_size(tmp_path):
    # Training refuses such a mask (LoadBinaryMaskFromFile); counted, it
    # would skew the class weights written for the loss.
    cv2.imwrite(str(tmp_path / 'i.png'), np.zeros((4, 6), np.uint8))
    cv2.imwrite(str(tmp_path / 'm.png'), np.full((6, 4), 255, np.uint8))
    info = dict(image_id='x', seg_map_path=str(tmp_path / 'm.png'),
                img_path=str(tmp_path / 'i.png'))
    with pytest.raises(ValueError, match=r'm\.png has size \(6, 4\), but '
                       r'the image .*i\.png has size \(4, 6\)'):
        count_foreground_pixels(info)
    (tmp_path / 'i.png').write_bytes(b'not a png')
    cv2.imwrite(str(tmp_path / 'm.png'), np.zeros((4, 6), np.uint8))
    with pytest.raises(OSError, match=r'size of image file .*i\.png'):
        count_foreground_pixels(info)
    (tmp_path / 'i.png').unlink()
    with pytest.raises(FileNotFoundError, match=r'i\.png'):
        count_foreground_pixels(info)


def test_label_mismatch_and_empty_foreground(tmp_path):
    masks = _png_masks()
    make_png_root(tmp_path, masks)
    csv_path = tmp_path / 'stage_1_train_images.csv'
    # Flag the empty image positive.
    csv_path.write_text(csv_path.read_text().replace(
        '1.2.7.2,1_train_0_.png,0', '1.2.7.2,1_train_0_.png,1'))
    stats = compute_dataset_statistics(
        str(tmp_path), layout='png', neg_keep_ratio=1.0, val_ratio=0.0,
        progress=False)
    assert stats['label_mismatches'] == 1

    empty_root = tmp_path / 'empty'
    make_png_root(empty_root, {'1.2.7.5': np.zeros((4, 4), np.uint8)})
    with pytest.raises(ValueError, match='class weights are undefined'):
        compute_dataset_statistics(
            str(empty_root), layout='png', neg_keep_ratio=1.0,
            val_ratio=0.0, progress=False)


def test_format_statistics(tmp_path):
    make_png_root(tmp_path, _png_masks())
    stats = compute_dataset_statistics(
        str(tmp_path), layout='png', neg_keep_ratio=1.0, val_ratio=0.0,
        progress=False)
    text = format_statistics(stats)
    assert '| **Original Positive Samples** | 3 |' in text
    assert '41.67:1 (Background:Pneumothorax)' in text
    assert '| pneumothorax | 24 | 2.34% | 21.3333 |' in text
    assert '| **After Balancing - Positive** | 3 |' in text
    assert text.endswith(f'seed=42 ({tmp_path}/splits).')
    # The split table's columns: images, positive, negative.
    n = stats['num_images']
    assert (n['train'], n['train_positive'], n['train_negative']) == (
        4, 3, 1)
    assert '| train | 4 | 3 | 1 |' in text
    # An absolute split folder is named as it is.
    splits = tmp_path.parent / f'{tmp_path.name}_splits'
    stats = compute_dataset_statistics(
        str(tmp_path), layout='png', split_dir=str(splits),
        neg_keep_ratio=1.0, val_ratio=0.0, progress=False)
    assert format_statistics(stats).endswith(f'seed=42 ({splits}).')


def test_format_statistics_names_split_first_counts(tmp_path):
    """split_first undersamples the training subset only: the kept counts
    add the natural validation set's negatives, not "after balancing"."""
    make_png_root(tmp_path, _png_masks())
    stats = compute_dataset_statistics(
        str(tmp_path), layout='png', neg_keep_ratio=0.5, val_ratio=0.5,
        split_order='split_first', progress=False)
    text = format_statistics(stats)
    assert 'After Balancing' not in text
    kept = stats['num_images']['balanced_negative']
    assert (f'| **Kept (Training Subset Undersampled) - Negative** | '
            f'{kept} |') in text
