"""MergedParamGroupsOptimWrapperConstructor: same settings and updates as
mmengine's default constructor, in one group per distinct setting."""
import copy
import logging

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.optim.scheduler import LinearLR
from conftest import CPU_FUSED_ADAMW, needs_cpu_fused_adamw
from tiny_model import build_tiny_model

from mmseg_ptx.engine.optimizers import merge_param_groups

# MMSeg's Swin setting, as in configs/_base_/schedules/schedule_200e.py.
PARAMWISE = dict(
    custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.),
        'relative_position_bias_table': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
        'decode_head': dict(lr_mult=10.),
    })
MERGED = 'MergedParamGroupsOptimWrapperConstructor'


@pytest.fixture(autouse=True)
def quiet_paramwise_log():
    # mmengine logs three lines per parameter while building the groups.
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)


def optim_cfg(constructor=None, fused=False, paramwise=PARAMWISE):
    cfg = dict(
        type='OptimWrapper',
        optimizer=dict(
            type='AdamW', lr=1e-3, weight_decay=0.05, fused=fused))
    if paramwise is not None:
        cfg['paramwise_cfg'] = paramwise
    if constructor:
        cfg['constructor'] = constructor
    return cfg


def options_by_param(optimizer):
    """Each parameter's group options (all but ``params``)."""
    out = {}
    for group in optimizer.param_groups:
        options = {k: v for k, v in group.items() if k != 'params'}
        for param in group['params']:
            out[id(param)] = options
    return out


def test_merge_param_groups_keeps_order_and_options():
    a, b, c, d = (torch.nn.Parameter(torch.zeros(1)) for _ in range(4))
    groups = [
        dict(params=[a], lr=0.1, weight_decay=0.0),
        dict(params=[b], lr=0.1, weight_decay=0.01),
        dict(params=[c], weight_decay=0.0, lr=0.1),  # key order differs
        dict(params=[d], lr=0.2, weight_decay=0.0),
    ]
    merged = merge_param_groups(groups)
    assert [g['params'] for g in merged] == [[a, c], [b], [d]]
    assert [(g['lr'], g['weight_decay']) for g in merged] == [(0.1, 0.0),
                                                              (0.1, 0.01),
                                                              (0.2, 0.0)]


def test_same_options_per_parameter_in_fewer_groups():
    model = build_tiny_model()
    default = build_optim_wrapper(model, optim_cfg()).optimizer
    merged = build_optim_wrapper(model, optim_cfg(MERGED)).optimizer
    assert len(default.param_groups) == len(list(model.parameters()))
    distinct = {repr(sorted(o.items()))
                for o in options_by_param(default).values()}
    # Weight decay or not outside the decode head, lr x 10 inside it (the
    # longest matching custom key wins).
    assert len(distinct) == 3
    assert len(merged.param_groups) == len(distinct)
    assert options_by_param(merged) == options_by_param(default)
    order = [id(p) for g in merged.param_groups for p in g['params']]
    assert sorted(order) == sorted(id(p) for p in model.parameters())


def test_without_paramwise_cfg_one_group():
    model = build_tiny_model()
    optimizer = build_optim_wrapper(
        model, optim_cfg(MERGED, paramwise=None)).optimizer
    assert len(optimizer.param_groups) == 1


@pytest.mark.parametrize(
    'fused', [False, pytest.param(True, marks=needs_cpu_fused_adamw)])
def test_identical_updates_and_schedule(fused):
    """Three AdamW steps under a warm-up schedule give bitwise the same
    weights as the default constructor's per-parameter groups."""
    models = [build_tiny_model(), build_tiny_model()]
    wrappers = [
        build_optim_wrapper(models[0], optim_cfg(fused=fused)),
        build_optim_wrapper(models[1], optim_cfg(MERGED, fused=fused))
    ]
    schedulers = [
        LinearLR(w, start_factor=0.1, by_epoch=False, end=3)
        for w in wrappers
    ]
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        grads = [
            torch.randn(p.shape, generator=gen)
            for p in models[0].parameters()
        ]
        for model, wrapper, scheduler in zip(models, wrappers, schedulers):
            for param, grad in zip(model.parameters(), grads):
                param.grad = grad.clone()
            wrapper.step()
            wrapper.zero_grad()
            scheduler.step()
    for (name, p0), p1 in zip(models[0].named_parameters(),
                              models[1].parameters()):
        assert torch.equal(p0, p1), name
    lrs = [options_by_param(w.optimizer) for w in wrappers]
    for p0, p1 in zip(models[0].parameters(), models[1].parameters()):
        assert lrs[0][id(p0)]['lr'] == lrs[1][id(p1)]['lr']
    # Not vacuous: the weights moved.
    assert not torch.equal(
        next(models[1].parameters()), next(build_tiny_model().parameters()))


def test_resumes_a_state_saved_with_one_group_per_parameter():
    """A default-constructor state loads into merged groups, and training
    goes on exactly as it would have."""
    models = [build_tiny_model(), build_tiny_model()]
    saved_with = build_optim_wrapper(models[0],
                                     optim_cfg(fused=CPU_FUSED_ADAMW))
    scheduler = LinearLR(saved_with, start_factor=0.1, by_epoch=False, end=4)
    gen = torch.Generator().manual_seed(0)

    def step(model, wrapper, grads):
        for param, grad in zip(model.parameters(), grads):
            param.grad = grad.clone()
        wrapper.step()
        wrapper.zero_grad()

    def random_grads():
        return [torch.randn(p.shape, generator=gen)
                for p in models[0].parameters()]

    for _ in range(2):
        step(models[0], saved_with, random_grads())
        scheduler.step()
    state = copy.deepcopy(saved_with.state_dict())
    models[1].load_state_dict(models[0].state_dict())
    resumed = build_optim_wrapper(models[1],
                                  optim_cfg(MERGED, fused=CPU_FUSED_ADAMW))
    resumed.load_state_dict(state)
    assert len(resumed.optimizer.param_groups) == 3
    lrs = [options_by_param(w.optimizer) for w in (saved_with, resumed)]
    for p0, p1 in zip(models[0].parameters(), models[1].parameters()):
        assert lrs[0][id(p0)]['lr'] == lrs[1][id(p1)]['lr']
    grads = random_grads()
    step(models[0], saved_with, grads)
    step(models[1], resumed, grads)
    for (name, p0), p1 in zip(models[0].named_parameters(),
                              models[1].parameters()):
        assert torch.equal(p0, p1), name
    # A state of another model still fails, with torch's message.
    other = build_optim_wrapper(torch.nn.Linear(2, 2),
                                optim_cfg(MERGED, paramwise=None))
    with pytest.raises(ValueError, match='parameter groups'):
        other.load_state_dict(state)


def test_logs_one_line_per_group():
    logger = MMLogger.get_current_instance()
    logger.setLevel(logging.INFO)
    lines = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.addHandler(handler)
    try:
        build_optim_wrapper(build_tiny_model(), optim_cfg(MERGED))
    finally:
        logger.removeHandler(handler)
    assert [line for line in lines if line.startswith('param group')] == [
        'param group 0: 74 parameters, lr=0.001, weight_decay=0.05',
        'param group 1: 56 parameters, lr=0.001, weight_decay=0.0, '
        'decay_mult=0.0',
        'param group 2: 38 parameters, lr=0.01, weight_decay=0.05, '
        'lr_mult=10.0'
    ]
    assert not any('paramwise_options' in line for line in lines)
    assert logger.level == logging.INFO  # restored


@pytest.mark.parametrize('lr_mult', [10., None])
def test_warns_when_schedulers_would_resume_wrong_base_values(lr_mult):
    """Schedulers keep one saved base value per saved group: merged groups
    that start from different learning rates get a warning, one learning
    rate (this project's schedule) none."""
    keys = dict(PARAMWISE['custom_keys'])
    if lr_mult is None:
        del keys['decode_head']
    else:
        keys['decode_head'] = dict(lr_mult=lr_mult)
    model = build_tiny_model()
    saved_with = build_optim_wrapper(
        model, optim_cfg(paramwise=dict(custom_keys=keys)))
    LinearLR(saved_with, start_factor=0.1, by_epoch=False, end=4)
    state = copy.deepcopy(saved_with.state_dict())
    resumed = build_optim_wrapper(
        model, optim_cfg(MERGED, paramwise=dict(custom_keys=keys)))
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        resumed.load_state_dict(state)
    finally:
        logger.removeHandler(handler)
    if lr_mult is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert warnings[0].startswith(
            'An optimizer state of 168 parameter groups was merged into 3, '
            'which start from different learning rates (0.001, 0.01)')
        assert 'CosineAnnealingLR with eta_min_ratio' in warnings[0]
