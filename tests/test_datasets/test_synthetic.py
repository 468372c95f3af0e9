import csv
import glob
import os
import os.path as osp

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

from mmseg_ptx.datasets import (read_dicom, rle_decode_union,
                                synthesize_radiograph, write_demo_dataset)
from mmseg_ptx.datasets.synthetic import SYNTHETIC_MARKER


def read_rows(path):
    with open(path, newline='') as f:
        return list(csv.reader(f))


def tree(root):
    return sorted(osp.relpath(p, root) for p in glob.glob(
        osp.join(root, '**', '*'), recursive=True) if osp.isfile(p))


@pytest.fixture(scope='module')
def dicom_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('dicom'))
    # Seed 1 gives an image with two regions (one row per region).
    masks = write_demo_dataset(root, 4, seed=1, size=64,
                               positive_fraction=0.75)
    return root, masks


def test_dicom_layout(dicom_set):
    root, masks = dicom_set
    files = tree(root)
    assert 'train-rle.csv' in files and SYNTHETIC_MARKER in files
    dcms = [f for f in files if f not in ('train-rle.csv', SYNTHETIC_MARKER)]
    assert len(dcms) == len(masks) == 4
    syntaxes = set()
    for rel in dcms:
        top, study, series, name = rel.split(os.sep)
        assert top == 'dicom-images-train' and name.endswith('.dcm')
        ds = pydicom.dcmread(osp.join(root, rel))
        assert ds.StudyInstanceUID == study
        assert ds.SeriesInstanceUID == series
        assert ds.SOPInstanceUID == name[:-4]
        assert name[:-4] in masks
        assert (ds.Rows, ds.Columns) == (64, 64)
        assert ds.PhotometricInterpretation == 'MONOCHROME2'
        assert (ds.BitsAllocated, ds.BitsStored, ds.SamplesPerPixel) == \
            (8, 8, 1)
        assert str(ds.PatientName).startswith('Demo^Patient')
        assert ds.PatientID and ds.PatientBirthDate and ds.StudyDate
        # Secondary Capture's required attributes (type 2 may be empty).
        assert ds.ConversionType == 'WSD'
        for keyword in ('StudyTime', 'ReferringPhysicianName',
                        'AccessionNumber', 'StudyID', 'PatientOrientation'):
            assert keyword in ds
        syntaxes.add(ds.file_meta.TransferSyntaxUID)
        assert read_dicom(osp.join(root, rel)).shape == (64, 64)
    # A mix of compressed and uncompressed files, like re-exported data.
    assert syntaxes == {JPEGBaseline8Bit, ExplicitVRLittleEndian}


def test_rle_csv(dicom_set):
    root, masks = dicom_set
    rows = read_rows(osp.join(root, 'train-rle.csv'))
    assert rows[0] == ['ImageId', 'EncodedPixels']
    by_id = {}
    for image_id, rle in rows[1:]:
        by_id.setdefault(image_id, []).append(rle)
    assert set(by_id) == set(masks)
    counts = sorted(len(v) for v in by_id.values())
    assert counts[-1] == 2  # one row per region
    assert ['-1'] in by_id.values()  # one negative (0.75 of 4)
    for image_id, rles in by_id.items():
        np.testing.assert_array_equal(
            rle_decode_union(rles, 64, 64), masks[image_id])
        if len(rles) > 1:
            assert '-1' not in rles
            parts = [rle_decode_union([r], 64, 64) for r in rles]
            assert all(p.any() for p in parts)
            assert not (parts[0] & parts[1]).any()


def test_stage1_header(tmp_path):
    write_demo_dataset(str(tmp_path), 3, seed=2, size=64,
                       positive_fraction=0.34, stage1_header=True)
    lines = open(tmp_path / 'train-rle.csv').read().splitlines()
    assert lines[0] == 'ImageId, EncodedPixels'
    values = [line.split(',', 1)[1] for line in lines[1:]]
    assert ' -1' in values
    assert all(v.startswith(' ') for v in values)


def test_png_layout(tmp_path):
    masks = write_demo_dataset(str(tmp_path), 4, seed=3, size=64,
                               layout='png', positive_fraction=0.5)
    rows = read_rows(tmp_path / 'stage_1_train_images.csv')
    assert rows[0] == ['ImageId', 'new_filename', 'has_pneumo']
    assert len(rows) == 5
    assert sorted(tree(str(tmp_path))) == sorted(
        ['stage_1_train_images.csv', SYNTHETIC_MARKER]
        + [osp.join(d, r[1]) for r in rows[1:]
           for d in ('png_images', 'png_masks')])
    for image_id, name, has in rows[1:]:
        img = cv2.imread(str(tmp_path / 'png_images' / name),
                         cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(tmp_path / 'png_masks' / name),
                          cv2.IMREAD_UNCHANGED)
        assert img.shape == mask.shape == (64, 64) and img.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(mask // 255, masks[image_id])
        assert has == str(int(masks[image_id].any()))


def test_both_layouts_hold_the_same_pixels(tmp_path):
    """The PNG images are what the DICOMs decode to, lossy JPEG ones
    included, as in the real re-release; a PNG-only set has the same."""
    write_demo_dataset(str(tmp_path / 'both'), 4, seed=3, size=64,
                       layout='both', positive_fraction=0.5)
    write_demo_dataset(str(tmp_path / 'png'), 4, seed=3, size=64,
                       layout='png', positive_fraction=0.5)
    rows = read_rows(tmp_path / 'both' / 'stage_1_train_images.csv')[1:]
    dicoms = {osp.basename(p)[:-4]: p for p in tree(str(tmp_path / 'both'))
              if p.endswith('.dcm')}
    for image_id, name, _ in rows:
        png = cv2.imread(str(tmp_path / 'both' / 'png_images' / name),
                         cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(
            png, read_dicom(str(tmp_path / 'both' / dicoms[image_id])))
        np.testing.assert_array_equal(png, cv2.imread(
            str(tmp_path / 'png' / 'png_images' / name),
            cv2.IMREAD_UNCHANGED))


def test_deterministic(tmp_path):
    a, b, c = (str(tmp_path / n) for n in 'abc')
    write_demo_dataset(a, 3, seed=4, size=64, layout='both')
    write_demo_dataset(b, 3, seed=4, size=64, layout='both')
    write_demo_dataset(c, 3, seed=5, size=64, layout='both')
    assert tree(a) == tree(b)
    for rel in tree(a):
        assert open(osp.join(a, rel), 'rb').read() == \
            open(osp.join(b, rel), 'rb').read(), rel
    assert tree(a) != tree(c)  # other seed, other UIDs
    png = sorted(glob.glob(osp.join(a, 'png_images', '*')))[0]
    png_c = sorted(glob.glob(osp.join(c, 'png_images', '*')))[0]
    assert not np.array_equal(cv2.imread(png), cv2.imread(png_c))


def test_positive_fraction(tmp_path):
    masks = write_demo_dataset(str(tmp_path), 50, seed=6, size=64,
                               layout='png')
    n_pos = sum(m.any() for m in masks.values())
    assert n_pos == 11  # round(50 * 0.22)
    # Rounded, not cut: 8 * 0.22 = 1.76 gives 2.
    masks = write_demo_dataset(str(tmp_path / 'eight'), 8, seed=6, size=32,
                               layout='png')
    assert sum(m.any() for m in masks.values()) == 2
    masks = write_demo_dataset(str(tmp_path / 'all'), 3, seed=6, size=64,
                               layout='png', positive_fraction=1.0)
    assert all(m.any() for m in masks.values())


def test_synthesize_regions():
    rng = np.random.default_rng(0)
    img, regions = synthesize_radiograph(rng, 96, positive=False)
    assert img.shape == (96, 96) and img.dtype == np.uint8
    assert regions == []
    for i in range(6):
        img, regions = synthesize_radiograph(np.random.default_rng(i), 96,
                                             positive=True)
        assert 1 <= len(regions) <= 2
        for r in regions:
            assert r.dtype == np.uint8 and r.shape == (96, 96) and r.any()
    with pytest.raises(ValueError, match='at least 32'):
        synthesize_radiograph(rng, 16, positive=False)


def best_interval_dice(img, mask):
    """Best Dice of ``lo <= img <= hi`` over all grey intervals."""
    inside = np.concatenate([[0], np.cumsum(
        np.bincount(img[mask > 0], minlength=256))])
    total = np.concatenate([[0], np.cumsum(
        np.bincount(img.ravel(), minlength=256))])
    best = 0.0
    for lo in range(256):
        tp = inside[lo + 1:] - inside[lo]
        pred = total[lo + 1:] - total[lo]
        best = max(best, float((2 * tp / (pred + mask.sum())).max()))
    return best


def test_pneumothorax_not_separable_by_intensity():
    # Even the best grey interval chosen per image with the answer known
    # finds the pneumothorax poorly: texture and shape are needed.
    scores = []
    for i in range(6):
        img, regions = synthesize_radiograph(np.random.default_rng([9, i]),
                                             128, positive=True)
        scores.append(best_interval_dice(img, np.maximum.reduce(regions)))
    assert np.mean(scores) < 0.4, scores


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='layout'):
        write_demo_dataset(str(tmp_path), 1, 0, size=64, layout='jpeg')
    with pytest.raises(ValueError, match='positive_fraction'):
        write_demo_dataset(str(tmp_path), 1, 0, size=64,
                           positive_fraction=1.5)


def test_encoded_masks_give_back_the_masks_kept():
    from mmseg_ptx.datasets.synthetic import EncodedMasks
    rng = np.random.default_rng(0)
    masks = EncodedMasks(5, 7)
    kept = {'a': (rng.random((5, 7)) < 0.3).astype(np.uint8),
            'b': np.zeros((5, 7), np.uint8)}
    for image_id, mask in kept.items():
        masks.add(image_id, mask)
    assert len(masks) == 2 and list(masks) == ['a', 'b']
    for image_id, mask in kept.items():
        np.testing.assert_array_equal(masks[image_id], mask)
    with pytest.raises(ValueError, match=r'mask of c has shape \(7, 5\)'):
        masks.add('c', np.zeros((7, 5), np.uint8))
