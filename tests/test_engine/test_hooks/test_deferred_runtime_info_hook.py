"""DeferredRuntimeInfoHook: the train step's log values read back in
batches, with the same logs and checkpoints as RuntimeInfoHook."""
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import process_state_kept, write_tiny_run_config
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmseg.registry import HOOKS

from mmseg_ptx.engine.hooks import DeferredRuntimeInfoHook
from mmseg_ptx.utils import HostSyncRecorder

TRAIN_KEYS = ('train/loss', 'train/decode.loss_dice_ce',
              'train/decode.acc_seg', 'train/aux.loss_dice_ce')


class RecordTraining(Hook):
    """Records host syncs from before the first train iteration to after
    the last (validation included), not the weight initialisation or the
    report after the run."""

    def __init__(self, recorder):
        self.recorder = recorder

    def before_train(self, runner):
        self.recorder.__enter__()

    def after_train(self, runner):
        self.recorder.__exit__(None, None, None)


def train(tmp_path, demo_root, name, runtime_info):
    config = write_tiny_run_config(
        tmp_path / f'{name}.py', demo_root, extra=f"""
train_cfg = dict(max_epochs=2, val_interval=100)
default_hooks = dict(logger=dict(interval=2),
                     runtime_info=dict(type={runtime_info!r}))
""")
    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(tmp_path / name)
    cfg.experiment_name = name
    # Its own visualizer and logger, not those of the run before.
    with process_state_kept():
        runner = Runner.from_cfg(cfg)
        syncs = HostSyncRecorder()
        runner.register_hook(RecordTraining(syncs), priority='HIGHEST')
        runner.train()
    assert len(list((tmp_path / name).glob('*/vis_data'))) == 1
    checkpoint = torch.load(tmp_path / name / 'epoch_2.pth',
                            weights_only=False)
    return runner, syncs, checkpoint


def history(message_hub, key):
    return message_hub.get_scalar(key).data[0].tolist()


def test_same_logs_and_checkpoint_without_waiting(tmp_path, demo_root):
    stock, stock_syncs, stock_ckpt = train(tmp_path, demo_root, 'stock',
                                           'RuntimeInfoHook')
    deferred, syncs, ckpt = train(tmp_path, demo_root, 'deferred',
                                  'DeferredRuntimeInfoHook')
    hook = next(h for h in deferred.hooks
                if isinstance(h, DeferredRuntimeInfoHook))
    assert not hook._pending
    for key in TRAIN_KEYS:
        assert history(deferred.message_hub, key) == history(
            stock.message_hub, key), key
        # The checkpoint's message hub (for resuming) holds them too.
        assert ckpt['message_hub']['log_scalars'][key].data[0].tolist() == \
            stock_ckpt['message_hub']['log_scalars'][key].data[0].tolist()
    iters = deferred.iter
    assert len(history(deferred.message_hub, 'train/loss')) == iters > 2
    # Stock reads every value back every iteration; the deferred hook reads
    # them as one stacked tensor per dtype where it flushes (logging
    # iterations, the epoch's end, the checkpoint).
    stock_reads = sum(
        count for (op, where), count in stock_syncs.counts.items()
        if op == '_local_scalar_dense' and 'message_hub.py' in where)
    assert stock_reads >= iters * len(TRAIN_KEYS)
    flush_reads = sum(count for (op, where), count in syncs.counts.items()
                      if 'deferred_runtime_info_hook.py' in where)
    assert 0 < flush_reads < iters, syncs.report()
    # Nor does anything else in training: the model (with DiceCELoss and
    # TrainSegMetricsHook's Dice/IoU), the hooks, the optimizer. What is
    # left: the samplers, which draw on the host anyway (read where they
    # draw, or where the loop iterates over the loader), and the
    # checkpoint, whose weights are copied to the host to be saved.
    host_side = ('mmengine/runner/loops.py', 'class_balanced_sampler.py',
                 'mmengine/dataset/sampler.py')
    saving = ('mmengine/runner/checkpoint.py', 'mmengine/runner/runner.py')
    for (op, where), _ in syncs.counts.items():
        if any(path in where for path in saving):
            assert op == 'cpu (host read)', syncs.report()
        else:
            assert any(path in where for path in host_side + (
                'deferred_runtime_info_hook.py', )), syncs.report()

    # The logged lines are the same (timings aside).
    def logged(runner):
        log = Path(runner.log_dir, f'{runner.timestamp}.log').read_text()
        return [re.findall(r'((?:decode|aux)?\.?(?:loss|acc)\S*: \S+)', line)
                for line in log.splitlines() if 'Epoch(train)' in line]

    assert logged(deferred) == logged(stock)
    assert len(logged(stock)) >= 2 and all(logged(stock))


class FakeRunner(SimpleNamespace):
    """What the hook reads of a Runner, with a real message hub."""


def make_runner(name, loader_len=10, max_iters=100, logger_interval=4):
    from mmengine.hooks import LoggerHook
    from mmengine.logging import MessageHub
    return FakeRunner(
        message_hub=MessageHub.get_instance(name),
        hooks=[LoggerHook(interval=logger_interval)],
        train_dataloader=list(range(loader_len)),
        iter=0, max_iters=max_iters, epoch=0, max_epochs=10)


def step(hook, runner, batch_idx, loss):
    runner.iter = batch_idx
    hook.after_train_iter(runner, batch_idx,
                          outputs=dict(loss=torch.tensor(loss),
                                       acc_seg=torch.tensor([loss * 10]),
                                       count=3))


def test_reads_back_where_logs_are_written():
    hook = HOOKS.build(dict(type='DeferredRuntimeInfoHook', interval=7))
    runner = make_runner('deferred_where')
    hook._logger_intervals = [4]
    for i in range(3):
        step(hook, runner, i, float(i))
    assert 'train/loss' not in runner.message_hub.log_scalars
    assert len(hook._pending) == 9
    step(hook, runner, 3, 3.0)  # the logger logs after iteration 4
    assert history(runner.message_hub, 'train/loss') == [0.0, 1.0, 2.0, 3.0]
    assert history(runner.message_hub, 'train/acc_seg') == [
        0.0, 10.0, 20.0, 30.0]
    assert history(runner.message_hub, 'train/count') == [3] * 4
    for i in range(4, 7):
        step(hook, runner, i, float(i))
    assert len(history(runner.message_hub, 'train/loss')) == 7  # interval
    step(hook, runner, 7, 7.0)
    assert len(history(runner.message_hub, 'train/loss')) == 8  # logger
    step(hook, runner, 8, 8.0)
    step(hook, runner, 9, 9.0)  # end of the 10-batch epoch
    assert len(history(runner.message_hub, 'train/loss')) == 10
    assert not hook._pending


@pytest.mark.parametrize('event', ['after_train_epoch', 'after_train',
                                   'before_val'])
def test_reads_back_at_loop_boundaries(event):
    hook = HOOKS.build(dict(type='DeferredRuntimeInfoHook'))
    runner = make_runner(f'deferred_{event}', loader_len=1000)
    runner.message_hub.update_info('loop_stage', 'train')
    hook._logger_intervals = [50]
    step(hook, runner, 0, 0.5)
    getattr(hook, event)(runner)
    assert history(runner.message_hub, 'train/loss') == [0.5]


def test_checkpoint_gets_pending_values():
    hook = HOOKS.build(dict(type='DeferredRuntimeInfoHook'))
    runner = make_runner('deferred_ckpt', loader_len=1000)
    hook._logger_intervals = [50]
    step(hook, runner, 0, 0.25)
    checkpoint = dict(message_hub=runner.message_hub.state_dict())
    assert 'train/loss' not in checkpoint['message_hub']['log_scalars']
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint['message_hub']['log_scalars'][
        'train/loss'].data[0].tolist() == [0.25]


def test_keeps_no_autograd_graph():
    hook = HOOKS.build(dict(type='DeferredRuntimeInfoHook'))
    runner = make_runner('deferred_graph', loader_len=1000)
    hook._logger_intervals = [50]
    weight = torch.ones((), requires_grad=True)
    hook.after_train_iter(runner, 0, outputs=dict(loss=weight * 2))
    assert not hook._pending[0][1].requires_grad


def test_rejects_bad_interval():
    with pytest.raises(ValueError, match='interval'):
        DeferredRuntimeInfoHook(interval=0)
