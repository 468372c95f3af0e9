import glob
import os
import os.path as osp
import subprocess
import sys

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
    header = open(out / 'train-rle.csv').readline().rstrip('\n')
    assert header == 'ImageId, EncodedPixels'
    assert open(out / 'stage_1_train_images.csv').readline().startswith(
        'ImageId,new_filename,has_pneumo')


def test_cli_rejects_bad_layout(tmp_path):
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'make_demo_data.py'),
         '--out', str(tmp_path), '--num', '1', '--seed', '0',
         '--layout', 'tiff'], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and 'invalid choice' in proc.stderr
