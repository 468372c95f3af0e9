"""tools/train.py, tools/test.py and tools/dist_train.sh on a tiny run."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from conftest import (PYTHON, ROOT, free_port, load_tool, run_tool,
                      write_test_pipeline_child, write_tiny_run_config)


def test_train_resume_and_test(tmp_path, demo_root, tool_main):
    # The tools' main() in this process (test_dist_train_two_cpu_processes
    # and test_training_loss_falls start them as processes).
    def run(tool, config, *args):
        status, stdout, stderr = tool_main(tool, config, *args)
        assert status == 0, stderr[-3000:]
        return stdout, stderr

    work_dir = tmp_path / 'work'
    cfg = write_tiny_run_config(tmp_path / 'cfg.py', demo_root, max_epochs=1)
    run('train', cfg, '--work-dir', work_dir)
    ckpt = work_dir / 'epoch_1.pth'
    assert ckpt.is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith(
        'epoch_1.pth')
    # The checkpoint holds mmengine's message hub (HistoryBuffer, numpy),
    # which torch >= 2.6 refuses by default: resume and test must load it.
    hub = torch.load(ckpt, map_location='cpu', weights_only=False)
    assert 'message_hub' in hub

    cfg2 = write_tiny_run_config(tmp_path / 'cfg2.py', demo_root,
                                 max_epochs=2)
    out = ''.join(run('train', cfg2, '--work-dir', work_dir, '--resume'))
    assert 'resumed epoch: 1' in out
    assert (work_dir / 'epoch_2.pth').is_file()
    # Each run logged into a folder of its own, as a process would (not
    # into the first run's visualizer, which is named as every run's).
    assert len(list(work_dir.glob('*/vis_data/scalars.json'))) == 2

    # PerformanceReportHook wrote the report when training ended.
    report = (work_dir / 'PERFORMANCE_SUMMARY.md').read_text()
    for section in ('## Model Configuration', '## Training Configuration',
                    '### Class Balancing Strategy', '## Dataset Statistics',
                    '### Segmentation Metrics', '### Precision-Recall',
                    '### Pixel-Level Statistics', '## Training Progression',
                    '## Files in This Results Folder', '## Key Findings'):
        assert section in report, section
    assert ('**Negative undersampling**: keep ratio 0.15 (balance_first; '
            'seed 42)') in report
    for picture in ['precision_recall_curve.png', 'detailed_metrics.png',
                    *sorted(p.name for p in (work_dir / 'images').iterdir())]:
        path = work_dir / picture if picture.endswith('metrics.png') or \
            picture.startswith('precision') else work_dir / 'images' / picture
        with Image.open(path) as img:
            assert img.size[0] > 100
    assert any((work_dir / 'images').glob('prediction_01_positive_*.png'))
    assert 'Demo^Patient' not in report

    masks, panels = tmp_path / 'masks', tmp_path / 'panels'
    ckpt2 = work_dir / 'epoch_2.pth'
    # Into the training run's work dir (the README's way): the training
    # run's dumped config stays, the test run's is <timestamp>.py.
    trained = {path: path.read_text() for path in work_dir.glob('*.py')}
    stdout, stderr = run('test', cfg2, ckpt2,
                         '--work-dir', work_dir, '--out', masks,
                         '--show-dir', panels, '--cfg-options',
                         # Testing must not build the training data.
                         'train_dataloader.dataset.data_root=/nonexistent')
    assert {path: path.read_text() for path in trained} == trained
    (tested, ) = set(work_dir.glob('*.py')) - set(trained)
    assert Config.fromfile(tested).train_dataloader.dataset.data_root == \
        '/nonexistent'
    # Still named after its config (the logger, a vis backend's run).
    assert Config.fromfile(tested).experiment_name == 'cfg2'
    out = stdout + stderr
    assert 'Load checkpoint from' in out
    assert 'dice' in out and 'kaggle_dice' in out
    assert '| kaggle_dice |' in stdout  # the printed metric table
    # test_dataloader = val_dataloader: not held out, and it says so.
    assert 'These are the validation images' in stdout
    # Then where its outputs are.
    listed = re.findall(r'^  (\S.*?\S)  +(\S+)$',
                        stdout.split('Outputs:\n')[1], re.M)
    assert [name for name, _ in listed] == [
        'log', 'PR curve', 'PR curve', 'masks (--out)',
        'pictures (--show-dir)']
    assert Path(listed[0][1]).is_file()
    assert [path for _, path in listed[1:]] == [
        str(work_dir / 'pr_curves' / 'test.json'),
        str(work_dir / 'pr_curves' / 'test.png'), str(masks), str(panels)]
    assert all(Path(path).exists() for _, path in listed)
    val_ids = (demo_root / 'splits' / 'val.txt').read_text().split()
    # The run's JSON record beside its log, counts included (compat fix
    # 11).
    record = json.loads(Path(listed[0][1]).with_suffix('.json').read_text())
    assert record['num_images'] == len(val_ids)
    assert record['num_pixels'] == len(val_ids) * 128 * 128
    assert sorted(p.stem for p in masks.glob('*.png')) == sorted(val_ids)
    mask = np.array(Image.open(next(masks.glob('*.png'))))
    assert mask.shape == (128, 128) and set(np.unique(mask)) <= {0, 255}
    assert len(list(panels.glob('*.png'))) == len(val_ids)

    # --dtype bfloat16 --fuse-conv-bn: the network's BatchNorms folded,
    # then in bf16, about the same metrics.
    bf16_out, bf16_err = run('test', cfg2, ckpt2,
                             '--work-dir', tmp_path / 'test_bf16', '--dtype',
                             'bfloat16', '--fuse-conv-bn')
    log = bf16_out + bf16_err
    assert 'InferenceDtypeHook: network in torch.bfloat16' in log
    assert re.search(r'FuseConvBNHook: [1-9]\d* BatchNorm layers folded',
                     log)
    fp32, bf16 = metric_table(out), metric_table(bf16_out)
    assert fp32.keys() == bf16.keys() and 'ap' in fp32
    for key in ('dice', 'ap'):
        assert abs(bf16[key] - fp32[key]) < 0.02, (key, fp32, bf16)

    # --tta: the config's flip TTA (grey until GreyToBGR) and
    # SegTTAModelWithLogits, scored by the same metric.
    tta_out, _ = run('test', cfg2, ckpt2, '--work-dir',
                     tmp_path / 'test_tta', '--tta')
    tta = metric_table(tta_out)
    assert tta.keys() == fp32.keys()
    assert all(0 <= tta[k] <= 1 for k in ('dice', 'ap', 'kaggle_dice'))
    # The Runner dumps the config it ran, with the model tools/test.py
    # built: the config names tta_model in every run, so only this shows
    # that TTA ran.
    assert Config.fromfile(tested).model.type == 'EncoderDecoder'
    tta_model = run_model(tmp_path / 'test_tta')
    assert tta_model.type == 'SegTTAModelWithLogits'
    assert tta_model.module.type == 'EncoderDecoder'
    # Averaged with the flipped image, the probabilities change: their
    # ranking (AP, 4 decimals) would not stay the same by chance.
    assert tta['ap'] != fp32['ap'], (fp32, tta)

    # --extra-model with the same checkpoint again: an EnsembleSegmentor
    # of two equal members averages the probabilities to the model's own,
    # so the metrics are the plain run's (to the printed rounding, as the
    # ensemble's logits are log-probabilities).
    ensemble_out, _ = run('test', cfg2, ckpt2,
                          '--work-dir', tmp_path / 'test_ensemble',
                          '--extra-model', cfg2, ckpt2)
    ensemble_model = run_model(tmp_path / 'test_ensemble')
    assert ensemble_model.type == 'EnsembleSegmentor'
    assert ensemble_model.checkpoints == [str(ckpt2)] * 2
    assert [m.type for m in ensemble_model.models] == ['EncoderDecoder'] * 2
    ensemble = metric_table(ensemble_out)
    assert ensemble.keys() == fp32.keys()
    for key, value in fp32.items():
        assert abs(ensemble[key] - value) <= 1e-4, (key, fp32, ensemble)

    # A job killed while it validated epoch 2 (CheckpointHook saved
    # epoch_2.pth before the validation): its resumed run validates epoch
    # 2 first, here where training ends (no epoch is left) and then
    # before the next epoch, each time with the same metrics.
    history_path = work_dir / 'metrics_history.json'
    validated = json.loads(history_path.read_text())
    assert [h['epoch'] for h in validated] == [1, 2]
    cfg3 = write_tiny_run_config(tmp_path / 'cfg3.py', demo_root,
                                 max_epochs=3)
    for config, epochs in ((cfg2, [1, 2]), (cfg3, [1, 2, 3])):
        history_path.write_text(json.dumps(validated[:1]))
        out = ''.join(run('train', config, '--work-dir', work_dir,
                          '--resume'))
        assert 'Validating epoch 2 now: the run was stopped during its ' \
            'validation' in out
        history = json.loads(history_path.read_text())
        assert [h['epoch'] for h in history] == epochs
        assert history[1]['ap'] == pytest.approx(validated[1]['ap'])
        # With epoch 2's training scalars, from the resumed message hub.
        assert history[1]['train/loss'] == pytest.approx(
            validated[1]['train/loss'])
    # Resumed where the history is whole: nothing validated twice.
    out = ''.join(run('train', cfg3, '--work-dir', work_dir, '--resume'))
    assert 'Validating epoch' not in out
    assert 'Resuming with' not in out
    # Resumed with another batch size: said (the schedule would resume in
    # the saved run's iterations).
    out = ''.join(run('train', cfg3, '--work-dir', work_dir, '--resume',
                      '--cfg-options', 'train_dataloader.batch_size=1'))
    assert ('Resuming with other batch size per process (2, now 1), '
            'iterations per epoch') in out


def run_model(work_dir: Path):
    """The model config of the run that tools/test.py made in
    ``work_dir`` (the Runner dumps its config there)."""
    (dumped, ) = work_dir.glob('*.py')
    return Config.fromfile(dumped).model


def metric_table(output: str) -> dict:
    """The ``| name | value |`` rows tools/test.py prints."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 2:
            try:
                rows[cells[0]] = float(cells[1])
            except ValueError:
                pass
    return rows


def test_checkpoint_of_another_model_is_refused(tmp_path, demo_root,
                                                tool_main):
    """mmengine's Runner loads load_from non-strictly: tools/test.py would
    report the metrics of random weights."""
    # Also a child config that changes val_evaluator's post-processing
    # only: the demo config's test_evaluator = val_evaluator was resolved
    # there, so test.py warns that it scores another one.
    cfg = write_tiny_run_config(
        tmp_path / 'cfg.py', demo_root,
        extra='val_evaluator = dict(postprocess=dict(min_area=7))')
    ckpt = tmp_path / 'other.pth'
    torch.save({'state_dict': {'0.weight': torch.zeros(3)}}, ckpt)
    status, _, err = tool_main('test', cfg, ckpt, '--work-dir',
                               tmp_path / 'w')
    assert status == 2
    assert f'error: Checkpoint {ckpt} does not fit the model' in err
    assert 'unexpected key in source state_dict: 0.weight' in err
    assert "'min_area': 7" in err
    assert 'Set test_evaluator = val_evaluator' in err
    # A file that is no checkpoint at all: one line naming it too.
    ckpt.write_bytes(b'ImageId,EncodedPixels\n')
    status, _, err = tool_main('test', cfg, ckpt, '--work-dir',
                               tmp_path / 'w')
    assert status == 2
    assert (f'error: Checkpoint {ckpt} could not be read: not a PyTorch '
            'checkpoint') in err
    # An ensemble's members load while the Runner is built: the warnings
    # still come.
    status, _, err = tool_main('test', cfg, ckpt, '--work-dir',
                               tmp_path / 'w', '--extra-model', cfg, ckpt)
    assert status == 2
    assert f'error: Checkpoint {ckpt} could not be read' in err
    assert "'min_area': 7" in err


def test_show_on_dicom_data_is_a_clear_error(tmp_path, demo_root,
                                             tool_main):
    """MMSeg's visualizer reads images with mmcv, which cannot decode
    DICOM: --show would crash at its 50th batch."""
    cfg = write_tiny_run_config(tmp_path / 'cfg.py', demo_root)
    status, _, err = tool_main('test', cfg, tmp_path / 'none.pth', '--show',
                               '--work-dir', tmp_path / 'w')
    assert status == 2
    assert re.match('error: .*cannot decode the DICOMs of this test set.*'
                    '--show-dir', err)


def test_dist_train_two_cpu_processes(tmp_path, demo_root):
    work_dir = tmp_path / 'work'
    # The recipe's heads' SyncBN, which DDP refuses on the CPU.
    cfg = write_tiny_run_config(
        tmp_path / 'cfg.py', demo_root, max_epochs=1,
        extra="norm_cfg = dict(type='SyncBN', requires_grad=True)\n"
        'model = dict(decode_head=dict(norm_cfg=norm_cfg), '
        'auxiliary_head=dict(norm_cfg=norm_cfg))\n')
    proc = run_tool(['bash', 'tools/dist_train.sh', str(cfg), '2',
                     '--work-dir', str(work_dir)],
                    env={'PORT': str(free_port()), 'OMP_NUM_THREADS': '1',
                         'PYTHON': PYTHON})
    out = proc.stdout + proc.stderr
    assert 'Distributed training is not used' not in out
    assert 'SyncBatchNorm layers, which need CUDA, are per-process' in out
    assert (work_dir / 'epoch_1.pth').is_file()
    # Each process's BatchNorm statistics drift apart; SyncBuffersHook
    # averages them before validation, so the validated model is the one
    # saved (rank 0's): testing the checkpoint gives the validation's
    # numbers.
    (validated, ) = [h for h in json.loads(
        (work_dir / 'metrics_history.json').read_text())
        if h['mode'] == 'val']
    proc = run_tool([PYTHON, 'tools/test.py', str(cfg),
                     str(work_dir / 'epoch_1.pth'), '--work-dir',
                     str(tmp_path / 'test')])
    tested = metric_table(proc.stdout)
    for key in ('ap', 'pr_auc', 'best_f1'):
        assert round(validated[key], 4) == tested[key], (key, validated,
                                                         tested)
    # Five images tested on two processes (the sampler pads rank 1's share
    # with a copy of one of rank 0's): the same metrics as on one (up to
    # the float rounding that thread count and batch make-up change),
    # printed once, and one mask per image.
    five_images = ['--cfg-options', 'test_dataloader.dataset.split=train',
                   'test_dataloader.dataset.indices=5']
    proc = run_tool([PYTHON, 'tools/test.py', str(cfg),
                     str(work_dir / 'epoch_1.pth'), '--work-dir',
                     str(tmp_path / 'test5')] + five_images)
    tested = metric_table(proc.stdout)
    assert tested['num_images'] == 5
    masks = tmp_path / 'masks'
    proc = run_tool(['bash', 'tools/dist_test.sh', str(cfg),
                     str(work_dir / 'epoch_1.pth'), '2', '--work-dir',
                     str(tmp_path / 'dist_test'), '--out', str(masks)] +
                    five_images,
                    env={'PORT': str(free_port()), 'OMP_NUM_THREADS': '1',
                         'PYTHON': PYTHON})
    assert proc.stdout.count('| num_images') == 1, proc.stdout
    dist_tested = metric_table(proc.stdout)
    assert dist_tested.keys() == tested.keys()
    for key, value in tested.items():
        assert abs(dist_tested[key] - value) <= 1e-4, (key, tested,
                                                       dist_tested)
    assert len(list(masks.glob('*.png'))) == 5


def test_training_loss_falls(tmp_path, demo_root):
    import json
    work_dir = tmp_path / 'work'
    cfg = write_tiny_run_config(
        tmp_path / 'cfg.py', demo_root, max_epochs=4, extra="""
custom_hooks = []
train_cfg = dict(val_interval=100)
default_hooks = dict(checkpoint=dict(interval=100))
""")
    run_tool([PYTHON, 'tools/train.py', str(cfg), '--work-dir',
              str(work_dir)])
    scalars = next(work_dir.glob('*/vis_data/scalars.json'))
    losses = [json.loads(line)['loss']
              for line in scalars.read_text().splitlines()
              if 'loss' in json.loads(line)]
    assert len(losses) >= 8, losses
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert last < 0.9 * first, losses


@pytest.mark.parametrize('config, argv, expected', [
    ('configs/upernet_swin-b_ptx-512.py', ['--amp'],
     ('AmpOptimWrapper', 'float16', 'dynamic')),
    ('configs/upernet_swin-b_ptx-512.py', ['--amp', '--amp-dtype',
                                           'bfloat16'],
     ('AmpOptimWrapper', 'bfloat16', 1.0)),
    # The config's own AMP dtype, kept or replaced (was: ignored).
    ('configs/upernet_swin-b_ptx-512_bf16.py', ['--amp'],
     ('AmpOptimWrapper', 'bfloat16', 1.0)),
    ('configs/upernet_swin-b_ptx-512_bf16.py', ['--amp', '--amp-dtype',
                                                'float16'],
     ('AmpOptimWrapper', 'float16', 'dynamic')),
    ('configs/upernet_swin-b_ptx-512.py', [], ('OptimWrapper', None, None)),
])
def test_train_amp_flags(monkeypatch, tmp_path, config, argv, expected):
    train = load_tool('train')
    built = []
    monkeypatch.setattr(train.Runner, 'from_cfg',
                        lambda cfg: built.append(cfg) or SimpleNamespace(
                            train=lambda: None, train_loop=None))
    # The wrapper the flags make, on any machine (AMP needs a GPU to run).
    monkeypatch.setattr(train, 'check_amp_device', lambda cfg: None)
    monkeypatch.setattr(sys, 'argv', ['train.py', config, '--work-dir',
                                      str(tmp_path)] + argv)
    train.main()
    wrapper = built[0].optim_wrapper
    assert (wrapper.type, wrapper.get('dtype'),
            wrapper.get('loss_scale')) == expected


def test_train_amp_refuses_another_optim_wrapper(tmp_path, tool_main):
    """--amp replaces an OptimWrapper only: another wrapper (Apex's, a
    custom one) is a usage error, not silently an AmpOptimWrapper."""
    status, _, err = tool_main(
        'train', ROOT / 'configs/upernet_swin-b_ptx-512.py', '--work-dir',
        tmp_path / 'w', '--amp', '--cfg-options',
        'optim_wrapper.type=ApexOptimWrapper')
    assert (status, err) == (2, 'error: --amp needs optim_wrapper.type '
                                'OptimWrapper, got ApexOptimWrapper\n')
    assert not (tmp_path / 'w').exists()


def test_train_amp_dtype_needs_amp(monkeypatch, capsys):
    train = load_tool('train')
    monkeypatch.setattr(sys, 'argv', ['train.py', 'cfg.py', '--amp-dtype',
                                      'bfloat16'])
    with pytest.raises(SystemExit):
        train.parse_args()
    assert '--amp-dtype needs --amp' in capsys.readouterr().err


def test_train_says_at_once_when_no_report_will_be_written():
    """A metric prefix (or another metric) leaves PerformanceReportHook
    nothing to read: said when training starts, not when it ends."""
    train = load_tool('train')
    for config in sorted((ROOT / 'configs').glob('*.py')):
        assert train.no_report_warning(Config.fromfile(config)) is None
    cfg = Config.fromfile(ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py')
    for evaluator in (dict(cfg.val_evaluator, prefix='val'),
                      dict(type='mmseg.IoUMetric')):
        cfg.val_evaluator = evaluator
        assert train.no_report_warning(cfg).startswith(
            'PerformanceReportHook will write no report when training ends')
    cfg.custom_hooks = [h for h in cfg.custom_hooks
                        if h['type'] != 'PerformanceReportHook']
    assert train.no_report_warning(cfg) is None


def test_train_says_when_the_schedule_does_not_end_with_training():
    """train_cfg.max_epochs=N alone stops part way down the cosine: said
    when training starts (training.md's table says to set both)."""
    train = load_tool('train')
    for config in sorted((ROOT / 'configs').glob('*.py')):
        assert train.schedule_end_warning(Config.fromfile(config)) is None
    cfg = Config.fromfile(ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py')
    cfg.train_cfg.max_epochs = 10
    assert train.schedule_end_warning(cfg) == (
        'param_scheduler.1 ends at epoch 40 but training ends at epoch 10 '
        '(train_cfg.max_epochs): the run stops part way through it. To '
        "change the run's length, set param_scheduler.1.end=10 with it.")
    cfg.train_cfg.max_epochs = 50
    assert 'keeps the final learning rate for the last 10 epochs' in (
        train.schedule_end_warning(cfg))
    # A float end is one mmengine runs to.
    cfg.param_scheduler[1]['end'] = 40.0
    assert train.schedule_end_warning(cfg).startswith(
        'param_scheduler.1 ends at epoch 40 but training ends at epoch 50')
    cfg.param_scheduler[1]['end'] = 40.5
    assert train.schedule_end_warning(cfg).startswith(
        'param_scheduler.1 ends at epoch 40.5 but')
    # Not a number of epochs (check_param_schedulers refuses most such).
    cfg.param_scheduler[1]['end'] = True
    assert train.schedule_end_warning(cfg) is None
    cfg.param_scheduler[1]['end'] = 40
    # by_epoch defaults to True, as in mmengine.
    del cfg.param_scheduler[1]['by_epoch']
    assert 'keeps the final learning rate' in train.schedule_end_warning(cfg)
    # An iteration-based loop is compared with iteration-based schedulers.
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1000)
    assert train.schedule_end_warning(cfg) is None
    cfg.param_scheduler = [dict(type='PolyLR', by_epoch=False, begin=0,
                                end=800)]
    assert train.schedule_end_warning(cfg).startswith(
        'param_scheduler.0 ends at iteration 800 but training ends at '
        'iteration 1000 (train_cfg.max_iters)')
    # No end: it runs to the end of training.
    cfg.param_scheduler = dict(type='PolyLR', by_epoch=False)
    assert train.schedule_end_warning(cfg) is None
    # Nor with a warm-up before it that has one, or with mmengine's own
    # default end.
    cfg.param_scheduler = [
        dict(type='LinearLR', by_epoch=False, begin=0, end=100),
        dict(type='PolyLR', by_epoch=False, begin=100)]
    assert train.schedule_end_warning(cfg) is None
    cfg.param_scheduler[1]['end'] = train.INF
    assert train.schedule_end_warning(cfg) is None


def test_train_says_when_it_trains_on_the_cpu(monkeypatch):
    train = load_tool('train')
    monkeypatch.setattr(train, 'get_device', lambda: 'cpu')
    assert train.cpu_training_warning().startswith(
        'No GPU is available (torch.cuda.is_available() is False): training '
        'runs on the CPU')
    # mmengine trains on Apple's MPS too.
    for device in ('cuda', 'mps'):
        monkeypatch.setattr(train, 'get_device', lambda: device)
        assert train.cpu_training_warning() is None


def stopped_train_py(monkeypatch):
    """tools/train.py as a module whose main() stops at the Runner, and
    the list that receives what it logs."""
    train = load_tool('train')
    logged = []
    monkeypatch.setattr(train, 'print_log',
                        lambda message, **kwargs: logged.append(message))
    monkeypatch.setattr(train.Runner, 'from_cfg',
                        lambda cfg: SimpleNamespace(train=lambda: None,
                                                    train_loop=None))
    # As on a GPU machine: no warning that training runs on the CPU.
    monkeypatch.setattr(train, 'get_device', lambda: 'cuda')
    return train, logged


def test_train_says_when_the_work_dir_holds_an_earlier_run(monkeypatch,
                                                           tmp_path):
    """mmengine writes over an earlier run's checkpoints of the same names
    without asking: the tool says so, unless the run resumes it."""
    train, logged = stopped_train_py(monkeypatch)
    assert train.earlier_run_warning(str(tmp_path / 'new')) is None
    assert train.earlier_run_warning(str(tmp_path)) is None
    for name in ('epoch_1.pth', 'epoch_2.pth', 'best_dice_epoch_2.pth',
                 'last_checkpoint'):
        (tmp_path / name).write_bytes(b'')
    warning = train.earlier_run_warning(str(tmp_path))
    assert warning.startswith(
        f'{tmp_path} holds 3 checkpoint(s) of an earlier run '
        '(best_dice_epoch_2.pth, epoch_1.pth, epoch_2.pth)')
    assert 'Pass --resume to continue that run' in warning
    for resume in (False, True):
        monkeypatch.setattr(sys, 'argv', [
            'train.py', 'configs/upernet_swin-b_ptx-512.py', '--work-dir',
            str(tmp_path)
        ] + ['--resume'] * resume)
        train.main()
    assert logged == [warning]
    # --resume into a work dir with nothing to resume (a typo, say): said.
    empty = tmp_path / 'typo'
    monkeypatch.setattr(sys, 'argv', [
        'train.py', 'configs/upernet_swin-b_ptx-512.py', '--work-dir',
        str(empty), '--resume'])
    train.main()
    assert logged[-1] == (f'--resume: {empty} has no last_checkpoint, so '
                          'there is nothing to resume: training starts '
                          'from the first epoch')
    # Unless load_from names a checkpoint, which mmengine resumes then.
    monkeypatch.setattr(sys, 'argv', sys.argv + [
        '--cfg-options', f'load_from={tmp_path / "epoch_1.pth"}'])
    logged.clear()
    train.main()
    assert logged == []
    # Said once, by the first process, not by every DDP process.
    monkeypatch.setattr(sys, 'argv', [
        'train.py', 'configs/upernet_swin-b_ptx-512.py', '--work-dir',
        str(tmp_path)])
    for rank, said in (('1', []), ('0', [warning])):
        monkeypatch.setenv('RANK', rank)
        train.main()
        assert logged == said
        logged.clear()


def test_train_logs_the_schedule_and_cpu_warnings(monkeypatch, tmp_path):
    config = str(ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py')
    train, logged = stopped_train_py(monkeypatch)
    monkeypatch.setattr(sys, 'argv', [
        'train.py', config, '--work-dir', str(tmp_path), '--cfg-options',
        'train_cfg.max_epochs=10'])
    train.main()
    assert logged == [train.schedule_end_warning(train.load_config(
        train.parse_args()))]
    assert logged[0].startswith('param_scheduler.1 ends at epoch 40')
    logged.clear()
    monkeypatch.setattr(train, 'get_device', lambda: 'cpu')
    monkeypatch.setattr(sys, 'argv', ['train.py', config, '--work-dir',
                                      str(tmp_path)])
    train.main()
    assert logged == [train.cpu_training_warning()]


def test_tools_say_when_a_sigmoid_head_writes_other_masks_than_scored(
        monkeypatch, capsys, tmp_path):
    """A 1-channel head (MMSeg's threshold 0.3) with the metric at 0.5:
    tools/train.py and tools/test.py say so when they start; an ensemble
    of such models writes probability > 0.5, as scored."""
    config = str(ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py')
    sigmoid = ['--cfg-options', 'model.decode_head.out_channels=1']
    train, logged = stopped_train_py(monkeypatch)
    for argv in ([], sigmoid):
        monkeypatch.setattr(sys, 'argv', ['train.py', config, '--work-dir',
                                          str(tmp_path / 'train')] + argv)
        train.main()
    assert logged == [
        "the 1-channel decode head writes probability > 0.3 (its "
        "threshold), val_evaluator's PneumothoraxMetric scores probability "
        '> 0.5: the masks the model writes are not those its dice, iou and '
        'kaggle_dice score; give the metric threshold=0.3']
    test_tool, built, ckpt = stopped_test_py(monkeypatch, tmp_path)
    for argv, warned in (([], False), (sigmoid, True),
                         (sigmoid + ['--tta'], True),
                         (['--extra-model', config, str(ckpt)] + sigmoid,
                          False)):
        monkeypatch.setattr(sys, 'argv', ['test.py', config, str(ckpt),
                                          '--work-dir', str(tmp_path)] + argv)
        assert test_tool.main() is None
        err = capsys.readouterr().err
        assert ('Warning: the 1-channel decode head writes probability > '
                "0.3 (its threshold), test_evaluator's" in err) == warned, (
                    argv, err)
    assert built[-1].model.type == 'EnsembleSegmentor'


def stopped_test_py(monkeypatch, tmp_path):
    """tools/test.py as a module whose main() stops at the Runner: the
    module, the list that receives the config it would run, and a
    checkpoint path that is never loaded."""
    test_tool = load_tool('test')
    built = []
    monkeypatch.setattr(test_tool.Runner, 'from_cfg',
                        lambda cfg: built.append(cfg) or SimpleNamespace(
                            test=lambda: {}))
    monkeypatch.setattr(test_tool, 'load_runner_checkpoints_strictly',
                        lambda runner: None)
    ckpt = tmp_path / 'ckpt.pth'
    ckpt.write_bytes(b'')
    return test_tool, built, ckpt


@pytest.mark.parametrize('argv,expected', [
    ([], []),
    (['--compile'], [dict(type='CompileModulesHook')]),
    (['--compile', '--compile-scope', 'modules'],
     [dict(type='CompileModulesHook')]),
    (['--compile', '--compile-scope', 'blocks'],
     [dict(type='CompileModulesHook', blocks=['SwinBlock'])]),
    (['--dtype', 'float16'], [dict(type='InferenceDtypeHook',
                                   dtype='float16')]),
    (['--dtype', 'bfloat16'], [dict(type='InferenceDtypeHook',
                                    dtype='bfloat16')]),
])
def test_test_hook_flags(monkeypatch, tmp_path, argv, expected):
    test_tool, built, ckpt = stopped_test_py(monkeypatch, tmp_path)
    monkeypatch.setattr(sys, 'argv', [
        'test.py', str(ROOT / 'configs/upernet_swin-b_ptx-512.py'), str(ckpt),
        '--work-dir', str(tmp_path)] + argv)
    assert test_tool.main() is None
    hooks = [h for h in built[0].custom_hooks
             if h['type'] in ('CompileModulesHook', 'InferenceDtypeHook')]
    assert hooks == expected


def test_test_show_flags(monkeypatch, tmp_path):
    """--show (PNG layout: mmcv reads the images) turns on MMSeg's
    visualizer with --wait-time."""
    test_tool, built, ckpt = stopped_test_py(monkeypatch, tmp_path)
    monkeypatch.setattr(sys, 'argv', [
        'test.py', str(ROOT / 'configs/upernet_swin-b_ptx-512_png.py'),
        str(ckpt), '--work-dir', str(tmp_path), '--show', '--wait-time',
        '0.5'])
    assert test_tool.main() is None
    vis = built[0].default_hooks.visualization
    assert (vis.draw, vis.show, vis.wait_time) == (True, True, 0.5)


@pytest.mark.parametrize('options,kept', [
    # As shipped: no draw key, MMSeg's default draw=False.
    ([], False),
    (['default_hooks.visualization.draw=False'], False),
    (['default_hooks.visualization.draw=True'], True),
    # A user's own hook under that key is theirs.
    (['default_hooks.visualization.type=MyVisualizationHook'], True),
])
def test_a_visualizer_that_draws_nothing_is_left_out(
        monkeypatch, tmp_path, options, kept):
    """Without --show, MMSeg's SegVisualizationHook draws nothing and
    warns that the results are 'NOT visualized or stored', which --out and
    --show-dir do: it is left out; one a config set to draw stays."""
    test_tool, built, ckpt = stopped_test_py(monkeypatch, tmp_path)
    monkeypatch.setattr(sys, 'argv', [
        'test.py', str(ROOT / 'configs/upernet_swin-b_ptx-512.py'),
        str(ckpt), '--work-dir', str(tmp_path), '--show-dir',
        str(tmp_path / 'panels'), *(['--cfg-options', *options]
                                    if options else [])])
    assert test_tool.main() is None
    assert ('visualization' in built[0].default_hooks) == kept


def test_a_config_without_default_hooks_is_tested(monkeypatch, tmp_path,
                                                  capsys):
    """Tested as it is; with --show, the usage error that names the hook
    it needs (not an AttributeError)."""
    test_tool, built, ckpt = stopped_test_py(monkeypatch, tmp_path)
    cfg = Config.fromfile(
        str(ROOT / 'configs/upernet_swin-b_ptx-512_png.py'))
    plain = cfg.to_dict()
    del plain['default_hooks']
    Config(plain).dump(str(tmp_path / 'no_default_hooks.py'))
    argv = ['test.py', str(tmp_path / 'no_default_hooks.py'), str(ckpt),
            '--work-dir', str(tmp_path)]
    monkeypatch.setattr(sys, 'argv', argv)
    assert test_tool.main() is None
    assert 'default_hooks' not in built[0]
    monkeypatch.setattr(sys, 'argv', argv + ['--show'])
    assert test_tool.main() == 2
    assert capsys.readouterr().err.endswith(
        "error: --show needs default_hooks.visualization "
        "(dict(type='SegVisualizationHook'))\n")


def test_test_says_when_it_scores_images_it_chose_or_learnt_on():
    """A config whose test_dataloader is its val_dataloader (this
    project's and MMSeg's) tests the images that chose its best checkpoint,
    the training split or all labelled images those it learnt on; another
    data set is held out."""
    from mmengine.config import Config
    test = load_tool('test')
    cfg = Config.fromfile('configs/upernet_swin-nano_ptx-demo-128.py')
    assert test.held_in_note(cfg).startswith(
        'These are the validation images')
    # The test pipeline (--tta's, say) does not make other images.
    cfg.test_dataloader.dataset.pipeline = []
    assert test.held_in_note(cfg).startswith(
        'These are the validation images')
    cfg.test_dataloader.dataset.split = 'train'
    assert test.held_in_note(cfg).startswith(
        "These are the training split of the training data "
        "(test_dataloader's split='train')")
    cfg.test_dataloader.dataset.split = None
    assert test.held_in_note(cfg).startswith(
        'These are all the labelled images, the training split included')
    # Another spelling of the root, a wrapped training set, another key.
    cfg.test_dataloader.dataset.data_root += '/'
    cfg.test_dataloader.dataset.split = 'val'
    cfg.test_dataloader.dataset.test_mode = True
    cfg.train_dataloader.dataset = dict(type='RepeatDataset', times=2,
                                        dataset=cfg.train_dataloader.dataset)
    assert test.held_in_note(cfg).startswith(
        'These are the validation images')
    cfg.test_dataloader.dataset.data_root = 'data/held_out'
    assert test.held_in_note(cfg) is None
    cfg.test_dataloader = None
    assert test.held_in_note(cfg) is None


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_a_failure_reaches_torchruns_error_file(tmp_path, tool):
    """Under torchrun (TORCHELASTIC_ERROR_FILE), a process's exception goes
    into the error file, which torchrun's failure summary shows (without
    it: 'error_file: <N/A>', and a peer's 'Connection closed by peer'
    reads as the cause)."""
    import subprocess
    checkpoint = tmp_path / 'c.pth'
    checkpoint.write_bytes(b'')
    error_file = tmp_path / 'error.json'
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               TORCHELASTIC_ERROR_FILE=str(error_file))
    proc = subprocess.run(
        [PYTHON, f'tools/{tool}.py',
         'configs/upernet_swin-nano_ptx-demo-128.py',
         *([checkpoint] if tool == 'test' else []),
         '--work-dir', tmp_path / 'work', '--cfg-options',
         f'{tool}_dataloader.dataset.data_root={tmp_path}/gone'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    message = json.loads(error_file.read_text())['message']['message']
    assert message == (f'FileNotFoundError: data_root {tmp_path}/gone is not '
                       'a directory')


def test_test_compile_scope_needs_compile(monkeypatch, capsys):
    test_tool = load_tool('test')
    monkeypatch.setattr(sys, 'argv', ['test.py', 'cfg.py', 'ckpt.pth',
                                      '--compile-scope', 'blocks'])
    with pytest.raises(SystemExit):
        test_tool.parse_args()
    assert '--compile-scope needs --compile' in capsys.readouterr().err


def test_usage_errors_are_one_line(tmp_path, demo_root, tool_main):
    """A missing config, and --cfg-options that would set only a config
    variable: exit status 2 and the message, before anything runs."""
    missing = tmp_path / 'missing.py'
    for tool, args in (('train', [missing]), ('test', [missing, 'c.pth']),
                       ('tune_postprocess', [missing, 'c.pth']),
                       ('infer', [missing, 'c.pth', demo_root / 'png_images',
                                  '--out', tmp_path / 'out'])):
        status, _, err = tool_main(tool, *args)
        assert (status, err) == (
            2, f'error: Config file not found: {missing}\n'), tool
    # tools/test.py: missing checkpoints (an ensemble member's too) and one
    # folder for masks and pictures, before the Runner makes its work dir.
    config = ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py'
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'')
    for args, message in (
            ([missing.with_suffix('.pth')],
             f'Checkpoint file not found: {missing.with_suffix(".pth")}'),
            ([ckpt, '--extra-model', config, missing.with_suffix('.pth')],
             f'Checkpoint file not found: {missing.with_suffix(".pth")}'),
            # One folder spelled two ways (plain strings: pathlib would
            # drop the trailing slash).
            ([ckpt, '--out', f'{tmp_path}/o', '--show-dir', f'{tmp_path}/o/'],
             f'--out and --show-dir are the same folder, {tmp_path / "o"}'),
            ([ckpt, '--out', f'{tmp_path}/o', '--show-dir',
              f'{tmp_path}/x/../o'],
             f'--out and --show-dir are the same folder, {tmp_path / "o"}'),
            # TTA switched off by a child config.
            ([ckpt, '--tta', '--cfg-options', 'tta_model=None'],
             f'--tta needs tta_model and tta_pipeline in the config '
             f'{config}'),
            ([ckpt, '--tta', '--cfg-options', 'tta_pipeline=None'],
             f'--tta needs tta_model and tta_pipeline in the config '
             f'{config}')):
        status, _, err = tool_main('test', config, *args, '--work-dir',
                                   tmp_path / 'work')
        assert (status, err.startswith(f'error: {message}')) == (2, True), err
    assert not (tmp_path / 'work').exists()
    status, _, err = tool_main(
        'train', ROOT / 'configs/upernet_swin-b_ptx-512.py',
        '--work-dir', tmp_path / 'work', '--cfg-options', 'class_weight=[1,2]')
    assert status == 2
    assert err.startswith("error: --cfg-options class_weight=... would "
                          "change the config variable 'class_weight' only")
    assert not (tmp_path / 'work').exists()


def test_an_infinite_sampler_needs_no_full_epoch():
    """mmseg's iteration-based configs: an InfiniteSampler's loader has
    length 0 for a set smaller than a batch, yet yields batches."""
    from mmengine.dataset import DefaultSampler, InfiniteSampler
    from torch.utils.data import DataLoader
    from mmseg_ptx.apis import UsageError
    train = load_tool('train')
    for sampler, refused in ((InfiniteSampler, False),
                             (DefaultSampler, True)):
        loader = DataLoader(range(3), batch_size=4, drop_last=True,
                            sampler=sampler(range(3)))
        runner = SimpleNamespace(world_size=1, train_loop=SimpleNamespace(
            dataloader=loader))
        if refused:
            with pytest.raises(UsageError, match='gives no batch'):
                train.require_train_batches(runner)
        else:
            train.require_train_batches(runner)
    # Under DDP the message counts each process's share.
    from torch.utils.data import DistributedSampler
    loader = DataLoader(range(3), batch_size=4, drop_last=True,
                        sampler=DistributedSampler(range(3), num_replicas=2,
                                                   rank=0))
    runner = SimpleNamespace(world_size=2, train_loop=SimpleNamespace(
        dataloader=loader))
    with pytest.raises(UsageError, match=r'3 training image\(s\), 2 per '
                       r'process with 2 process\(es\), batch_size 4'):
        train.require_train_batches(runner)


def test_train_refuses_a_loader_without_a_batch(tmp_path, demo_root,
                                                tool_main):
    """A batch larger than the training split (drop_last=True): one line
    naming the split and the batch size, not mmengine's assertion on the
    scheduler's epoch length."""
    cfg = write_tiny_run_config(
        tmp_path / 'cfg.py', demo_root,
        extra='train_dataloader.update(batch_size=64)')
    status, _, err = tool_main('train', cfg, '--work-dir', tmp_path / 'w')
    assert status == 2, err[-3000:]
    assert re.fullmatch(
        r'error: the training loader gives no batch: (\d+) training '
        r'image\(s\), \1 per process with 1 process\(es\), batch_size 64 '
        r'and drop_last=True; set a smaller train_dataloader.batch_size or '
        r'use more training images\n', err.splitlines(True)[-1]), err


@pytest.mark.parametrize('hook_type', ['CompileModulesHook',
                                       'mmseg.CompileModulesHook'])
def test_test_compile_refuses_a_config_that_compiles(tmp_path, tool_main,
                                                     hook_type):
    """Both would wrap the compiled forwards in another compilation: a
    usage error, one line and exit status 2."""
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        "_base_ = ['" + str(ROOT / 'configs/upernet_swin-b_ptx-512.py') +
        f"']\ncustom_hooks = [dict(type={hook_type!r})]\n")
    status, _, err = tool_main('test', cfg, 'ckpt.pth', '--compile')
    assert status == 2
    assert err.startswith(f'error: --compile: the config {cfg} compiles '
                          'already')


def test_test_compiled_gives_the_same_metrics(monkeypatch, tmp_path,
                                              demo_root, tool_main):
    """tools/test.py --compile --fuse-conv-bn --dtype bfloat16 (the
    fastest inference measured) on a checkpoint: the BatchNorms are folded
    and the weights cast after the forwards are wrapped, before they are
    traced; dynamo's eager backend (traced, no C++ build on CI) gives the
    metrics of the same run without --compile."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    cfg = write_tiny_run_config(tmp_path / 'cfg.py', demo_root)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': MODELS.build(
        Config.fromfile(cfg).model).state_dict()}, ckpt)
    eager_compile = torch.compile
    monkeypatch.setattr(torch, 'compile', lambda *args, **kwargs:
                        eager_compile(*args, **{**kwargs,
                                                'backend': 'eager'}))
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    tables, graphs = [], []
    for name, argv in (('plain', []), ('compiled', ['--compile'])):
        status, out, err = tool_main('test', cfg, ckpt, '--work-dir',
                                     tmp_path / name, '--fuse-conv-bn',
                                     '--dtype', 'bfloat16', *argv)
        assert status == 0, err[-3000:]
        tables.append(metric_table(out))
        graphs.append(counters['stats']['unique_graphs'])
    torch._dynamo.reset()
    log = next((tmp_path / 'compiled').rglob('*.log')).read_text()
    assert 'torch.compile: backbone, decode_head, auxiliary_head' in log
    assert graphs[0] == 0 and graphs[1] > 0  # traced, the plain run not
    assert 'dice' in tables[0] and tables[1] == tables[0]


@pytest.mark.parametrize('scale,warned', [(None, False), ((512, 512), False),
                                          ((768, 768), True),
                                          ('model only', False)])
def test_test_warns_of_an_extra_model_with_another_pipeline(
        monkeypatch, capsys, tmp_path, scale, warned):
    """The ensemble's members all see the first config's batch: a member
    whose config resizes to another scale is tested on inputs its own
    config would not give it. Another label loader (the PNG config's)
    changes nothing a model sees."""
    test_tool, built, ckpt = stopped_test_py(monkeypatch, tmp_path)
    first = ROOT / 'configs/upernet_swin-b_ptx-512.py'
    extra = ROOT / 'configs/upernet_swin-b_ptx-512_png.py'
    if scale == 'model only':
        # A model config without a test set (as tools/infer.py takes).
        extra_cfg = Config.fromfile(extra)
        extra = tmp_path / 'extra.py'
        extra.write_text(f'model = {extra_cfg.model.to_dict()!r}\n'
                         f'test_pipeline = {extra_cfg.test_pipeline!r}\n')
    elif scale is not None:
        pipeline = Config.fromfile(extra).test_dataloader.dataset.pipeline
        assert pipeline[1].type == 'Resize'
        pipeline[1].scale = scale
        extra = tmp_path / 'extra.py'
        extra.write_text(
            f"_base_ = ['{ROOT}/configs/upernet_swin-b_ptx-512_png.py']\n"
            f'test_dataloader = dict(dataset=dict(pipeline={pipeline!r}))\n')
    monkeypatch.setattr(sys, 'argv', [
        'test.py', str(first), str(ckpt), '--work-dir', str(tmp_path),
        '--extra-model', str(extra), str(ckpt)])
    assert test_tool.main() is None
    assert built[0].model.type == 'EnsembleSegmentor'
    err = capsys.readouterr().err
    assert ('tests through another pipeline' in err) == warned, err
    if warned:
        assert f'--extra-model {extra} tests through' in err
        assert ("step 1: {'type': 'Resize', 'scale': [768, 768], "
                "'keep_ratio': True} instead of {'type': 'Resize', "
                "'scale': [512, 512]" in err), err


def test_test_warns_of_pipelines_that_disagree(monkeypatch, capsys,
                                               tmp_path):
    """A child config that moved test_pipeline to another size but left
    the data loaders (and tta_pipeline) at the base's: tools/test.py says
    which pipeline it runs; with --tta, that the TTA pipeline differs."""
    test_tool, built, ckpt = stopped_test_py(monkeypatch, tmp_path)
    config = write_test_pipeline_child(tmp_path / 'child.py', 128)
    monkeypatch.setattr(sys, 'argv', [
        'test.py', str(config), str(ckpt), '--work-dir', str(tmp_path)])
    assert test_tool.main() is None
    err = capsys.readouterr().err
    assert ("the tools run test_dataloader's pipeline, which differs from "
            "the config's test_pipeline") in err
    assert '--tta runs tta_pipeline' not in err
    # Set right for the data loaders, not for TTA.
    with open(config, 'a') as f:
        f.write('val_dataloader = dict(dataset=dict(pipeline=test_pipeline))'
                '\ntest_dataloader = val_dataloader\n')
    monkeypatch.setattr(sys, 'argv', [
        'test.py', str(config), str(ckpt), '--work-dir', str(tmp_path),
        '--tta'])
    assert test_tool.main() is None
    err = capsys.readouterr().err
    assert "which differs from the config's test_pipeline" not in err
    assert ("--tta runs tta_pipeline, which gives the model another input "
            "than the test pipeline (step 1: {'type': 'Resize', 'scale': "
            "[256, 256]") in err
    assert built[-1].model.type == 'SegTTAModelWithLogits'


@pytest.mark.parametrize('tta_type, replaced', [
    ('SegTTAModel', True), ('mmseg.SegTTAModel', True),
    ('SegTTAModelWithLogits', False)])
def test_test_tta_scores_the_averaged_views(monkeypatch, capsys, tmp_path,
                                            tta_type, replaced):
    """MMSeg's SegTTAModel (what mmseg's default_runtime.py names) leaves
    the last view's scores in seg_logits: --tta tests with
    SegTTAModelWithLogits instead, and says so."""
    test_tool, built, ckpt = stopped_test_py(monkeypatch, tmp_path)
    config = tmp_path / 'stock_tta.py'
    config.write_text(
        f"_base_ = ['{ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py'}']\n"
        f"tta_model = dict(_delete_=True, type='{tta_type}')\n")
    monkeypatch.setattr(sys, 'argv', [
        'test.py', str(config), str(ckpt), '--work-dir', str(tmp_path),
        '--tta'])
    assert test_tool.main() is None
    err = capsys.readouterr().err
    assert built[-1].model.type == ('SegTTAModelWithLogits' if replaced
                                    else tta_type)
    assert ("tta_model is MMSeg's SegTTAModel" in err) == replaced, err


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh',
                                    'slurm_train.sh', 'slurm_test.sh'])
def test_launch_scripts_say_their_usage(script):
    """Too few arguments (or --help): the usage, exit status 2, not bash's
    'unbound variable'."""
    import subprocess
    for args in ([], ['--help']):
        proc = subprocess.run(['bash', f'tools/{script}', *args], cwd=ROOT,
                              capture_output=True, text=True)
        assert proc.returncode == 2
        assert proc.stderr.startswith(f'usage: tools/{script} ')


def test_a_run_no_longer_than_the_warm_up_is_refused(tmp_path, tool_main):
    """max_epochs and the cosine's end set to the warm-up's length (as
    training.md's recipe for another length would, with N=1): one line,
    exit status 2, before the model is built (mmengine stopped later, in
    iterations)."""
    config = ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py'
    status, _, err = tool_main(
        'train', config, '--work-dir', tmp_path / 'run', '--cfg-options',
        'train_cfg.max_epochs=1', 'param_scheduler.1.end=1')
    assert status == 2, err
    assert err.startswith(
        'error: param_scheduler.1 (CosineAnnealingLR) ends at epoch 1, not '
        'after its begin at 1;'), err
    assert not (tmp_path / 'run').exists()


def test_a_config_without_optim_wrapper_gets_mmengines_reason(
        tmp_path, tool_main):
    config = tmp_path / 'no_optim.py'
    config.write_text(f"_base_ = '{ROOT}/configs/upernet_swin-nano_ptx-"
                      "demo-128.py'\noptim_wrapper = None\n")
    with pytest.raises(ValueError, match='optim_wrapper should be either '
                       'all None or not None'):
        tool_main('train', config, '--work-dir', tmp_path / 'run')


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU runs AMP')
def test_amp_without_a_gpu_is_refused(tmp_path, tool_main):
    config = ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py'
    for args in (['--amp'], ['--amp', '--amp-dtype', 'bfloat16'],
                 # The config's own, by its scoped name.
                 ['--cfg-options', 'optim_wrapper.type=mmengine.'
                  'AmpOptimWrapper', 'optim_wrapper.dtype=bfloat16']):
        status, _, err = tool_main('train', config, '--work-dir',
                                   tmp_path / 'run', *args)
        assert status == 2, err
        assert err.startswith('error: AMP training (optim_wrapper.type '
                              'AmpOptimWrapper, from --amp or the config) '
                              'needs a GPU'), err
    assert not (tmp_path / 'run').exists()


def test_output_folders_that_are_files(tmp_path, tool_main):
    """A work dir, --out or --show-dir naming a file: one line, exit
    status 2, before anything is built."""
    config = ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py'
    afile = tmp_path / 'a_file'
    afile.write_text('mine')
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'')
    image = tmp_path / 'a.png'
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    for tool, args, message in (
            ('train', [config, '--work-dir', afile],
             f'the work dir (--work-dir) {afile} is a file'),
            ('test', [config, ckpt, '--out', afile],
             f'--out {afile} is a file'),
            ('test', [config, ckpt, '--show-dir', afile],
             f'--show-dir {afile} is a file'),
            ('infer', [config, ckpt, image, '--out', afile],
             f'--out {afile} is a file')):
        status, _, err = tool_main(tool, *args)
        assert (status, err.startswith(f'error: {message}')) == (2, True), err
    assert afile.read_text() == 'mine'


def test_test_refuses_an_out_folder_of_other_files(tmp_path, tool_main):
    """Ground-truth masks named by ImageId where --out points: one line,
    exit status 2, the files untouched."""
    config = ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py'
    ckpt = tmp_path / 'c.pth'
    ckpt.write_bytes(b'')
    theirs = tmp_path / 'gt'
    theirs.mkdir()
    (theirs / '1.2.3.png').write_bytes(b'mine')
    for flag in ('--out', '--show-dir'):
        status, _, err = tool_main('test', config, ckpt, flag, theirs,
                                   '--work-dir', tmp_path / 'w')
        assert status == 2
        assert err.startswith(
            f'error: {flag}: {theirs} holds files that are not predictions '
            'of an earlier test run (1.2.3.png)'), err
    assert (theirs / '1.2.3.png').read_bytes() == b'mine'
