"""tools/infer.py and tools/tune_postprocess.py with an untrained model."""
import csv
import glob
import json
import os
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest
import torch
from tiny_model import build_tiny_model, save_tiny_checkpoint

from conftest import (PYTHON, ROOT, TINY_CONFIG, load_tool,
                      write_test_pipeline_child, write_tiny_run_config)
from mmseg_ptx.apis import (UsageError, build_postprocessor,
                            predict_probabilities, read_image)
from mmseg_ptx.datasets import SIIMPneumothoraxDataset
from mmseg_ptx.datasets.rle import rle_decode


def test_infer_folder_with_a_corrupt_file(tmp_path, demo_root):
    models = [build_tiny_model(seed) for seed in (0, 1)]
    ckpt, ckpt2 = (save_tiny_checkpoint(model, tmp_path / f'tiny{i}.pth')
                   for i, model in enumerate(models))
    src = tmp_path / 'in'
    (src / 'nested').mkdir(parents=True)
    dicoms = sorted(glob.glob(str(demo_root / 'dicom-images-train' / '**' /
                                  '*.dcm'), recursive=True))[:2]
    for path in dicoms:
        shutil.copy(path, src / 'nested')
    png = sorted((demo_root / 'png_images').glob('*.png'))[0]
    shutil.copy(png, src / 'plain.png')
    (src / 'broken.dcm').write_bytes(b'not a dicom at all')
    # One ImageId, two files: which one the row would come from is
    # unknown, so neither is predicted.
    (src / 'copy').mkdir()
    shutil.copy(dicoms[1], src / 'copy')
    # An earlier (here: interrupted) run's outputs under INPUT are left
    # out, not predicted.
    earlier = src / 'earlier_run'
    (earlier / 'masks').mkdir(parents=True)
    (earlier / 'overlays').mkdir()
    shutil.copy(png, earlier / 'masks' / 'plain.png')
    # Reads, but resizes to height 0: its batch fails in the pipeline and
    # is predicted image by image, so only this one is lost.
    cv2.imwrite(str(src / 'strip.png'), np.full((1, 600), 90, np.uint8))
    # A DICOM without the suffix is not an image of the folder, but said.
    shutil.copy(dicoms[0], src / 'no_suffix')
    out = tmp_path / 'out'
    cmd = [PYTHON, 'tools/infer.py', str(TINY_CONFIG), str(ckpt), str(src),
           '--out', str(out), '--device', 'cpu', '--batch-size', '2',
           '--save-prob', '--tta', '--extra-model', str(TINY_CONFIG),
           str(ckpt2), '--postprocess-cfg', 'min_area=0',
           'bottom_threshold=0.6']
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=_env())
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'broken.dcm' in proc.stderr
    assert 'Leaving out 1 mask/overlay PNG(s)' in proc.stderr
    assert ('Leaving out 1 file(s) under INPUT that do not end in .dcm'
            in proc.stderr)
    errors = (out / 'errors.txt').read_text().splitlines()
    assert len(errors) == 4
    duplicate = dicoms[1].rsplit('/', 1)[-1]
    assert sorted(e.split('\t')[0] for e in errors[:2]) == sorted(
        [str(src / 'copy' / duplicate), str(src / 'nested' / duplicate)])
    assert all('none of them is predicted' in e for e in errors[:2])
    assert errors[2].startswith(str(src / 'broken.dcm'))
    assert errors[3].startswith(f'{src / "strip.png"}\tprediction failed')
    assert ('submission.csv has no row for the 4 file(s) below; Kaggle '
            'needs one for every test image') in proc.stderr

    sources = {dicoms[0].rsplit('/', 1)[-1][:-4]: dicoms[0],
               'plain': str(src / 'plain.png')}
    with open(out / 'submission.csv') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['ImageId', 'EncodedPixels']
    assert sorted(r[0] for r in rows[1:]) == sorted(sources)
    between = 0
    for image_id, rle in rows[1:]:
        mask = cv2.imread(str(out / 'masks' / f'{image_id}.png'),
                          cv2.IMREAD_UNCHANGED)
        assert mask.shape == (128, 128)  # the original resolution
        assert set(np.unique(mask)) <= {0, 255}
        np.testing.assert_array_equal(rle_decode(rle, 128, 128),
                                      mask // 255)
        overlay = cv2.imread(str(out / 'overlays' / f'{image_id}.png'))
        assert overlay.shape == (128, 128, 3)
        prob = np.load(out / 'probs' / f'{image_id}.npy')
        assert prob.dtype == np.float16 and prob.shape == (128, 128)
        # Both models, each averaged with the flipped image (float16
        # rounding aside); the flip and the second model do change it.
        img = read_image(sources[image_id], models)
        (expected, ) = predict_probabilities(models, [img], tta=True)
        np.testing.assert_allclose(prob, expected, atol=1e-3)
        for other in (predict_probabilities(models, [img])[0],
                      predict_probabilities(models[:1], [img], tta=True)[0]):
            assert np.abs(other - expected).max() > 1e-2
        # min_area=0 (every image passes the top threshold's area test),
        # bottom 0.6 (the config's is 0.3): the mask is the probability
        # above 0.6 (float16 rounding aside).
        near = np.abs(prob.astype(np.float32) - 0.6) < 1e-3
        np.testing.assert_array_equal((mask > 0)[~near], (prob > 0.6)[~near])
        between += int(((prob > 0.3) & (prob < 0.6)).sum())
    assert between > 0  # where the config's bottom threshold would differ


def test_infer_stops_when_nothing_predicts(tmp_path, tool_main, capsys):
    # Eight failures before any success point at the model, not the
    # images: the run stops with the error instead of listing every image.
    ckpt = save_tiny_checkpoint(build_tiny_model(), tmp_path / 'tiny.pth')
    src = tmp_path / 'in'
    src.mkdir()
    for i in range(10):
        cv2.imwrite(str(src / f'strip{i}.png'), np.zeros((1, 600), np.uint8))
    # The last failure goes on, so a process ends with its traceback.
    with pytest.raises(cv2.error, match='inv_scale_x > 0'):
        tool_main('infer', TINY_CONFIG, ckpt, src, '--out', tmp_path / 'out',
                  '--device', 'cpu')
    assert ('The first 8 images all failed in prediction; stopping'
            in capsys.readouterr().err)
    assert not (tmp_path / 'out' / 'submission.csv').exists()
    # After one success the same failures are the images': listed, and
    # the run ends with its submission.
    cv2.imwrite(str(src / 'a_radiograph.png'), np.zeros((64, 64), np.uint8))
    status, _, err = tool_main('infer', TINY_CONFIG, ckpt, src, '--out',
                               tmp_path / 'out2', '--device', 'cpu',
                               '--batch-size', '1')
    assert status == 1, err
    rows = (tmp_path / 'out2' / 'submission.csv').read_text().splitlines()
    assert [row.split(',')[0] for row in rows] == ['ImageId', 'a_radiograph']
    errors = (tmp_path / 'out2' / 'errors.txt').read_text().splitlines()
    assert len(errors) == 10
    assert err.count('ERROR ') == 10
    assert (f'10 file(s) failed, listed in {tmp_path}/out2/errors.txt\n'
            in err)


def test_infer_a_nan_model_writes_no_empty_rows(tmp_path, tool_main):
    # NaN is below every threshold: each image would be written as -1.
    model = build_tiny_model()
    with torch.no_grad():
        model.decode_head.conv_seg.bias[1] = float('nan')
    ckpt = save_tiny_checkpoint(model, tmp_path / 'nan.pth')
    src = tmp_path / 'in'
    src.mkdir()
    for name in ('a.png', 'b.png'):
        cv2.imwrite(str(src / name), np.zeros((64, 64), np.uint8))
    status, _, err = tool_main('infer', TINY_CONFIG, ckpt, src, '--out',
                               tmp_path / 'out', '--device', 'cpu')
    assert status == 1, err
    rows = (tmp_path / 'out' / 'submission.csv').read_text().splitlines()
    assert rows == ['ImageId,EncodedPixels']
    errors = (tmp_path / 'out' / 'errors.txt').read_text().splitlines()
    assert [e.split('\t')[0] for e in errors] == [
        str(src / 'a.png'), str(src / 'b.png')]
    assert all('the probability map contains NaN' in e for e in errors)


def test_many_failed_files_are_printed_first_ten(tmp_path, capsys):
    """A test set the reader cannot decode (a codec missing, say): all
    of it in errors.txt, the first ten on stderr, not thousands of
    lines."""
    infer = load_tool('infer')
    errors = [(f'/data/test/{i}.dcm', 'not a DICOM\n file') for i in range(25)]
    assert infer.report_errors(errors, str(tmp_path)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:10] == [f'ERROR /data/test/{i}.dcm: not a DICOM file'
                        for i in range(10)]
    assert err[10:] == [f'25 file(s) failed, listed in {tmp_path}/errors.txt '
                        '(the first 10 above)']
    assert (tmp_path / 'errors.txt').read_text().splitlines() == [
        f'/data/test/{i}.dcm\tnot a DICOM file' for i in range(25)]


def test_tune_postprocess_writes_json(tmp_path, demo_root, tool_main,
                                      monkeypatch):
    ckpt = save_tiny_checkpoint(build_tiny_model(), tmp_path / 'tiny.pth')
    # The data where --cfg-options says, as with tools/test.py.
    cfg = write_tiny_run_config(tmp_path / 'cfg.py', tmp_path / 'nowhere')
    # A folder below a file is refused before the model's pass, not when
    # the results are written.
    status, _, err = tool_main('tune_postprocess', cfg, ckpt, '--out',
                               f'{ckpt}/tuned.json')
    assert status == 2
    assert err == (f'error: --out {ckpt}/tuned.json: {ckpt} is a file, not '
                   'a folder\n')
    # Its folder is made (before the model's pass, not after it).
    out = tmp_path / 'new' / 'tuned.json'
    args = [cfg, ckpt, '--out', out, '--device', 'cpu', '--num-workers',
            '0', '--top', '0.5,0.7,0.5', '--min-area', '0,100,0', '--bottom',
            '0.3,0.6', '--folds', '0', '--cfg-options',
            f'val_dataloader.dataset.data_root={demo_root}']
    # One image is of one class: every setting that empties (or keeps) it
    # ties, so none can be chosen.
    status, _, err = tool_main('tune_postprocess', *args, '--max-images',
                               '1')
    assert status == 2
    assert re.fullmatch(
        r'error: the 1 validation image\(s\) tuned on \(the first 1: '
        r'--max-images 1\) are all (positive|negative): no post-processing '
        r'setting can be chosen on images of one class\. .*\n', err)
    # Where the dataset's labels are unknown, the masks tell after the
    # model has run.
    with monkeypatch.context() as patch:
        real = SIIMPneumothoraxDataset.get_data_info

        def unlabelled(self, idx):
            info = dict(real(self, idx))
            del info['has_pneumothorax']
            return info

        patch.setattr(SIIMPneumothoraxDataset, 'get_data_info', unlabelled)
        status, _, err = tool_main('tune_postprocess', *args,
                                   '--max-images', '1')
    assert status == 2
    assert 'no post-processing setting can be chosen on images of one ' \
        'class' in err
    status, stdout, err = tool_main('tune_postprocess', *args)
    assert status == 0, err
    result = json.loads(out.read_text(), parse_constant=_reject_constant)
    assert result['num_images'] == 2 and result['num_positive'] == 1
    assert result['cfg_options'] == {
        'val_dataloader.dataset.data_root': str(demo_root)}
    # A value given twice is one grid value.
    assert result['grid']['top'] == [0.5, 0.7]
    assert result['grid']['min_area'] == [0, 100]
    rows = result['results']
    # bottom 0.6 > top 0.5 is skipped for both areas
    assert len(rows) == 2 * 2 * 2 - 2
    scores = [r['kaggle_dice'] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert result['best'] == rows[0]
    assert result['config_snippet'].startswith(
        "postprocess=dict(type='TripletThresholdPostProcessor'")
    assert 'plain 0.5 threshold' in stdout
    assert 'must say test_evaluator = val_evaluator again' in stdout
    assert 'tools/test.py on these images then scores it in-sample' in stdout
    # --folds 0: no held-out estimate, but the score is said in-sample.
    assert 'held_out' not in result
    assert (f'The best kaggle_dice {rows[0]["kaggle_dice"]:.4f} is '
            'in-sample') in stdout


def test_tune_postprocess_held_out_estimate(tmp_path, demo_root, tool_main):
    ckpt = save_tiny_checkpoint(build_tiny_model(), tmp_path / 'tiny.pth')
    cfg = write_tiny_run_config(tmp_path / 'cfg.py', demo_root)
    out = tmp_path / 'tuned.json'
    args = [cfg, ckpt, '--out', out, '--device', 'cpu', '--num-workers', '0',
            '--top', '0.5,0.7', '--min-area', '0,100', '--bottom', '0.3,0.6']
    # The demo's validation set has 2 images, one positive: 5 folds asked
    # for are refused before the model runs over them.
    status, _, err = tool_main('tune_postprocess', *args, '--folds', '5')
    assert status == 2
    assert 'error: --folds 5 needs at least 5 images, 2 are tuned on' in err
    assert not out.exists()
    # By default, 5 folds, or one per image where there are fewer: 2.
    status, stdout, err = tool_main('tune_postprocess', *args)
    assert status == 0, err
    result = json.loads(out.read_text(), parse_constant=_reject_constant)
    held = result['held_out']
    assert held['num_folds'] == 2
    # Stratified: the positive image is held out in one fold, the negative
    # in the other (their per-class Dice of the other class is null).
    first, second = held['folds']
    assert first['num_images'] == second['num_images'] == 1
    assert first['held_out']['kaggle_dice_neg'] is None
    assert second['held_out']['kaggle_dice_pos'] is None
    grid = {(r['top_threshold'], r['min_area'], r['bottom_threshold'])
            for r in result['results']}
    for fold in held['folds']:
        assert (fold['top_threshold'], fold['min_area'],
                fold['bottom_threshold']) in grid
        assert set(fold['in_sample']) == set(fold['held_out']) == {
            'kaggle_dice', 'kaggle_dice_pos', 'kaggle_dice_neg', 'num_empty'}
    # Every image held out once: the folds' scores weighted by size.
    assert held['kaggle_dice'] == pytest.approx(
        (first['held_out']['kaggle_dice'] +
         second['held_out']['kaggle_dice']) / 2)
    assert held['num_same_as_all'] in (0, 1, 2)
    assert (f'2-fold cross-validated held-out estimate: '
            f'{held["kaggle_dice"]:.4f} ({held["num_same_as_all"]} of 2 '
            'folds chose the same setting') in stdout
    assert (f'The best kaggle_dice {result["best"]["kaggle_dice"]:.4f} is '
            'in-sample') in stdout
    # One of the two images is positive: 50 %, against about 21 % in the
    # Kaggle test set.
    assert '2 validation images, 1 of them positive (50.0%)' in stdout
    assert ('warning: 50% of the validation images are positive, against '
            'about 21 % in the Kaggle test set') in err
    assert 'or tune on a natural validation set' in err

    # Ranked at the test set's share of positives: no warning.
    status, stdout, err = tool_main('tune_postprocess', *args, '--folds', '0',
                                    '--positive-share', '0.21')
    assert status == 0, err
    # (Python's warnings of the model's building may be printed again.)
    assert 'of the validation images are positive' not in err
    result = json.loads(out.read_text(), parse_constant=_reject_constant)
    assert (result['num_positive'], result['positive_share']) == (1, 0.21)
    rows = result['results']
    scores = [r['kaggle_dice_reweighted'] for r in rows]
    assert scores == sorted(scores, reverse=True)
    for row in rows:
        assert row['kaggle_dice_reweighted'] == pytest.approx(
            0.21 * row['kaggle_dice_pos'] + 0.79 * row['kaggle_dice_neg'])
    assert (f'The best kaggle_dice_reweighted {scores[0]:.4f} is '
            'in-sample') in stdout
    # Held-out folds of one image each cannot be weighed: a usage error.
    status, _, err = tool_main('tune_postprocess', *args,
                               '--positive-share', '0.21')
    assert status == 2
    assert ('error: --positive-share: positive_share 0.21 weighs positive '
            'and negative images, but the images outside a fold have only'
            in err)
    assert err.endswith('; pass a smaller --folds, or 0 to skip the '
                        'held-out estimate\n'), err


def test_tune_postprocess_on_a_natural_split_says_only_the_share(
        tmp_path, tool_main):
    """Data with more positives than Kaggle's test set: a natural
    (split_first) validation set has their share, and the warning does
    not send the user to the natural-val config they are using."""
    from mmseg_ptx.datasets.synthetic import write_demo_dataset
    data = tmp_path / 'data'
    write_demo_dataset(data, num=12, seed=0, size=64, positive_fraction=0.75)
    ckpt = save_tiny_checkpoint(build_tiny_model(), tmp_path / 'tiny.pth')
    cfg = write_tiny_run_config(tmp_path / 'cfg.py', data)
    status, stdout, err = tool_main(
        'tune_postprocess', cfg, ckpt, '--out', tmp_path / 'tuned.json',
        '--device', 'cpu', '--num-workers', '0', '--folds', '0', '--top',
        '0.5', '--min-area', '0', '--bottom', '0.3', '--cfg-options',
        'val_dataloader.dataset.split_order=split_first',
        'val_dataloader.dataset.split_dir=splits_natural',
        'val_dataloader.dataset.neg_keep_ratio=1.0',
        'val_dataloader.dataset.val_ratio=0.5')
    assert status == 0, err
    assert 'Pass --positive-share 0.21.' in err, (stdout, err)
    assert 'natural validation set' not in err


def test_tune_postprocess_extra_models(tmp_path, demo_root, tool_main):
    """--extra-model: the counts of the averaged probabilities. A member
    with the same weights averages to the model's own map (the same
    rows); another one changes the map; each member weighs the same (the
    other model twice is 2:1 against this one, not 1:1 as once)."""
    models = [build_tiny_model(seed) for seed in (0, 1)]
    ckpt, other = (save_tiny_checkpoint(m, tmp_path / f'tiny{i}.pth')
                   for i, m in enumerate(models))
    twin = tmp_path / 'twin.pth'
    shutil.copy(ckpt, twin)
    cfg = write_tiny_run_config(tmp_path / 'cfg.py', demo_root)
    args = [cfg, ckpt, '--device', 'cpu', '--num-workers', '0', '--folds',
            '0', '--top', '0.5,0.52', '--min-area', '0,10', '--bottom',
            '0.48,0.5']
    results = {}
    for name, extra in (('alone', []), ('twin', ['--extra-model', cfg, twin]),
                        ('other', ['--extra-model', cfg, other]),
                        ('other_twice', ['--extra-model', cfg, other,
                                         '--extra-model', cfg, other])):
        out = tmp_path / f'{name}.json'
        status, _, err = tool_main('tune_postprocess', *args, '--out', out,
                                   *extra)
        assert status == 0, err
        results[name] = json.loads(out.read_text())
    assert results['twin']['extra_models'] == [[str(cfg), str(twin)]]
    assert results['twin']['results'] == results['alone']['results']
    assert results['other']['results'] != results['alone']['results']
    assert results['other_twice']['results'] != results['other']['results']


def test_tune_postprocess_refuses_one_class():
    refuse_one_class = load_tool('tune_postprocess').refuse_one_class
    refuse_one_class(3, 1, None)
    refuse_one_class(3, 2, 10)
    with pytest.raises(UsageError, match=r'^the 3 validation image\(s\) '
                       r'tuned on are all negative'):
        refuse_one_class(3, 0, None)
    with pytest.raises(UsageError, match=r'\(the first 3: --max-images 3\) '
                       r'are all positive'):
        refuse_one_class(3, 3, 3)
    # --max-images above the images there are: all of them.
    with pytest.raises(UsageError, match=r'tuned on are all positive'):
        refuse_one_class(3, 3, 5)


def _reject_constant(name):
    raise AssertionError(f'{name} in strict JSON')


def test_tune_postprocess_rejects_grid_without_settings(tmp_path, tool_main):
    # Checked before the model runs over the validation set. This one as
    # a process: the tool's one test that starts it.
    proc = subprocess.run(
        [PYTHON, 'tools/tune_postprocess.py', 'cfg.py', 'ckpt.pth', '--top',
         '0.3', '--bottom', '0.4,0.5'], cwd=ROOT, capture_output=True,
        text=True, timeout=300, env=_env())
    assert proc.returncode == 2
    assert 'no setting has --bottom <= --top' in proc.stderr
    # As are more folds than --max-images gives images.
    status, _, err = tool_main('tune_postprocess', 'cfg.py', 'ckpt.pth',
                               '--max-images', '2', '--folds', '3')
    assert status == 2
    assert 'error: --folds 3 needs at least 3 images, 2 are tuned on' in err
    # And an --out that is a folder.
    for folder in (str(tmp_path), str(tmp_path / 'new') + '/'):
        status, _, err = tool_main('tune_postprocess', 'cfg.py', 'ckpt.pth',
                                   '--out', folder)
        assert status == 2
        assert f'--out {folder} is a folder' in err


def _env():
    import os
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT),
                                         env.get('PYTHONPATH', '')])
    env.setdefault('OMP_NUM_THREADS', '2')
    return env


def test_infer_keeps_files_named_like_its_outputs(tmp_path, demo_root,
                                                  tool_main):
    # A data folder with its ground truth in masks/, given as --out: the
    # masks are not an earlier run's, so even --overwrite writes nothing.
    png = sorted((demo_root / 'png_images').glob('*.png'))[0]
    out = tmp_path / 'ds'
    (out / 'masks').mkdir(parents=True)
    (out / 'masks' / png.name).write_bytes(b'ground truth')
    args = [TINY_CONFIG, 'no_checkpoint.pth', png, '--out', out, '--device',
            'cpu']
    status, _, err = tool_main('infer', *args)
    assert status == 2
    assert 'already holds what this tool writes (masks)' in err
    status, _, err = tool_main('infer', *args, '--overwrite')
    assert status == 2
    assert (f'1 file(s) in {out} have the names of this run\'s outputs but '
            f'are not an earlier run\'s: masks/{png.name}') in err
    assert (out / 'masks' / png.name).read_bytes() == b'ground truth'
    assert os.listdir(out) == ['masks']


def test_infer_usage_errors_are_one_line(tmp_path, demo_root, tool_main):
    """Bad --postprocess-cfg values and a missing INPUT: exit status 2 and
    a line saying what is wrong, before any model loads."""
    png = sorted((demo_root / 'png_images').glob('*.png'))[0]
    args = [TINY_CONFIG, 'no_checkpoint.pth', png, '--out', tmp_path / 'o']
    for value, message in (
            ('min_area', "--postprocess-cfg expects key=value, got "
             "'min_area'"),
            ('{min_area: 5}', "--postprocess-cfg '{min_area: 5}' is not a "
             'JSON object')):
        status, _, err = tool_main('infer', *args, '--postprocess-cfg',
                                   value)
        assert (status, err.count('Traceback')) == (2, 0), err
        assert message in err
    status, _, err = tool_main('infer', *args, '--postprocess-cfg',
                               'min_areaa=5')
    assert status == 2
    assert (f"error: the post-processing of {TINY_CONFIG} with "
            "--postprocess-cfg {'min_areaa': 5}: ") in err
    assert "unexpected keyword argument 'min_areaa'" in err
    status, _, err = tool_main('infer', TINY_CONFIG, 'no_checkpoint.pth',
                               tmp_path / 'missing', '--out', tmp_path / 'o')
    assert status == 2
    assert f'error: Input not found: {tmp_path / "missing"}' in err
    assert not (tmp_path / 'o').exists()


def test_infer_image_ids_from_a_csv(tmp_path, demo_root, tool_main):
    """--image-ids: the PNG re-release's files are named by new_filename;
    the submission and the outputs take the ImageIds its CSV lists, and a
    file it does not list is an error of that file."""
    ckpt = save_tiny_checkpoint(build_tiny_model(), tmp_path / 'tiny.pth')
    listing = demo_root / 'stage_1_train_images.csv'
    with open(listing) as f:
        rows = list(csv.DictReader(f))[:2]
    src = tmp_path / 'in'
    src.mkdir()
    for row in rows:
        shutil.copy(demo_root / 'png_images' / row['new_filename'], src)
    shutil.copy(src / rows[0]['new_filename'], src / 'unlisted.png')
    out = tmp_path / 'out'
    status, _, err = tool_main('infer', TINY_CONFIG, ckpt, src, '--out', out,
                               '--device', 'cpu', '--image-ids', listing)
    assert status == 1, err
    assert (out / 'errors.txt').read_text() == (
        f'{src / "unlisted.png"}\tnot listed in --image-ids: no ImageId\n')
    with open(out / 'submission.csv') as f:
        submitted = [r['ImageId'] for r in csv.DictReader(f)]
    assert sorted(submitted) == sorted(r['ImageId'] for r in rows)
    assert sorted(p.stem for p in (out / 'masks').iterdir()) == sorted(
        submitted)
    # The demo's images are smaller than Kaggle's: said, not refused.
    assert 'warning: 2 of the 2 images are not 1024 x 1024 (first: ' in err
    # No file left to predict (the CSV lists none): errors.txt lists them
    # all the same, an earlier run's outputs replaced with --overwrite.
    empty = tmp_path / 'ids.csv'
    empty.write_text('ImageId,new_filename\n1.2.3,other.png\n')
    # ... once the models load: a mistyped checkpoint keeps them.
    status, _, err = tool_main('infer', TINY_CONFIG, tmp_path / 'typo.pth',
                               src, '--out', out, '--image-ids', empty,
                               '--overwrite')
    assert status == 2 and 'typo.pth' in err
    assert (out / 'submission.csv').is_file()
    status, _, err = tool_main('infer', TINY_CONFIG, ckpt, src, '--out',
                               out, '--image-ids', empty, '--overwrite')
    assert status == 1
    assert sorted(p.name for p in out.iterdir()) == ['errors.txt']
    assert len((out / 'errors.txt').read_text().splitlines()) == 3
    assert err.endswith(f'3 file(s) failed, listed in {out}/errors.txt\n')
    # A CSV that names one file for two ImageIds: a usage error.
    bad = tmp_path / 'bad.csv'
    bad.write_text('ImageId,new_filename\n1.2.3,a.png\n1.2.4,a.png\n')
    status, _, err = tool_main('infer', TINY_CONFIG, ckpt, src, '--out',
                               tmp_path / 'out2', '--image-ids', bad)
    assert status == 2
    assert err == (f'error: --image-ids: {bad}, line 3: new_filename a.png '
                   'is listed for ImageId 1.2.4 and ImageId 1.2.3\n')


def test_infer_bfloat16_weights(tmp_path, demo_root, tool_main):
    model = build_tiny_model()
    ckpt = save_tiny_checkpoint(model, tmp_path / 'tiny.pth')
    png = sorted((demo_root / 'png_images').glob('*.png'))[0]
    out = tmp_path / 'out'
    # An earlier run's outputs are replaced only with --overwrite: its
    # error list or masks must not pass for this run's.
    # An earlier run's: a mask and an overlay per image, the submission's
    # rows (a run stopped early may have written no submission).
    for folder in ('masks', 'overlays'):
        (out / folder).mkdir(parents=True)
        (out / folder / 'old.png').write_bytes(b'')
    (out / 'masks' / 'listed.png').write_bytes(b'')
    (out / 'submission.csv').write_text('ImageId,EncodedPixels\nlisted,-1\n')
    (out / 'errors.txt').write_text('old.dcm\tcorrupt\n')
    # What the tool did not write there is the user's, and stays.
    (out / 'overlays' / 'notes.txt').write_text('mine')
    (out / 'masks' / 'mine.png').write_bytes(b'mine')
    options = [png, '--out', out, '--device', 'cpu', '--save-prob',
               '--dtype', 'bfloat16', '--fuse-conv-bn']
    status, _, err = tool_main('infer', TINY_CONFIG, ckpt, *options)
    assert status == 2
    assert ('(submission.csv, errors.txt, masks, overlays), an earlier '
            "run's outputs or another's files; pass --overwrite" in err)
    assert (out / 'masks' / 'old.png').exists()
    # Removed only once the models load: a mistyped checkpoint keeps them.
    status, _, err = tool_main('infer', TINY_CONFIG, tmp_path / 'tiny.pht',
                               *options, '--overwrite')
    assert (status, err) == (
        2, f'error: Checkpoint file not found: {tmp_path / "tiny.pht"}\n')
    assert (out / 'masks' / 'old.png').exists()
    status, stdout, err = tool_main('infer', TINY_CONFIG, ckpt, *options,
                                    '--overwrite')
    assert status == 0, err
    assert 'on cpu in bfloat16, BatchNorm folded' in stdout
    assert not (out / 'errors.txt').exists()
    for path in ('masks/old.png', 'overlays/old.png', 'masks/listed.png'):
        assert not (out / path).exists(), path
    assert (out / 'overlays' / 'notes.txt').read_text() == 'mine'
    assert (out / 'masks' / 'mine.png').read_bytes() == b'mine'
    assert ('that this tool did not write: masks/mine.png, '
            'overlays/notes.txt') in err
    prob = np.load(out / 'probs' / f'{png.stem}.npy').astype(np.float32)
    img = read_image(str(png), [model])
    (expected, ) = predict_probabilities([model], [img])
    assert expected.dtype == np.float32 and prob.shape == expected.shape
    # The softmax's slope is at most 1/4: a logit error e (about 0.1 at
    # most in tests/test_models/test_utils/test_inference_dtype.py) moves the
    # probability by at most e / 2, plus float16's 5e-4 in the saved map.
    diff = np.abs(prob - expected).max()
    assert diff <= 0.06
    # More than float16's rounding: the network did run in bf16.
    assert diff > 1e-3


def test_write_outputs_reports_a_failed_write(tmp_path):
    """OpenCV returns False where a PNG cannot be written; that must not
    leave the image out of the outputs silently."""
    infer = load_tool('infer')
    prob = np.zeros((16, 16), np.float32)
    prob[4:12, 4:12] = 0.9
    img = np.full((16, 16), 100, np.uint8)
    dirs = {k: str(tmp_path / k) for k in ('masks', 'overlays', 'probs')}
    for folder in dirs.values():
        (tmp_path / folder).mkdir()
    postprocess = build_postprocessor(None)
    rle = infer.write_outputs('a', img, prob, postprocess, dirs, True)
    assert rle_decode(rle, 16, 16).sum() == 64
    assert cv2.imread(dirs['masks'] + '/a.png', cv2.IMREAD_UNCHANGED).max() \
        == 255
    assert np.load(dirs['probs'] + '/a.npy').dtype == np.float16
    dirs['overlays'] = str(tmp_path / 'missing')
    with pytest.raises(OSError, match='Cannot write .*missing/a.png'):
        infer.write_outputs('a', img, prob, postprocess, dirs, False)


def test_a_failed_write_is_that_image_s_error(tmp_path, demo_root,
                                              monkeypatch):
    """One image whose outputs cannot be written is listed in errors.txt;
    the others still make the submission. --out may hold INPUT."""
    import sys
    infer = load_tool('infer')
    ckpt = save_tiny_checkpoint(build_tiny_model(), tmp_path / 'tiny.pth')
    out = tmp_path / 'project'
    src = out / 'data'
    src.mkdir(parents=True)
    dicoms = sorted((demo_root / 'dicom-images-train').rglob('*.dcm'))[:3]
    for path in dicoms:
        shutil.copy(path, src)
    failing = dicoms[1].stem
    write_outputs = infer.write_outputs

    def flaky(image_id, *args):
        if image_id == failing:
            raise OSError(f'Cannot write masks/{image_id}.png')
        return write_outputs(image_id, *args)

    monkeypatch.setattr(infer, 'write_outputs', flaky)
    monkeypatch.setattr(sys, 'argv', [
        'infer.py', str(TINY_CONFIG), str(ckpt), str(src), '--out',
        str(out), '--device', 'cpu', '--workers', '2', '--batch-size', '2'])
    assert infer.main() == 1
    (error, ) = (out / 'errors.txt').read_text().splitlines()
    assert error.startswith(f'{src / dicoms[1].name}\twriting its outputs '
                            'failed: OSError: Cannot write')
    with open(out / 'submission.csv') as f:
        ids = sorted(row[0] for row in list(csv.reader(f))[1:])
    assert ids == sorted([dicoms[0].stem, dicoms[2].stem])


def test_image_id_of():
    """Only an image suffix is stripped: a DICOM named by its
    SOPInstanceUID, without a suffix, keeps the UID's last part."""
    infer = load_tool('infer')
    uid = '1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819'
    assert infer.image_id_of(f'/data/{uid}') == uid
    assert infer.image_id_of(f'/data/{uid}.dcm') == uid
    assert infer.image_id_of('/data/a.b.DICOM') == 'a.b'
    assert infer.image_id_of('scan.JPEG') == 'scan'
    assert infer.image_id_of('/data/scan.tif') == 'scan.tif'


def test_is_output(tmp_path):
    """A PNG in masks/ or overlays/ of a folder that has both."""
    infer = load_tool('infer')
    (tmp_path / 'data' / 'masks').mkdir(parents=True)
    (tmp_path / 'run' / 'masks').mkdir(parents=True)
    (tmp_path / 'run' / 'overlays').mkdir()
    assert not infer.is_output(str(tmp_path / 'data' / 'masks' / 'a.png'))
    assert infer.is_output(str(tmp_path / 'run' / 'masks' / 'a.png'))
    assert infer.is_output(str(tmp_path / 'run' / 'overlays' / 'a.PNG'))
    assert not infer.is_output(str(tmp_path / 'run' / 'masks' / 'a.dcm'))
    assert not infer.is_output(str(tmp_path / 'run' / 'a.png'))


def test_is_run_file(tmp_path):
    """submission.csv, errors.txt and probs/*.npy of a folder with masks/
    and overlays/: not counted as files left out of an INPUT folder."""
    infer = load_tool('infer')
    (tmp_path / 'run' / 'masks').mkdir(parents=True)
    (tmp_path / 'run' / 'overlays').mkdir()
    (tmp_path / 'data').mkdir()
    run, data = tmp_path / 'run', tmp_path / 'data'
    for name in ('submission.csv', 'errors.txt', 'probs/a.npy'):
        assert infer.is_run_file(str(run / name)), name
        assert not infer.is_run_file(str(data / name)), name
    assert not infer.is_run_file(str(run / 'notes.txt'))
    assert not infer.is_run_file(str(run / 'probs' / 'a.txt'))


def test_infer_cfg_options_and_a_pipeline_warning(tmp_path, demo_root,
                                                  tool_main):
    """--cfg-options changes CONFIG as tools/tune_postprocess.py's do (the
    tuned.json records them); a config whose test_pipeline is not its
    data loaders' gets a warning, and the data loaders' pipeline, which
    tools/test.py runs, is the one used."""
    model = build_tiny_model()
    ckpt = save_tiny_checkpoint(model, tmp_path / 'tiny.pth')
    png = sorted((demo_root / 'png_images').glob('*.png'))[0]
    config = write_test_pipeline_child(tmp_path / 'child.py', 64)
    out = tmp_path / 'out'
    status, stdout, err = tool_main(
        'infer', config, ckpt, png, '--out', out, '--device', 'cpu',
        '--save-prob', '--cfg-options', 'val_evaluator.postprocess.min_area=7')
    assert status == 0, err
    assert 'min_area=7' in stdout
    assert ("Warning: the tools run test_dataloader's pipeline, which "
            "differs from the config's test_pipeline") in err
    prob = np.load(out / 'probs' / f'{png.stem}.npy').astype(np.float32)
    (expected, ) = predict_probabilities([model], [read_image(str(png),
                                                              [model])])
    np.testing.assert_allclose(prob, expected, atol=1e-3)


def test_tune_postprocess_warns_of_another_validation_pipeline(
        tmp_path, demo_root, tool_main):
    """Tuned through val_dataloader's pipeline, applied through
    test_dataloader's: where they differ, the tool says so."""
    ckpt = save_tiny_checkpoint(build_tiny_model(), tmp_path / 'tiny.pth')
    cfg = write_tiny_run_config(tmp_path / 'cfg.py', demo_root, extra='''
val_dataloader = dict(val_dataloader, dataset=dict(
    val_dataloader['dataset'], pipeline=[
        dict(type='LoadDicomImageFromFile', color_type='grayscale'),
        dict(type='Resize', scale=(64, 64), keep_ratio=True),
        dict(type='LoadRLEAnnotations'),
        dict(type='GreyToBGR'),
        dict(type='PackSegInputs')]))
''')
    status, _, err = tool_main(
        'tune_postprocess', cfg, ckpt, '--out', tmp_path / 'tuned.json',
        '--device', 'cpu', '--num-workers', '0', '--folds', '0',
        '--top', '0.5', '--min-area', '0', '--bottom', '0.5')
    assert status == 0, err
    assert ("Warning: val_dataloader's pipeline, which this tool tunes "
            "through, differs from test_dataloader's, which tools/test.py "
            "and tools/infer.py predict through (step 1: {'type': 'Resize', "
            "'scale': [64, 64]") in err


def test_tune_postprocess_keeps_a_file_it_did_not_write(tmp_path,
                                                        tool_main):
    mine = tmp_path / 'mine.json'
    mine.write_text('{"mine": 1}')
    status, _, err = tool_main('tune_postprocess', TINY_CONFIG,
                               tmp_path / 'c.pth', '--out', mine)
    assert (status, err) == (2, f'error: --out {mine} exists and is not an '
                             'output of this tool; choose another name or '
                             'remove it\n')
    assert mine.read_text() == '{"mine": 1}'


def test_infer_an_input_without_images_is_a_usage_error(tmp_path,
                                                        tool_main):
    empty = tmp_path / 'empty'
    empty.mkdir()
    status, _, err = tool_main('infer', TINY_CONFIG, tmp_path / 'c.pth',
                               empty, '--out', tmp_path / 'out')
    assert (status, err) == (2, f'error: no image (.dcm, .dicom, .png, '
                             f'.jpg, .jpeg) under {empty}\n')
