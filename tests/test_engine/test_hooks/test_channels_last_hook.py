"""ChannelsLastHook / to_channels_last: NHWC weights, same maths."""
import copy
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmseg.registry import HOOKS
from tiny_model import build_tiny_model

from mmseg_ptx.engine.hooks import to_channels_last


def conv_weights(model):
    return [p for p in model.parameters() if p.dim() == 4]


def is_channels_last(t):
    return t.is_contiguous(memory_format=torch.channels_last)


def make_runner(model, name, optim_wrapper=None):
    return SimpleNamespace(model=model, optim_wrapper=optim_wrapper,
                           logger=MMLogger.get_instance(name))


def test_converts_weights_in_place_same_outputs():
    model = build_tiny_model(size=64)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x, mode='tensor')
    params = list(model.parameters())
    n = to_channels_last(model)
    weights = conv_weights(model)
    # Patch embedding, UPerHead and FCN convolutions, conv_seg.
    assert n == len(weights) > 5
    assert all(is_channels_last(w) for w in weights)
    assert not weights[0].is_contiguous()  # the patch embedding, 4x4
    # The same Parameter objects: an optimizer built before stays valid.
    assert all(a is b for a, b in zip(params, model.parameters()))
    with torch.no_grad():
        # Same up to rounding: NHWC convolutions sum in another order.
        torch.testing.assert_close(model(x, mode='tensor'), expected,
                                   atol=1e-4, rtol=1e-4)
    assert to_channels_last(model) == n  # again: nothing changes


def adamw_steps(model, optimizer, grads):
    for grad in grads:
        for p, g in zip(model.parameters(), grad):
            # Laid out like the weight, as autograd does.
            p.grad = torch.empty_like(p).copy_(g)
        optimizer.step()


def adamw_pair(device, fused, steps=3):
    """A tiny model and its copy, each with an AdamW, after the first of
    ``steps`` random gradients; the gradients left."""
    torch.manual_seed(0)
    model = build_tiny_model(size=64).to(device)
    reference = copy.deepcopy(model)
    pair = (model, torch.optim.AdamW(model.parameters(), lr=0.1, fused=fused),
            reference,
            torch.optim.AdamW(reference.parameters(), lr=0.1, fused=fused))
    grads = [[torch.randn_like(p) for p in model.parameters()]
             for _ in range(steps)]
    adamw_steps(*pair[:2], grads[:1])
    adamw_steps(*pair[2:], grads[:1])
    return pair, grads[1:]


def assert_same_steps(model, opt, reference, ref_opt, grads):
    adamw_steps(model, opt, grads)
    adamw_steps(reference, ref_opt, grads)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)


# Fused AdamW on CUDA refuses mixed layouts; run there where there is one.
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


FUSED_ON_CPU = torch.__version__ >= '2.4'


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('fused', [
    False,
    pytest.param(True, marks=pytest.mark.skipif(
        not FUSED_ON_CPU, reason='fused AdamW on CPU: torch 2.4'))
])
def test_optimizer_state_follows_the_weights(fused, device):
    """A resumed AdamW state (NCHW moments) converted with the weights:
    the next steps equal those of a model that stayed NCHW. Fused AdamW
    with NCHW moments and NHWC weights mixes elements up on the CPU."""
    (model, opt, reference, ref_opt), grads = adamw_pair(device, fused)
    hook = HOOKS.build(dict(type='ChannelsLastHook'))
    runner = make_runner(model, f'channels_last_opt_{fused}_{device}',
                         OptimWrapperDict(a=OptimWrapper(opt)))
    hook.before_train(runner)
    for w in conv_weights(model):
        assert all(is_channels_last(opt.state[w][k])
                   for k in ('exp_avg', 'exp_avg_sq'))
    assert_same_steps(model, opt, reference, ref_opt, grads)


def test_optimizer_wrapper_and_unbuilt_config():
    model = build_tiny_model(size=64)
    opt = torch.optim.AdamW(model.parameters())
    w = conv_weights(model)[0]
    opt.state[w] = dict(exp_avg=torch.zeros_like(w), step=torch.tensor(1.))
    hook = HOOKS.build(dict(type='ChannelsLastHook'))
    hook.before_train(make_runner(model, 'cl_wrapper', OptimWrapper(opt)))
    assert is_channels_last(opt.state[w]['exp_avg'])
    # A test run's optim_wrapper is the config's dict: only the model.
    hook.before_train(make_runner(model, 'cl_cfg', dict(type='OptimWrapper')))


def test_logs_once_and_warns():
    hook = HOOKS.build(dict(type='ChannelsLastHook'))
    runner = make_runner(build_tiny_model(size=64), 'cl_log')
    runner.logger = mock.Mock(wraps=runner.logger)
    hook.before_train(runner)
    hook.before_val(runner)  # validation during training: said once
    assert runner.logger.info.call_count == 1
    assert 'convolution weights in channels_last' in \
        runner.logger.info.call_args.args[0]
    hook = HOOKS.build(dict(type='ChannelsLastHook'))
    runner = make_runner(torch.nn.Linear(2, 2), 'cl_warn')
    runner.logger = mock.Mock(wraps=runner.logger)
    hook.before_test(runner)
    assert 'no 4-D' in runner.logger.warning.call_args.args[0]


def test_seeded_initialisation_unchanged():
    """Nothing is converted before the Runner initialises the weights
    (random initialisers fill a channels_last tensor in another order)."""
    def initial_weights(hook):
        model = build_tiny_model(size=64)
        if hook:
            hook.before_run(make_runner(model, 'cl_init'))
        torch.manual_seed(1)
        model.init_weights()
        return model.state_dict()

    expected = initial_weights(None)
    got = initial_weights(HOOKS.build(dict(type='ChannelsLastHook')))
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


@pytest.mark.parametrize('device', DEVICES)
def test_checkpoint_in_default_layout(device):
    """Saved weights and moments are contiguous (the live optimizer keeps
    its channels_last state), so a run without the hook resumes them: its
    fused AdamW step equals one that never saw channels_last."""
    # Fused: the resumed optimizer takes its param groups' settings from
    # the checkpoint.
    (model, opt, reference, ref_opt), grads = adamw_pair(
        device, fused=FUSED_ON_CPU or device == 'cuda', steps=2)
    hook = HOOKS.build(dict(type='ChannelsLastHook'))
    hook.before_train(make_runner(model, f'cl_save_{device}',
                                  OptimWrapper(opt)))
    checkpoint = dict(state_dict=model.state_dict(),
                      optimizer=opt.state_dict(), meta=dict(epoch=1))
    metadata = checkpoint['state_dict']._metadata
    hook.before_save_checkpoint(None, checkpoint)
    assert checkpoint['state_dict']._metadata is metadata
    saved = [t for t in checkpoint['state_dict'].values()] + [
        t for s in checkpoint['optimizer']['state'].values()
        for t in s.values()]
    assert any(t.dim() == 4 and t.shape[-1] > 1 for t in saved)
    assert all(t.is_contiguous() for t in saved)
    assert all(is_channels_last(opt.state[w]['exp_avg'])
               for w in conv_weights(model))

    resumed = build_tiny_model(size=64).to(device)
    resumed.load_state_dict(checkpoint['state_dict'])
    resumed_opt = torch.optim.AdamW(resumed.parameters())
    resumed_opt.load_state_dict(checkpoint['optimizer'])
    assert_same_steps(resumed, resumed_opt, reference, ref_opt, grads)


def test_refuses_gradient_as_bucket_view():
    model = build_tiny_model(size=64)
    # A DDP wrapper without a process group: only its attributes are used.
    wrapper = MMDistributedDataParallel.__new__(MMDistributedDataParallel)
    torch.nn.Module.__init__(wrapper)
    wrapper.module = model
    wrapper.gradient_as_bucket_view = True
    hook = HOOKS.build(dict(type='ChannelsLastHook'))
    with pytest.raises(ValueError, match='gradient_as_bucket_view'):
        hook.before_train(make_runner(wrapper, 'cl_ddp'))
    wrapper.gradient_as_bucket_view = False
    hook.before_train(make_runner(wrapper, 'cl_ddp_ok'))
    assert all(is_channels_last(w) for w in conv_weights(model))


def test_training_run_and_resume_without_the_hook(tmp_path, demo_root,
                                                  tool_main):
    """tools/train.py with the hook and fused AdamW for an epoch (train,
    validation, checkpoint), then a resume of its checkpoint without the
    hook for a second epoch."""
    from conftest import write_tiny_run_config
    fused = "optim_wrapper = dict(optimizer=dict(fused=True))\n"
    hook = ("custom_hooks = _base_.custom_hooks + "
            "[dict(type='ChannelsLastHook')]\n")
    work_dir = tmp_path / 'work'
    status, out, err = tool_main('train', write_tiny_run_config(
        tmp_path / 'hook.py', demo_root, extra=fused + hook),
        '--work-dir', work_dir)
    assert status == 0, err[-3000:]
    log = out + err
    assert log.count('convolution weights in channels_last') == 1
    assert 'Epoch(val) [1]' in log
    checkpoint = torch.load(work_dir / 'epoch_1.pth', map_location='cpu',
                            weights_only=False)
    moments = [s['exp_avg'] for s in checkpoint['optimizer']['state']
               .values() if s['exp_avg'].dim() == 4
               and s['exp_avg'].shape[-1] > 1]
    assert moments and all(m.is_contiguous() for m in moments)
    assert all(t.is_contiguous() for t in checkpoint['state_dict'].values())
    status, out, err = tool_main('train', write_tiny_run_config(
        tmp_path / 'plain.py', demo_root, max_epochs=2, extra=fused),
        '--work-dir', work_dir, '--resume')
    assert status == 0, err[-3000:]
    assert 'resumed epoch: 1' in (out + err)
    assert (work_dir / 'epoch_2.pth').is_file()
