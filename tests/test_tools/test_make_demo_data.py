import glob
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_cli_writes_both_layouts(tmp_path):
    out = tmp_path / 'demo'
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep
               + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'make_demo_data.py'),
         '--out', str(out), '--num', '3', '--seed', '1', '--size', '64',
         '--layout', 'both', '--positive-fraction', '0.34',
         '--stage1-header'],
        capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'Wrote 3 images' in proc.stdout
    assert 'positive images: 1 (33.3%)' in proc.stdout
    assert len(glob.glob(str(out / 'dicom-images-train/*/*/*.dcm'))) == 3
    assert len(os.listdir(out / 'png_images')) == 3
    assert len(os.listdir(out / 'png_masks')) == 3
    # The foreground share printed is that of the masks written.
    import cv2
    fg = sum(int((cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0).sum())
             for path in (out / 'png_masks').iterdir())
    assert fg > 0
    assert f'foreground pixels: {fg / (3 * 64 ** 2):.3%}' in proc.stdout
    header = open(out / 'train-rle.csv').readline().rstrip('\n')
    assert header == 'ImageId, EncodedPixels'
    assert open(out / 'stage_1_train_images.csv').readline().startswith(
        'ImageId,new_filename,has_pneumo')


def test_cli_rejects_bad_layout(tmp_path, tool_main):
    status, _, err = tool_main('make_demo_data', '--out', tmp_path, '--num',
                               '1', '--seed', '0', '--layout', 'tiff')
    assert status == 2 and 'invalid choice' in err


def test_cli_keeps_an_existing_data_set(tmp_path, tool_main):
    def run(*extra):
        return tool_main('make_demo_data', '--out', tmp_path, '--num', '2',
                         '--seed', '0', '--size', '32', *extra)

    csv = tmp_path / 'train-rle.csv'
    csv.write_text('ImageId,EncodedPixels\nreal_image,-1\n')
    status, _, err = run()
    assert status == 2
    assert 'already holds train-rle.csv' in err
    assert '--overwrite' in err
    assert csv.read_text() == 'ImageId,EncodedPixels\nreal_image,-1\n'
    assert not (tmp_path / 'dicom-images-train').exists()

    # --overwrite replaces the set: earlier images and splits go with it.
    stale = tmp_path / 'dicom-images-train' / 'old' / 'old' / 'old.dcm'
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b'')
    (tmp_path / 'splits').mkdir()
    (tmp_path / 'splits' / 'train.txt').write_text('real_image\n')
    status, _, err = run('--overwrite')
    assert status == 0, err
    assert 'real_image' not in csv.read_text()
    assert not stale.exists() and not (tmp_path / 'splits').exists()
    assert len(glob.glob(str(tmp_path / 'dicom-images-train/*/*/*.dcm'))) == 2

    # Written anew (the tool's own set): the split files and the
    # statistics go, a file of the user's in splits/ stays.
    splits = tmp_path / 'splits'
    splits.mkdir()
    for name in ('train.txt', 'val.txt', 'split_meta.json', 'stats.json',
                 'my_notes.txt'):
        (splits / name).write_text('x')
    status, _, err = run()
    assert status == 0, err
    assert [p.name for p in splits.iterdir()] == ['my_notes.txt']


@pytest.mark.parametrize('args, message', [
    (['--num', '0'], 'num must be positive, got 0'),
    (['--size', '16'], 'size must be at least 32 pixels, got 16'),
    (['--positive-fraction', '1.5'], 'positive_fraction must be in [0, 1]'),
])
def test_cli_bad_numbers_are_usage_errors(tmp_path, tool_main, args,
                                          message):
    """One line, exit status 2, and nothing written."""
    base = {'--num': '2', '--size': '32'}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    status, _, err = tool_main('make_demo_data', '--out', tmp_path / 'd',
                               '--seed', '0',
                               *[x for kv in base.items() for x in kv])
    assert status == 2
    assert err.startswith(f'error: {message}')
    assert not (tmp_path / 'd').exists()


def test_interrupted_demo_set_is_written_anew(tmp_path):
    # The CSV is written last: a run stopped before it leaves images and
    # the marker; the next run (make demo's) replaces them unasked.
    from mmseg_ptx.datasets.synthetic import (SYNTHETIC_MARKER,
                                              write_demo_dataset)
    write_demo_dataset(str(tmp_path), 2, seed=0, size=32)
    (tmp_path / 'train-rle.csv').unlink()
    assert (tmp_path / SYNTHETIC_MARKER).is_file()
    masks = write_demo_dataset(str(tmp_path), 3, seed=1, size=32)
    assert len(masks) == 3
    assert len(glob.glob(str(tmp_path / 'dicom-images-train/*/*/*.dcm'))) == 3
    assert 'seed=1' in (tmp_path / SYNTHETIC_MARKER).read_text()

    # A CSV put in place of the one written (real labels, say) is kept.
    (tmp_path / 'train-rle.csv').write_text('ImageId,EncodedPixels\nx,-1\n')
    with pytest.raises(FileExistsError, match='already holds'):
        write_demo_dataset(str(tmp_path), 2, seed=0, size=32)
    assert 'x,-1' in (tmp_path / 'train-rle.csv').read_text()


def test_real_images_beside_a_demo_marker_are_kept(tmp_path):
    from mmseg_ptx.datasets.synthetic import write_demo_dataset
    real = tmp_path / 'dicom-images-train' / '1.2.3' / '4.5.6' / 'real.dcm'

    def real_image_is_kept():
        real.parent.mkdir(parents=True, exist_ok=True)
        real.write_bytes(b'real')
        with pytest.raises(FileExistsError, match='dicom-images-train'):
            write_demo_dataset(str(tmp_path), 2, seed=0, size=32)
        assert real.read_bytes() == b'real'

    # A PNG demo set was written here, then real DICOMs were copied in
    # (their labels under another name): the marker does not vouch for
    # that folder, so it is not taken for an interrupted demo run.
    write_demo_dataset(str(tmp_path), 2, seed=0, size=32, layout='png')
    real_image_is_kept()
    # A DICOM demo run stopped before its CSV, with a real image put into
    # its folder afterwards: kept too.
    real.unlink()
    write_demo_dataset(str(tmp_path), 2, seed=0, size=32)
    (tmp_path / 'train-rle.csv').unlink()
    real_image_is_kept()

    # Without it, the interrupted run is written anew, and the PNG set's
    # records survive: that set is still replaced unasked.
    real.unlink()
    write_demo_dataset(str(tmp_path), 3, seed=1, size=32)
    assert len(glob.glob(str(tmp_path / 'dicom-images-train/*/*/*.dcm'))) == 3
    write_demo_dataset(str(tmp_path), 3, seed=1, size=32, layout='png')
    assert len(os.listdir(tmp_path / 'png_images')) == 3


def test_marker_of_the_previous_version_and_none(tmp_path):
    from mmseg_ptx.datasets.synthetic import (SYNTHETIC_MARKER,
                                              write_demo_dataset)
    # A set written before image folders were recorded: its marker's
    # settings line names the files, so an interrupted one is replaced.
    write_demo_dataset(str(tmp_path), 2, seed=0, size=32)
    marker = tmp_path / SYNTHETIC_MARKER
    marker.write_text(''.join(
        line for line in marker.read_text().splitlines(keepends=True)
        if not line.startswith('folder ')))
    (tmp_path / 'train-rle.csv').unlink()
    write_demo_dataset(str(tmp_path), 3, seed=1, size=32)
    assert len(glob.glob(str(tmp_path / 'dicom-images-train/*/*/*.dcm'))) == 3

    # No marker: even an empty image folder is not the tool's to replace.
    other = tmp_path / 'other'
    (other / 'dicom-images-train').mkdir(parents=True)
    with pytest.raises(FileExistsError, match='dicom-images-train'):
        write_demo_dataset(str(other), 2, seed=0, size=32)
