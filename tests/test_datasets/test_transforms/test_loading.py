import csv
import glob
import os.path as osp
from collections import defaultdict

import cv2
import numpy as np
import pytest
from mmcv.transforms import Compose
from mmseg.registry import TRANSFORMS

from mmseg_ptx.datasets import (LoadBinaryMaskFromFile,
                                LoadDicomImageFromFile, LoadRLEAnnotations,
                                read_dicom, write_demo_dataset)


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo'))
    masks = write_demo_dataset(root, 6, seed=5, size=64, layout='both',
                               positive_fraction=0.5)
    dicoms = {osp.splitext(osp.basename(p))[0]: p for p in glob.glob(
        osp.join(root, 'dicom-images-train', '*', '*', '*.dcm'))}
    rles = defaultdict(list)
    with open(osp.join(root, 'train-rle.csv'), newline='') as f:
        for row in csv.DictReader(f):
            rles[row['ImageId']].append(row['EncodedPixels'])
    with open(osp.join(root, 'stage_1_train_images.csv'), newline='') as f:
        pngs = {row['ImageId']: row['new_filename']
                for row in csv.DictReader(f)}
    return dict(root=root, masks=masks, dicoms=dicoms, rles=rles, pngs=pngs)


def test_registered():
    for name in ('LoadDicomImageFromFile', 'LoadRLEAnnotations',
                 'LoadBinaryMaskFromFile'):
        assert TRANSFORMS.get(name) is not None
    assert isinstance(TRANSFORMS.build(dict(type='LoadDicomImageFromFile')),
                      LoadDicomImageFromFile)


def test_load_dicom_colour_and_grey(demo):
    path = next(iter(demo['dicoms'].values()))
    grey = read_dicom(path)
    results = LoadDicomImageFromFile()(dict(img_path=path))
    img = results['img']
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], grey)
    assert results['img_shape'] == results['ori_shape'] == (64, 64)

    results = LoadDicomImageFromFile(to_float32=True,
                                     color_type='grayscale')(
        dict(img_path=path))
    assert results['img'].dtype == np.float32
    np.testing.assert_array_equal(results['img'], grey)
    with pytest.raises(ValueError, match='color_type'):
        LoadDicomImageFromFile(color_type='unchanged')


def test_load_png_image(demo):
    image_id, name = next(iter(demo['pngs'].items()))
    path = osp.join(demo['root'], 'png_images', name)
    img = LoadDicomImageFromFile()(dict(img_path=path))['img']
    np.testing.assert_array_equal(img[..., 0],
                                  cv2.imread(path, cv2.IMREAD_GRAYSCALE))


def test_load_dicom_without_extension(demo, tmp_path):
    src = next(iter(demo['dicoms'].values()))
    dst = tmp_path / 'IM0001'
    dst.write_bytes(open(src, 'rb').read())
    img = LoadDicomImageFromFile()(dict(img_path=str(dst)))['img']
    np.testing.assert_array_equal(img[..., 0], read_dicom(src))


@pytest.mark.parametrize('name', ['gone.dcm', 'gone.png'])
def test_missing_image_names_file(tmp_path, name):
    path = str(tmp_path / name)
    with pytest.raises(OSError, match='not found') as err:
        LoadDicomImageFromFile()(dict(img_path=path))
    assert path in str(err.value)


def test_undecodable_png_names_file(tmp_path):
    path = tmp_path / 'bad.png'
    path.write_bytes(b'not a png')
    with pytest.raises(OSError, match='Cannot decode') as err:
        LoadDicomImageFromFile()(dict(img_path=str(path)))
    assert str(path) in str(err.value)


def test_rle_masks_match_ground_truth(demo):
    assert any(m.any() for m in demo['masks'].values())
    load = Compose([LoadDicomImageFromFile(), LoadRLEAnnotations()])
    for image_id, path in demo['dicoms'].items():
        results = load(dict(img_path=path, image_id=image_id,
                            rle=demo['rles'][image_id]))
        mask = results['gt_seg_map']
        assert mask.dtype == np.uint8 and mask.shape == (64, 64)
        np.testing.assert_array_equal(mask, demo['masks'][image_id])
        assert results['seg_fields'] == ['gt_seg_map']
        assert results['reduce_zero_label'] is False


def test_rle_empty_and_existing_keys():
    results = LoadRLEAnnotations()(dict(
        ori_shape=(4, 5), rle=[], seg_fields=['other'],
        reduce_zero_label=True))
    assert results['gt_seg_map'].shape == (4, 5)
    assert not results['gt_seg_map'].any()
    assert results['seg_fields'] == ['other', 'gt_seg_map']
    assert results['reduce_zero_label'] is True
    results = LoadRLEAnnotations()(dict(ori_shape=(4, 5), rle=['-1']))
    assert not results['gt_seg_map'].any()
    # One RLE string (a data list written by hand) is a list of one.
    one = LoadRLEAnnotations()(dict(ori_shape=(4, 5), rle='3 2 5 1'))
    listed = LoadRLEAnnotations()(dict(ori_shape=(4, 5), rle=['3 2 5 1']))
    assert one['gt_seg_map'].sum() == 3
    np.testing.assert_array_equal(one['gt_seg_map'], listed['gt_seg_map'])


def test_no_rle_names_image_and_the_png_transform():
    """A PNG-layout sample (seg_map_path, no rle) through the DICOM
    layout's transform: an error saying which transform reads it."""
    with pytest.raises(ValueError, match=r'no RLE for IMG-7: .*has no "rle" '
                       r'\(a PNG-layout sample: use LoadBinaryMaskFromFile'):
        LoadRLEAnnotations()(dict(ori_shape=(8, 8), image_id='IMG-7',
                                  seg_map_path='png_masks/7.png'))
    with pytest.raises(ValueError, match=r'no RLE for IMG-8: .*"rle"$'):
        LoadRLEAnnotations()(dict(ori_shape=(8, 8), image_id='IMG-8'))


def test_malformed_rle_names_image():
    with pytest.raises(ValueError, match=r'IMG-42.*even count'):
        LoadRLEAnnotations()(dict(ori_shape=(8, 8), image_id='IMG-42',
                                  rle=['1 2 3']))
    with pytest.raises(ValueError, match=r'/x/y\.dcm.*past the end'):
        LoadRLEAnnotations()(dict(ori_shape=(2, 2), img_path='/x/y.dcm',
                                  rle=['1 2 0 2']))
    # The bounds are checked only here: the image file and the CSV lines
    # are named, as the dataset's syntax errors name them, where known.
    with pytest.raises(ValueError, match=r'^Bad RLE for image IMG-8 \(/x/8'
                       r'\.dcm; 2x2 image\)'):
        LoadRLEAnnotations()(dict(ori_shape=(2, 2), img_path='/x/8.dcm',
                                  image_id='IMG-8', rle=['1 2 0 2']))
    with pytest.raises(ValueError, match=r'^Bad RLE for image IMG-9 \(/x/9'
                       r'\.dcm; a\.csv, lines 3, 8; 2x2 image\): .*past the '
                       r'end'):
        LoadRLEAnnotations()(dict(ori_shape=(2, 2), img_path='/x/9.dcm',
                                  image_id='IMG-9', rle=['0 1', '1 2 0 2'],
                                  rle_source='a.csv, lines 3, 8'))
    # Values that overflow int64 sums are refused before decoding.
    with pytest.raises(ValueError, match=r'IMG-43.*exceeds the 4 pixels'):
        LoadRLEAnnotations()(dict(ori_shape=(2, 2), image_id='IMG-43',
                                  rle=['99999999999999999999 1']))


def test_rle_needs_loaded_image():
    with pytest.raises(ValueError, match='after the image loading'):
        LoadRLEAnnotations()(dict(image_id='a', rle=['-1']))


def test_png_masks_match_ground_truth(demo):
    load = Compose([LoadDicomImageFromFile(), LoadBinaryMaskFromFile()])
    for image_id, name in demo['pngs'].items():
        results = load(dict(
            img_path=osp.join(demo['root'], 'png_images', name),
            seg_map_path=osp.join(demo['root'], 'png_masks', name)))
        np.testing.assert_array_equal(results['gt_seg_map'],
                                      demo['masks'][image_id])
        assert results['seg_fields'] == ['gt_seg_map']
        assert results['reduce_zero_label'] is False


def test_binary_mask_any_nonzero(tmp_path):
    path = str(tmp_path / 'm.png')
    cv2.imwrite(path, np.array([[0, 1], [128, 255]], np.uint8))
    mask = LoadBinaryMaskFromFile()(dict(seg_map_path=path))['gt_seg_map']
    np.testing.assert_array_equal(mask, [[0, 1], [1, 1]])


@pytest.mark.parametrize('stored', [
    np.array([[0, 1], [0, 1]], np.uint16),  # once all zeros: scaled to 8 bit
    np.array([[0, 65535], [0, 1]], np.uint16),
    np.array([[[0, 0, 0], [0, 0, 1]], [[0, 0, 0], [255, 255, 255]]],
             np.uint8),  # colour; BGR-to-grey rounded the faint red to 0
    np.array([[[0, 0, 0, 255], [0, 9, 0, 255]],
              [[0, 0, 0, 255], [9, 0, 0, 0]]], np.uint8),  # alpha ignored
])
def test_binary_mask_as_stored(tmp_path, stored):
    path = str(tmp_path / 'm.png')
    assert cv2.imwrite(path, stored)
    mask = LoadBinaryMaskFromFile()(dict(seg_map_path=path))['gt_seg_map']
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, [[0, 1], [0, 1]])


def test_png_images_8_and_16_bit(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    cv2.imwrite(str(tmp_path / 'g.png'), grey)
    cv2.imwrite(str(tmp_path / 'c.png'), np.dstack([grey] * 3))
    # 12-bit data in a 16-bit PNG: OpenCV's grey conversion divides by 256
    # (values 0..14 here); scaled from its own range like deep DICOMs.
    cv2.imwrite(str(tmp_path / 'p12.png'), grey.astype(np.uint16) * 16)
    load = LoadDicomImageFromFile(color_type='grayscale')

    def loaded(name):
        img = load(dict(img_path=str(tmp_path / name)))['img']
        assert img.dtype == np.uint8 and img.shape == (6, 8), name
        return img

    np.testing.assert_array_equal(loaded('g.png'), grey)
    np.testing.assert_array_equal(loaded('c.png'), grey)
    np.testing.assert_allclose(loaded('p12.png'), grey * (255 / 235),
                               atol=0.5)


@pytest.mark.parametrize('ext', ['png', 'jpg'])
def test_exif_orientation_keeps_the_image_on_its_mask(tmp_path, ext):
    """An EXIF orientation tag (a re-exported PNG or JPEG) rotates neither
    the image nor the mask: both keep the stored pixel grid, so they stay
    aligned (OpenCV would turn the image only)."""
    from PIL import Image
    img = np.full((64, 48), 40, np.uint8)
    img[:16, :16] = 220  # the pneumothorax: a bright top-left square
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    for name, array in (('img', img), ('mask', (img > 100) * 255)):
        Image.fromarray(array.astype(np.uint8)).save(
            tmp_path / f'{name}.{ext}', exif=exif.tobytes(), quality=100)
    pipeline = Compose([
        LoadDicomImageFromFile(color_type='grayscale'),
        LoadBinaryMaskFromFile()
    ])
    results = pipeline(dict(img_path=str(tmp_path / f'img.{ext}'),
                            seg_map_path=str(tmp_path / f'mask.{ext}'),
                            seg_fields=[]))
    assert results['img'].shape == results['gt_seg_map'].shape == (64, 48)
    np.testing.assert_array_equal(results['img'] > 100,
                                  results['gt_seg_map'] == 1)


def test_empty_files_are_decode_errors(tmp_path):
    # OpenCV raises its own error type on an empty buffer.
    path = tmp_path / 'empty.png'
    path.write_bytes(b'')
    with pytest.raises(OSError, match='empty.png'):
        LoadDicomImageFromFile()(dict(img_path=str(path)))
    with pytest.raises(OSError, match='empty.png'):
        LoadBinaryMaskFromFile()(dict(seg_map_path=str(path)))


def test_binary_mask_errors(tmp_path):
    missing = str(tmp_path / 'none.png')
    with pytest.raises(FileNotFoundError, match='Mask file not found') as e:
        LoadBinaryMaskFromFile()(dict(seg_map_path=missing))
    assert missing in str(e.value)
    path = str(tmp_path / 'm.png')
    cv2.imwrite(path, np.zeros((4, 6), np.uint8))
    with pytest.raises(ValueError, match=r'm\.png has size \(4, 6\)'):
        LoadBinaryMaskFromFile()(dict(seg_map_path=path, ori_shape=(6, 4),
                                      img_path='img.png'))


def test_pipeline_with_mmseg_transforms(demo):
    image_id, path = next((i, p) for i, p in demo['dicoms'].items()
                          if demo['masks'][i].any())
    pipeline = Compose([TRANSFORMS.build(t) for t in [
        dict(type='LoadDicomImageFromFile'),
        dict(type='LoadRLEAnnotations'),
        dict(type='Resize', scale=(32, 32), keep_ratio=False),
        dict(type='RandomFlip', prob=1.0, direction='horizontal'),
        dict(type='PackSegInputs'),
    ]])
    out = pipeline(dict(img_path=path, image_id=image_id,
                        rle=demo['rles'][image_id]))
    assert tuple(out['inputs'].shape) == (3, 32, 32)
    seg = out['data_samples'].gt_sem_seg.data.numpy()[0]
    expected = cv2.resize(demo['masks'][image_id], (32, 32),
                          interpolation=cv2.INTER_NEAREST)[:, ::-1]
    np.testing.assert_array_equal(seg, expected)
