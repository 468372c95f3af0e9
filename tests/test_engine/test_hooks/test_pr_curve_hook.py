import datetime
import json
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import free_port
from matplotlib.image import imread
from mmengine.logging import MessageHub

import mmseg_ptx  # noqa: F401  (registers the hook)
from mmseg.registry import HOOKS
from mmseg_ptx.evaluation import PneumothoraxMetric


def evaluated_metric(seed=0, num=4, size=48):
    g = torch.Generator().manual_seed(seed)
    metric = PneumothoraxMetric()
    samples = []
    for i in range(num):
        gt = (torch.rand(size, size, generator=g) < 0.05).long()
        logit = torch.randn(size, size, generator=g) * 3 + 4 * gt - 5
        samples.append(
            dict(
                seg_logits=dict(
                    data=torch.stack([torch.zeros_like(logit), logit])),
                gt_sem_seg=dict(data=gt[None])))
    metric.process({}, samples)
    return metric, metric.evaluate(num)


def make_runner(work_dir, metric, name):
    """What the hook reads of a training run's Runner."""
    evaluator = SimpleNamespace(metrics=[metric])
    return SimpleNamespace(
        _train_loop=SimpleNamespace(),  # built, as in training
        work_dir=str(work_dir),
        epoch=0,
        iter=0,
        val_evaluator=evaluator,
        test_evaluator=evaluator,
        message_hub=MessageHub(name=name))


def validate(hook, runner, metrics):
    """A validation as mmengine's ValLoop ends it: every hook's
    after_val_epoch, then after_val."""
    hook.after_val_epoch(runner, metrics)
    hook.after_val(runner)


def test_a_record_is_written_after_the_checkpoint_hooks(tmp_path):
    """mmengine's CheckpointHook saves the best checkpoint in its
    after_val_epoch, after this hook's: the record is written in
    after_val, so a run stopped before it validates that epoch again when
    resumed (and saves the best again) instead of losing it."""
    metric, metrics = evaluated_metric()
    runner = make_runner(tmp_path, metric, 'pr_hook_test_written_later')
    path = tmp_path / 'metrics_history.json'
    hook = HOOKS.build(dict(type='PRCurveHook', plot=False))
    for epoch in (1, 2):
        train(runner, [1.0])
        hook.after_val_epoch(runner, metrics)
        assert not path.exists() or epoch not in [
            h['epoch'] for h in json.loads(path.read_text())]
        hook.after_val(runner)
        hook.after_val(runner)  # once
        assert [h['epoch'] for h in json.loads(path.read_text())
                ] == list(range(1, epoch + 1))


def train(runner, losses):
    for loss in losses:
        runner.iter += 1
        runner.message_hub.update_scalar('train/loss', loss)
        runner.message_hub.update_scalar('train/lr', 1e-4)
    runner.epoch += 1


def test_hook_writes_curves_and_history(tmp_path):
    metric, metrics = evaluated_metric()
    runner = make_runner(tmp_path, metric, 'pr_hook_test_history')
    hook = HOOKS.build(dict(type='PRCurveHook', max_points=50))

    train(runner, [1.0, 3.0])
    validate(hook, runner, metrics)
    train(runner, [0.5, 0.7, 0.9])
    metric2, metrics2 = evaluated_metric(seed=1)
    runner.val_evaluator.metrics = [metric2]
    validate(hook, runner, metrics2)

    curve_dir = tmp_path / 'pr_curves'
    for stem in ('val_epoch_001', 'val_epoch_002', 'val_latest'):
        img = imread(str(curve_dir / f'{stem}.png'))
        assert img.ndim == 3 and img.shape[0] > 100 and img.std() > 0
        assert (curve_dir / f'{stem}.json').is_file()
    latest = json.loads((curve_dir / 'val_latest.json').read_text())
    assert latest['ap'] == pytest.approx(metrics2['ap'])
    assert latest['epoch'] == 2
    assert len(latest['thresholds']) <= 60
    assert len(latest['precision']) == len(latest['thresholds']) + 1
    assert latest['best_threshold'] in latest['thresholds']

    history = json.loads((tmp_path / 'metrics_history.json').read_text())
    assert [h['epoch'] for h in history] == [1, 2]
    assert history[0]['dice'] == pytest.approx(metrics['dice'])
    # Mean training loss over the iterations since the previous entry.
    assert history[0]['train/loss'] == pytest.approx(2.0)
    assert history[1]['train/loss'] == pytest.approx(0.7)
    assert 'train/lr' not in history[1]

    # Validating the same epoch again (runner.val() after training)
    # replaces its validation metrics; with no training in between, its
    # training scalars stay the epoch's (not the last iteration's loss,
    # over a window starting after the epoch).
    validate(hook, runner, metrics)
    history = json.loads((tmp_path / 'metrics_history.json').read_text())
    assert len(history) == 2
    assert history[1]['dice'] == pytest.approx(metrics['dice'])
    assert history[1]['train/loss'] == pytest.approx(0.7)
    assert (history[1]['train_from_epoch'],
            history[1]['train_from_iter']) == (2, 3)


def test_hook_after_test_and_nan_metrics(tmp_path):
    metric, metrics = evaluated_metric()
    runner = make_runner(tmp_path, metric, 'pr_hook_test_test')
    hook = HOOKS.build(dict(type='PRCurveHook', out_dir=str(tmp_path / 'o'),
                            plot=False, max_points=None))
    assert hook.test_curve_paths == []
    hook.after_test_epoch(runner, metrics)
    # What tools/test.py lists among its outputs.
    assert hook.test_curve_paths == [
        str(tmp_path / 'o' / 'pr_curves' / 'test.json')]
    data = json.loads((tmp_path / 'o' / 'pr_curves' / 'test.json').read_text())
    assert len(data['thresholds']) == len(metric.last_curve.thresholds)
    np.testing.assert_allclose(data['recall'], metric.last_curve.recall)
    assert not osp.exists(tmp_path / 'o' / 'pr_curves' / 'test.png')
    assert not osp.exists(tmp_path / 'o' / 'metrics_history.json')
    # A second PneumothoraxMetric (a prefix of its own): both curves.
    extra, _ = evaluated_metric(seed=1)
    extra.prefix = 'extra'
    runner.test_evaluator.metrics.append(extra)
    hook.after_test_epoch(runner, metrics)
    assert hook.test_curve_paths == [
        str(tmp_path / 'o' / 'pr_curves' / name)
        for name in ('test.json', 'test_extra.json')]

    # NaN metrics (no positive image) are stored as JSON null.
    validate(hook, runner, {'dice': float('nan'), 'ap': 0.5})
    history = json.loads(
        (tmp_path / 'o' / 'metrics_history.json').read_text())
    assert history == [dict(mode='val', epoch=0, iter=0, dice=None, ap=0.5)]
    assert osp.exists(tmp_path / 'o' / 'pr_curves' / 'val.json')


@pytest.mark.parametrize('tta, warned', [
    ('SegTTAModel', True), ('SegTTAModelWithLogits', False)])
def test_a_tta_model_scoring_one_view_is_named(monkeypatch, tta, warned):
    from mmseg.registry import MODELS
    from mmseg_ptx.engine.hooks import pr_curve_hook
    logged = []
    monkeypatch.setattr(pr_curve_hook, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))

    class Segmentor(torch.nn.Module):

        def test_step(self, data):
            return data

    model = MODELS.build(dict(type=tta, module=Segmentor()))
    hook = HOOKS.build(dict(type='PRCurveHook'))
    hook.before_test(SimpleNamespace(model=model))
    assert bool(logged) == warned, logged
    if warned:
        assert "tta_model=dict(type='SegTTAModelWithLogits')" in logged[0]
    # Inside DDP's wrapper (tools/test.py --launcher pytorch), said once.
    from mmengine.model import MMDistributedDataParallel
    wrapper = MMDistributedDataParallel.__new__(MMDistributedDataParallel)
    torch.nn.Module.__init__(wrapper)
    wrapper.module = model
    for main_process, said in ((False, []), (True, logged[:1])):
        logged.clear()
        monkeypatch.setattr(pr_curve_hook, 'is_main_process',
                            lambda: main_process)
        hook.before_test(SimpleNamespace(model=wrapper))
        assert logged == (said if warned else []), logged


def test_history_is_the_current_runs(tmp_path):
    """A resumed run keeps the records up to where it starts and averages
    its first record over its own iterations; a new run in a used work dir
    moves the old history aside instead of reporting its epochs."""
    metric, metrics = evaluated_metric()
    first = make_runner(tmp_path, metric, 'pr_hook_test_first')
    hook = HOOKS.build(dict(type='PRCurveHook', plot=False))
    hook.before_train(first)
    for loss in (5.0, 4.0, 3.0):
        train(first, [loss, loss])
        validate(hook, first, dict(metrics, dice=loss / 10))
    path = tmp_path / 'metrics_history.json'

    # Resumed from the epoch-2 checkpoint: the message hub comes back with
    # every earlier scalar, the loop from iteration 4.
    resumed = make_runner(tmp_path, metric, 'pr_hook_test_resumed')
    resumed.message_hub.load_state_dict(first.message_hub.state_dict())
    resumed.epoch, resumed.iter = 2, 4
    hook = HOOKS.build(dict(type='PRCurveHook', plot=False))
    hook.before_train(resumed)
    assert [h['epoch'] for h in json.loads(path.read_text())] == [1, 2]
    train(resumed, [1.0, 1.0])
    validate(hook, resumed, dict(metrics, dice=0.9))
    history = json.loads(path.read_text())
    assert [(h['epoch'], h['train/loss']) for h in history] == [
        (1, 5.0), (2, 4.0), (3, 1.0)]
    # Each record says which window its training scalars are the mean of.
    assert [(h['train_from_epoch'], h['train_from_iter'])
            for h in history] == [(1, 1), (2, 3), (3, 5)]
    backups = sorted(tmp_path.glob('metrics_history.*.json'))
    assert len(backups) == 1  # the crashed run's epoch 3, kept
    assert [h['epoch'] for h in json.loads(backups[0].read_text())] == [
        1, 2, 3]

    # A new run (not resumed) in the same work dir starts a new history.
    fresh = make_runner(tmp_path, metric, 'pr_hook_test_fresh')
    hook = HOOKS.build(dict(type='PRCurveHook', plot=False))
    hook.before_train(fresh)
    assert not path.exists()
    # Both backups kept, even when written within the same second.
    backups = sorted(tmp_path.glob('metrics_history.*.json'))
    assert sorted(json.loads(b.read_text())[-1]['dice']
                  for b in backups) == [0.3, 0.9]
    train(fresh, [2.0])
    validate(hook, fresh, dict(metrics, dice=0.2))
    assert [(h['epoch'], h['dice']) for h in json.loads(path.read_text())
            ] == [(1, 0.2)]


def _resume_on_rank(rank, world_size, port, work_dir):
    # A short timeout: a rank left waiting for rank 0 fails the test
    # instead of hanging it.
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    try:
        runner = make_runner(work_dir, evaluated_metric()[0], f'rank{rank}')
        runner.epoch, runner.iter = 2, 4
        try:
            HOOKS.build(dict(type='PRCurveHook', plot=False)).before_train(
                runner)
            dist.barrier()
            outcome = 'resumed'
        except Exception as err:
            outcome = f'{type(err).__name__}: {err}'
        with open(osp.join(work_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(outcome, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(240, method='thread')
def test_every_rank_stops_on_an_unreadable_history(tmp_path):
    """Rank 0 alone reads the history; its error used to leave rank 1
    waiting in the broadcast after it until the process group timed out.
    """
    path = tmp_path / 'metrics_history.json'
    path.write_text('[{"iter": 2')  # cut short, as by a full disk
    # spawn, not fork: forked children can deadlock in torch's pool.
    mp.spawn(_resume_on_rank, args=(2, free_port(), str(tmp_path)), nprocs=2)
    rank0, rank1 = (json.loads((tmp_path / f'rank{r}.json').read_text())
                    for r in range(2))
    assert rank0.startswith(f'ValueError: {path} is not valid JSON'), rank0
    assert rank1 == (f'RuntimeError: The metrics history {path} could not '
                     'be read on another process (its error says why); '
                     'this one stops too')


def test_settings_refused_before_training(tmp_path):
    afile = tmp_path / 'a_file'
    afile.write_text('mine')
    with pytest.raises(ValueError, match=f'out_dir {afile} is a file'):
        HOOKS.build(dict(type='PRCurveHook', out_dir=str(afile)))
    for max_points in (0, -5, 2.5):
        with pytest.raises(ValueError, match='max_points must be None'):
            HOOKS.build(dict(type='PRCurveHook', max_points=max_points))


@pytest.mark.parametrize('content,found', [
    ('{"iter": 2}', 'found dict'),
    ('[1, 2]', 'found a list holding other values'),
])
def test_a_history_of_other_values_is_refused(tmp_path, content, found):
    (tmp_path / 'metrics_history.json').write_text(content)
    runner = make_runner(tmp_path, evaluated_metric()[0], f'other_{found}')
    runner.epoch, runner.iter = 2, 4
    hook = HOOKS.build(dict(type='PRCurveHook', plot=False))
    with pytest.raises(ValueError, match='expected a JSON list of metric '
                       rf'records \(objects\), {found}; move it away'):
        hook.before_train(runner)


@pytest.mark.usefixtures('own_process_state')
def test_validation_without_training(tmp_path, demo_root):
    """runner.val() alone, with the demo config's hooks: CheckpointHook's
    save_best (mmengine's bug, mmseg_ptx.compat fix 7) keeps nothing, and
    this hook writes the curve as val.* without touching the training
    run's val_latest.* and metrics_history.json."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    from conftest import write_tiny_run_config
    cfg = Config.fromfile(
        str(write_tiny_run_config(tmp_path / 'val.py', demo_root)))
    assert cfg.default_hooks.checkpoint.save_best == 'dice'
    work = tmp_path / 'work'
    cfg.work_dir = str(work)
    metrics = Runner.from_cfg(cfg).val()
    assert metrics['num_images'] > 0
    assert (work / 'pr_curves' / 'val.json').is_file()
    assert len(list(work.glob('*/vis_data'))) == 1
    assert not list(work.glob('pr_curves/val_latest.*'))
    assert not (work / 'metrics_history.json').exists()
    assert not list(work.rglob('*.pth'))


def test_a_runner_without_a_train_loop_is_not_training():
    """A config without train_cfg (evaluation only) leaves mmengine's
    Runner no train loop, and runner.epoch 0: its validation must not be
    written as the training run's (val_latest.*, the history)."""
    from mmseg_ptx.engine.hooks.pr_curve_hook import _progress
    for loop in (None, dict(type='EpochBasedTrainLoop')):
        assert _progress(
            SimpleNamespace(_train_loop=loop, epoch=0, iter=0)) == (None,
                                                                    None)
    assert _progress(SimpleNamespace(_train_loop=SimpleNamespace(), epoch=3,
                                     iter=30)) == (3, 30)


@pytest.mark.parametrize('milestone,val_begin,expected', [
    (5, 2, [2, 3, 4, 6, 8, 9]),
    # An even milestone: after epoch 3 the loop already uses the next
    # epoch's interval (its _decide_current_val_interval looks at
    # epoch + 1), so epoch 3 is not validated.
    (4, 1, [1, 2, 4, 6, 8, 9]),
])
def test_validation_due_follows_the_loops_dynamic_intervals(
        milestone, val_begin, expected):
    """Where a resumed epoch loop stands after N epochs, it validated if
    its loop would have: every epoch until the milestone, then every other
    (dynamic_intervals=[(milestone, 2)], as mmengine's loop picks it), and
    at the last epoch."""
    from mmengine.runner import EpochBasedTrainLoop
    from mmengine.runner.utils import calc_dynamic_intervals

    from mmseg_ptx.engine.hooks.pr_curve_hook import _validation_due
    loop = EpochBasedTrainLoop.__new__(EpochBasedTrainLoop)
    loop._max_epochs, loop.val_begin = 9, val_begin
    loop.dynamic_milestones, loop.dynamic_intervals = calc_dynamic_intervals(
        1, [(milestone, 2)])
    runner = SimpleNamespace(_train_loop=loop, _val_loop=object())
    due = []
    for runner.epoch in range(1, 10):
        if _validation_due(runner):
            due.append(runner.epoch)
    assert due == expected
    runner._val_loop = None  # no validation configured
    assert not _validation_due(runner)
