"""tools/benchmark.py runs end to end on CPU and reports its figures."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import load_tool, needs_cpu_fused_adamw, needs_flex_attention

from mmseg_ptx.models import SwinTransformerSDPA

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / 'tools' / 'benchmark.py'
CONFIG = ROOT / 'tests' / 'data' / 'configs' / 'tiny_upernet_swin.py'
BASE_ARGS = [
    '--device', 'cpu', '--iters', '2', '--warmup', '1', '--batch-size', '2',
    '--img-size', '64', '64'
]


def run_benchmark_process(tmp_path, *extra):
    """``python tools/benchmark.py`` on the tiny config: its JSON report and
    stdout."""
    out = tmp_path / 'bench.json'
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [str(ROOT)] + [p for p in [env.get('PYTHONPATH')] if p])
    proc = subprocess.run(
        [sys.executable,
         str(TOOL),
         str(CONFIG), *BASE_ARGS, '--json',
         str(out), *extra],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.fixture
def run_benchmark(tmp_path, capsys, monkeypatch):
    """The same in this process (a tool process costs seconds of imports):
    ``run_benchmark(*extra)`` gives the JSON report and stdout."""
    tool = load_tool('benchmark')
    monkeypatch.chdir(tmp_path)

    def run(*extra):
        out = tmp_path / 'bench.json'
        tool.main([str(CONFIG), *BASE_ARGS, '--json', str(out), *extra])
        return json.loads(out.read_text()), capsys.readouterr().out

    return run


def test_step_and_infer_modes(tmp_path):
    """--mode all: step and infer measured, loader skipped (no data)."""
    report, stdout = run_benchmark_process(tmp_path, '--mode', 'all')
    results = {r['mode']: r for r in report['results']}
    assert set(results) == {'step', 'infer'}
    for result in results.values():
        assert result['variant'] == 'stock'
        assert result['batch_size'] == 2
        assert result['images'] == 4
        assert result['img_per_s'] > 0
        assert result['s_per_iter'] >= result['s_per_iter_min'] > 0
        # The images of all timed iterations over their time (--iters 2).
        assert result['img_per_s'] == pytest.approx(
            result['images'] / (2 * result['s_per_iter']))
        # One untimed warm-up iteration (run_benchmark's --warmup 1).
        assert result['warmup_s'] > 0
        assert result['peak_mem_mib'] > 0
        assert result['warmup_peak_mem_mib'] > 0
        assert result['mem_kind'].startswith('cpu')
    assert report['skipped'] == [
        'stock loader: skipped, the config has no train_dataloader'
    ]
    assert report['settings']['img_size'] == [64, 64]
    # What a figure needs to be repeated: versions, commit, modes.
    settings = report['settings']
    assert settings['mode'] == ['all']
    assert settings['mmseg'] and settings['mmengine'] and settings['python']
    assert settings['commit'].split('+')[0] == subprocess.run(
        ['git', 'rev-parse', 'HEAD'], cwd=ROOT, capture_output=True,
        text=True).stdout.strip()
    # The table is printed too.
    assert 'img/s' in stdout and 'stock' in stdout


def test_table_cells_are_the_results_figures():
    tool = load_tool('benchmark')
    result = dict(variant='stock', mode='step', batch_size=4, img_per_s=12.5,
                  s_per_iter=0.32, s_per_iter_min=0.3, peak_mem_mib=2048.4,
                  warmup_s=7.25, warmup_peak_mem_mib=3072.6,
                  tflop_per_s=1.234)
    header, _, row = tool.format_table([result]).splitlines()
    cells = dict(zip([c.strip() for c in header.split(' | ')],
                     [c.strip() for c in row.split(' | ')]))
    assert cells == {
        'variant': 'stock', 'mode': 'step', 'batch': '4', 'img/s': '12.50',
        's/iter': '0.3200', 'min s/iter': '0.3000', 'peak MiB': '2048',
        'warm-up s': '7.2', 'warm-up peak MiB': '3073', 'TFLOP/s': '1.23'}


def test_sweep_compares_stock_with_each_switch(run_benchmark):
    report, _ = run_benchmark('--mode', 'infer', '--sweep',
                              '--backbone-type', 'SwinTransformerSDPA',
                              '--amp', 'bf16')
    variants = [r['variant'] for r in report['results']]
    assert variants == [
        'stock', 'SwinTransformerSDPA', 'bf16', 'SwinTransformerSDPA+bf16'
    ]
    assert report['results'][-1]['switches'] == dict(
        backbone_type='SwinTransformerSDPA', amp='bf16')
    assert all(r['img_per_s'] > 0 for r in report['results'])


@needs_cpu_fused_adamw
def test_sdpa_step_with_fused_adamw_channels_last(run_benchmark):
    report, _ = run_benchmark('--mode', 'step', '--backbone-type',
                              'SwinTransformerSDPA', '--fused-adamw',
                              '--channels-last')
    (result, ) = report['results']
    assert result['variant'] == (
        'SwinTransformerSDPA+channels_last+fused_adamw')
    assert result['img_per_s'] > 0


def flop_counter_tracks_modules() -> bool:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        torch.nn.Sequential(torch.nn.Linear(1, 1))(torch.ones(1, 1))
    return 'Sequential.0' in counter.get_flop_counts()


def test_flops_and_sustained_tflops(run_benchmark):
    report, stdout = run_benchmark('--mode', 'all', '--flops')
    flops = report['flops']
    step, infer = flops['step_gflop_per_img'], flops['infer_gflop_per_img']
    # backward costs about twice the forward; training adds the aux head
    assert step > 2.5 * infer > 0
    modules = flops['infer_gflop_per_img_by_module']
    if flop_counter_tracks_modules():
        assert set(modules) == {'backbone', 'decode_head'}
        assert sum(modules.values()) == pytest.approx(infer)
    else:  # torch < 2.2
        assert modules == {}
    for row in report['results']:
        per_img = infer if row['mode'] == 'infer' else step
        assert row['tflop_per_s'] == pytest.approx(
            row['img_per_s'] * per_img / 1e3)
    assert 'GFLOP per image: train step' in stdout and 'TFLOP/s' in stdout
    # SDPA attention is counted like stock's matmuls (on its math path:
    # the counter has no formula for the CPU flash kernel). A config whose
    # data preprocessor pads training images to 128 px still has its train
    # step measured (and counted) at --img-size.
    sdpa, stdout = run_benchmark('--mode', 'infer', '--flops',
                                 '--cfg-options',
                                 'model.backbone.type=SwinTransformerSDPA',
                                 'model.data_preprocessor.size=[128,128]')
    assert sdpa['flops']['infer_gflop_per_img'] == pytest.approx(infer)
    assert sdpa['flops']['step_gflop_per_img'] == pytest.approx(step)
    assert ('pads its training batches to --img-size (64, 64), not to the '
            "config's data_preprocessor size=[128, 128]") in stdout


@needs_flex_attention
def test_flops_of_flex_attention_counted_as_sdpa():
    """A backbone with attn_impl='flex' counts the FLOPs of the same
    maths with SDPA (FlexAttention's backward has no CPU kernel), and the
    caller's config is left as it was."""
    from mmengine.config import Config
    tool = load_tool('benchmark')
    cfg = Config.fromfile(str(CONFIG))
    sdpa = tool.count_flops(cfg, (64, 64), 'cpu', 'SwinTransformerSDPA')
    cfg.model.backbone.attn_impl = 'flex'
    cfg.model.backbone.flex_kernel_options = dict(BLOCK_M=16)
    flex = tool.count_flops(cfg, (64, 64), 'cpu', 'SwinTransformerSDPA')
    assert flex == sdpa
    assert sdpa['step_gflop_per_img'] > 0
    assert cfg.model.backbone.attn_impl == 'flex'
    assert cfg.model.backbone.flex_kernel_options == dict(BLOCK_M=16)


def test_stock_variant_drops_the_options_of_swin_sdpa():
    """A config with SwinTransformerSDPA and its own options builds the
    stock variant, or one asking for another backbone: mmseg's
    SwinTransformer, without those options."""
    from mmengine.config import Config
    tool = load_tool('benchmark')
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.backbone.update(
        type='SwinTransformerSDPA', sdpa_backends=['math'])
    assert 'sdpa_backends' in tool.SDPA_ONLY_OPTIONS
    stock = tool.build_model(cfg, {}, 'cpu')
    assert type(stock.backbone).__name__ == 'SwinTransformer'
    # Asked for by name too (--backbone-type SwinTransformer).
    named = tool.build_model(cfg, dict(backbone_type='SwinTransformer'),
                             'cpu')
    assert type(named.backbone).__name__ == 'SwinTransformer'
    fast = tool.build_model(
        cfg, dict(backbone_type='SwinTransformerSDPA'), 'cpu')
    assert type(fast.backbone) is SwinTransformerSDPA


def test_several_batch_sizes_one_model(run_benchmark):
    report, stdout = run_benchmark('--mode', 'all',
                                   '--batch-size', '2', '3')
    rows = [r for r in report['results'] if r['mode'] == 'infer']
    assert [(r['variant'], r['batch_size'])
            for r in rows] == [('stock', 2), ('stock', 3)]
    assert [r['images'] for r in rows] == [4, 6]
    assert report['settings']['batch_size'] == [2, 3]
    # The loader's reason to skip is said once, not once per size.
    assert report['skipped'] == [
        'stock loader: skipped, the config has no train_dataloader'
    ]


def test_out_of_memory_is_a_row_not_a_crash(monkeypatch):
    """A batch size that does not fit ends that measurement only."""
    tool = load_tool('benchmark')
    real_time_iterations = tool.time_iterations

    def fail_above_two(step, warmup, iters, device, desc, *args):
        if desc.endswith('b3'):
            raise torch.cuda.OutOfMemoryError('CUDA out of memory.')
        return real_time_iterations(step, warmup, iters, device, desc, *args)

    monkeypatch.setattr(tool, 'time_iterations', fail_above_two)
    report = tool.main([
        str(CONFIG), *BASE_ARGS, '--batch-size', '2', '3', '--mode', 'step'
    ])
    ok, oom = report['results']
    assert ok['batch_size'] == 2 and ok['img_per_s'] > 0
    assert oom == dict(variant='stock', mode='step', switches={},
                       batch_size=3, sync='iteration', error='out of memory')
    assert 'out of memory' in tool.format_table(report['results'])
    # Any other error still ends the run.
    assert not tool.is_out_of_memory(RuntimeError('shape mismatch'))


def test_json_written_after_every_row(tmp_path, monkeypatch):
    tool = load_tool('benchmark')
    out = tmp_path / 'bench.json'
    seen = []
    real_time_iterations = tool.time_iterations

    def look_then_time(*args, **kwargs):
        # What the file held when this row's timing started: the settings
        # before the first row (a part killed while compiling keeps them).
        report = json.loads(out.read_text())
        assert report['settings']['device'] == 'cpu'
        seen.append(len(report['results']))
        return real_time_iterations(*args, **kwargs)

    monkeypatch.setattr(tool, 'time_iterations', look_then_time)
    tool.main([
        str(CONFIG), *BASE_ARGS, '--mode', 'all', '--sweep',
        '--backbone-type', 'SwinTransformerSDPA', '--json', str(out)
    ])
    # step and infer of stock, then of SDPA: each row on disk at once.
    assert seen == [0, 1, 2, 3]
    assert len(json.loads(out.read_text())['results']) == 4


def test_cuda_only_switches_refused_on_cpu(capsys):
    tool = load_tool('benchmark')
    for flag in ('--tf32', '--cudnn-benchmark'):
        with pytest.raises(SystemExit):
            tool.parse_args([str(CONFIG), '--device', 'cpu', flag])
        assert 'only applies to --device cuda' in capsys.readouterr().err


def test_a_missing_config_is_a_usage_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        load_tool('benchmark').parse_args([str(tmp_path / 'no.py')])
    assert exit_.value.code == 2
    assert f'config {tmp_path / "no.py"} is not a file' in capsys.readouterr(
    ).err


def test_drop_pretrained_removes_every_download():
    tool = load_tool('benchmark')
    cfg = dict(
        pretrained='https://example.com/a.pth',
        backbone=dict(
            type='SwinTransformer',
            init_cfg=dict(type='Pretrained', checkpoint='b.pth')),
        decode_head=dict(
            init_cfg=[dict(type='Normal', std=0.01)],
            heads=[dict(init_cfg=dict(type='Pretrained', checkpoint='c'))]))
    tool.drop_pretrained(cfg)
    assert cfg['pretrained'] is None
    assert cfg['backbone']['init_cfg'] is None
    assert cfg['decode_head']['heads'][0]['init_cfg'] is None
    # Other init configs stay.
    assert cfg['decode_head']['init_cfg'] == [dict(type='Normal', std=0.01)]


def test_inference_switches_on_a_copy_merged_groups(monkeypatch):
    """--bf16-weights, --fuse-conv-bn: inference on a folded, then bf16,
    copy; the train step keeps the float32 model and its BatchNorms;
    --merge-param-groups: one group per setting."""
    tool = load_tool('benchmark')
    seen = {}
    real_build_optim, real_cast = tool.build_optim, tool.cast_for_inference
    real_fuse = tool.fuse_conv_bn

    def build_optim(model, *args):
        seen['train'] = model
        seen['optim'] = real_build_optim(model, *args)
        return seen['optim']

    def cast(model):
        seen['infer'] = model
        return real_cast(model)

    def fuse(model):
        assert 'infer' not in seen  # folded before the cast
        seen['folded'] = real_fuse(model)
        return seen['folded']

    monkeypatch.setattr(tool, 'build_optim', build_optim)
    monkeypatch.setattr(tool, 'cast_for_inference', cast)
    monkeypatch.setattr(tool, 'fuse_conv_bn', fuse)
    report = tool.main([
        str(CONFIG), *BASE_ARGS, '--mode', 'all', '--bf16-weights',
        '--fuse-conv-bn', '--merge-param-groups', '--cfg-options',
        "optim_wrapper.paramwise_cfg.custom_keys.norm.decay_mult=0.0"
    ])
    name = 'bf16_weights+fuse_conv_bn+merge_param_groups'
    assert [(r['variant'], r['mode'])
            for r in report['results']] == [(name, 'step'), (name, 'infer')]
    assert seen['infer'] is not seen['train']
    assert {p.dtype for p in seen['train'].parameters()} == {torch.float32}
    assert {p.dtype for p in seen['infer'].backbone.parameters()
            } == {torch.bfloat16}

    def batch_norms(model):
        return sum(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for m in model.modules())

    assert seen['folded'] == batch_norms(seen['train']) > 0
    assert batch_norms(seen['infer']) == 0
    # Norms without weight decay, the rest with it.
    assert len(seen['optim'].optimizer.param_groups) == 2


@needs_cpu_fused_adamw
def test_stock_is_stock_whatever_the_config_sets(monkeypatch):
    """A config with SwinTransformerSDPA, fused AdamW, merged groups and
    AMP (this project's fast config sets all four) still measures mmseg's
    stock setting as 'stock'; each switch turns its own back on."""
    from mmengine.config import Config
    from mmseg.models.backbones import SwinTransformer

    from mmengine.registry import init_default_scope

    from mmseg_ptx.models import SwinTransformerSDPA
    tool = load_tool('benchmark')
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(CONFIG))
    cfg.model.backbone.type = 'SwinTransformerSDPA'
    cfg.optim_wrapper = dict(
        type='AmpOptimWrapper', dtype='bfloat16', loss_scale=1.0,
        constructor='MergedParamGroupsOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.01, fused=True),
        paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
    stock = tool.build_model(cfg, {}, 'cpu')
    assert type(stock.backbone) is SwinTransformer
    optim = tool.build_optim(stock, cfg, {}, 'cpu')
    assert type(optim).__name__ == 'OptimWrapper'
    groups = optim.optimizer.param_groups
    assert len(groups) == len(list(stock.parameters()))
    assert not optim.optimizer.defaults.get('fused')
    switches = dict(backbone_type='SwinTransformerSDPA', fused_adamw=True,
                    merge_param_groups=True)
    fast = tool.build_model(cfg, switches, 'cpu')
    assert isinstance(fast.backbone, SwinTransformerSDPA)
    optim = tool.build_optim(fast, cfg, switches, 'cpu')
    assert len(optim.optimizer.param_groups) == 2
    assert optim.optimizer.defaults['fused']
    # bf16 on a GPU: the AmpOptimWrapper of the bf16 config and of
    # tools/train.py --amp, without loss scaling (built on CUDA only).
    built = []
    monkeypatch.setattr(tool, 'build_optim_wrapper',
                        lambda model, optim_cfg: built.append(optim_cfg))
    tool.build_optim(stock, cfg, dict(amp='bf16'), 'cuda')
    assert (built[0].type, built[0].dtype, built[0].loss_scale) == (
        'AmpOptimWrapper', 'bfloat16', 1.0)


def test_compile_scope_blocks(monkeypatch):
    tool = load_tool('benchmark')
    calls, limits = [], []
    monkeypatch.setattr(
        tool, 'compile_modules',
        lambda model, blocks, **options: calls.append(
            (blocks, options)) or ['backbone.stages.0.blocks.0',
                                   'backbone.stages.0.blocks.1', 'neck'])
    monkeypatch.setattr(tool, 'allow_recompiles', limits.append)
    resets = []
    monkeypatch.setattr(torch._dynamo, 'reset', lambda: resets.append(1))
    report = tool.main([
        str(CONFIG), *BASE_ARGS, '--mode', 'infer', '--compile',
        '--compile-scope', 'blocks', '--compile-mode', 'reduce-overhead',
        '--batch-size', '1', '2'
    ])
    # Static shapes (a graph per batch size), after dynamo's caches of
    # any earlier variant are cleared; room for 4 graphs (step, loader,
    # inference, one spare) of each of the 3 compiled modules per batch
    # size (past dynamo's limit, the rows of the last batch sizes would
    # run uncompiled).
    assert calls == [(('SwinBlock', ),
                      dict(mode='reduce-overhead', dynamic=False))]
    assert limits == [4 * 2 * 3]
    assert resets == [1]
    assert report['results'][0]['variant'] == 'compile_blocks'
    assert report['settings']['compile_mode'] == 'reduce-overhead'
    assert tool.variant_name(dict(compile='modules')) == 'compile'


def test_ablate_leaves_out_each_switch(capsys):
    tool = load_tool('benchmark')
    args = tool.parse_args([
        str(CONFIG), '--device', 'cpu', '--ablate', '--amp', 'bf16',
        '--fused-adamw', '--merge-param-groups'
    ])
    assert [tool.variant_name(v) for v in tool.variants(args)] == [
        'bf16+fused_adamw+merge_param_groups',
        'fused_adamw+merge_param_groups', 'bf16+merge_param_groups',
        'bf16+fused_adamw'
    ]
    with pytest.raises(SystemExit):
        tool.parse_args([str(CONFIG), '--sweep', '--ablate', '--amp', 'bf16'])
    assert 'exclude each other' in capsys.readouterr().err


def test_profile_prints_operators_and_shapes(run_benchmark):
    _, stdout = run_benchmark('--mode', 'infer', '--profile', '1')
    assert '== profile: stock infer b2' in stdout
    by_op, rest = stdout.split('By input shapes:')
    by_shape, by_caller = rest.split('By calling function:')
    assert 'aten::' in by_op and 'Input Shapes' in by_shape
    # The operators summed by the model's own functions that called them.
    rows = by_caller.strip().splitlines()[1:]
    assert any('aten::' in r and 'mmseg/models/backbones/swin.py(' in r
               for r in rows), by_caller


def test_host_syncs_and_sync_at_the_end(tmp_path):
    demo = ROOT / 'configs' / 'upernet_swin-nano_ptx-demo-128.py'
    out = tmp_path / 'bench.json'
    tool = load_tool('benchmark')
    # Inference resizes the logits back to 96 px, as tools/test.py to the
    # radiographs' size; the metric gets label maps of that size.
    report = tool.main([str(demo), *BASE_ARGS, '--mode', 'all', 'eval',
                        '--sync', 'iteration', 'end', '--host-syncs',
                        '--top1-accuracy', '--ori-size', '96', '96',
                        '--json', str(out)])
    assert report['settings']['sync'] == ['iteration', 'end']
    assert report['settings']['ori_size'] == [96, 96]
    rows = {(r['mode'], r['sync']): r for r in report['results']}
    # (loader too where `make demo` has written its data)
    assert {(mode, sync)
            for mode in ('step', 'infer', 'eval')
            for sync in ('iteration', 'end')} <= set(rows)
    for (mode, sync), row in rows.items():
        if sync == 'end':  # timed as one block: each iteration gets the mean
            assert row['s_per_iter_min'] == row['s_per_iter'] > 0
        # DiceCELoss, mmseg's UPerNet (with mmseg_ptx's acc_seg), the
        # optimizer, and the config's PneumothoraxMetric with its triplet
        # post-processor wait for nothing.
        assert row['host_syncs'] == 0
    table = tool.format_table(report['results']).splitlines()
    assert table[0].split(' | ')[3].strip() == 'sync'
    assert [line.split(' | ')[3].strip() for line in table[2:]] == [
        r['sync'] for r in report['results']]


def test_eval_mode_is_asked_for_by_name(run_benchmark):
    tool = load_tool('benchmark')
    assert tool.parse_args([str(CONFIG)]).mode == ['all']  # without eval
    # Alone, it is the only mode measured: here with mmseg's IoUMetric,
    # which reads each batch back.
    report, _ = run_benchmark('--mode', 'eval', '--host-syncs',
                              '--cfg-options', 'val_evaluator.type=IoUMetric')
    assert [r['mode'] for r in report['results']] == ['eval']
    assert report['results'][0]['host_syncs'] > 0
    # A config without an evaluator (the tiny one) skips it.
    report, stdout = run_benchmark('--mode', 'eval', 'infer')
    assert [r['mode'] for r in report['results']] == ['infer']
    assert 'eval: skipped, the config has no val_evaluator' in stdout


def test_host_syncs_name_the_line(capsys, monkeypatch):
    """A loss that reads a value back shows up with its line."""
    from mmseg.models.losses import CrossEntropyLoss
    forward = CrossEntropyLoss.forward

    def reading_forward(self, cls_score, label, *args, **kwargs):
        if (label == 1).any():  # a host sync
            pass
        return forward(self, cls_score, label, *args, **kwargs)

    monkeypatch.setattr(CrossEntropyLoss, 'forward', reading_forward)
    tool = load_tool('benchmark')
    report = tool.main([str(CONFIG), *BASE_ARGS, '--mode', 'step',
                        '--host-syncs', '--sweep', '--top1-accuracy'])
    # The decode and the auxiliary head's loss; stock adds mmseg's
    # acc_seg, two more per head.
    assert [(r['variant'], r['host_syncs']) for r in report['results']] == [
        ('stock', 6), ('top1_accuracy', 2)]
    stdout = capsys.readouterr().out
    assert '== host syncs: top1_accuracy step b2: 2' in stdout
    assert 'test_benchmark.py' in stdout and 'reading_forward' in stdout
    assert any('img/s' in line and line.rstrip().endswith('host syncs')
               for line in stdout.splitlines())  # the table's column


def test_host_syncs_refused_with_compile(capsys):
    tool = load_tool('benchmark')
    with pytest.raises(SystemExit):
        tool.parse_args([str(CONFIG), '--host-syncs', '--compile'])
    assert 'without --compile' in capsys.readouterr().err


def test_loader_mode_keeps_the_config_padding(tmp_path, demo_root):
    """--img-size below the config's crop: the step mode trains random
    batches of that size, while the loader mode's crops (of differing sizes
    after the random resize, 102-160 px here) are still padded to the
    config's data_preprocessor size to be batched."""
    demo = ROOT / 'configs' / 'upernet_swin-nano_ptx-demo-128.py'
    tool = load_tool('benchmark')
    report = tool.main([
        str(demo), *BASE_ARGS, '--mode', 'step', 'loader', '--json',
        str(tmp_path / 'bench.json'), '--cfg-options',
        f'train_dataloader.dataset.data_root={demo_root}',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'train_dataloader.dataset.pipeline.2.scale=(128,128)', '--flops'])
    assert [(r['mode'], 'error' in r) for r in report['results']] == [
        ('step', False), ('loader', False)]
    # No workers: nothing queued, the loader warms up as the step.
    assert [r['warmup_iters'] for r in report['results']] == [1, 1]
    # FLOPs are counted at --img-size (64 px): no TFLOP/s for the loader's
    # 128 px batches.
    assert ['tflop_per_s' in r for r in report['results']] == [True, False]


def test_no_padding_note_where_the_sizes_agree(tmp_path, capsys):
    """A data preprocessor size given as a list (--cfg-options) equal to
    --img-size is no difference to report."""
    tool = load_tool('benchmark')
    tool.main([str(CONFIG), *BASE_ARGS, '--mode', 'infer', '--json',
               str(tmp_path / 'bench.json'), '--cfg-options',
               'model.data_preprocessor.size=[64,64]'])
    assert 'pads its training batches' not in capsys.readouterr().out


def test_stock_rows_compute_mmseg_accuracy(tmp_path, monkeypatch):
    """``import mmseg_ptx`` replaces mmseg's training acc_seg; the stock
    row (and any variant without --top1-accuracy) times mmseg's own."""
    import mmseg.models.decode_heads.decode_head as decode_head
    import mmseg.models.losses as losses
    tool = load_tool('benchmark')
    calls = []

    def spy(name, fn):
        def counted(*args, **kwargs):
            calls.append((variant[0], name))
            return fn(*args, **kwargs)
        return counted

    variant = ['']
    monkeypatch.setattr(losses, 'accuracy', spy('mmseg', losses.accuracy))
    monkeypatch.setattr(decode_head, 'accuracy',
                        spy('top1', decode_head.accuracy))
    real_run_variant = tool.run_variant

    def run_variant(cfg, args, switches, *rest):
        variant[0] = tool.variant_name(switches)
        return real_run_variant(cfg, args, switches, *rest)

    monkeypatch.setattr(tool, 'run_variant', run_variant)
    tool.main([str(CONFIG), *BASE_ARGS, '--mode', 'step', '--sweep',
               '--top1-accuracy'])
    assert set(calls) == {('stock', 'mmseg'), ('top1_accuracy', 'top1')}
    assert decode_head.accuracy.__name__ == 'counted'  # restored after


def test_cpu_peak_without_a_reset_is_labelled_lifetime(monkeypatch):
    tool = load_tool('benchmark')
    assert tool.time_iterations(lambda: 1, 1, 1, 'cpu', 'x')['mem_kind'] \
        == 'cpu_peak_rss'
    real_open = open

    def no_clear_refs(path, *args, **kwargs):
        if path == '/proc/self/clear_refs':
            raise PermissionError(13, 'Permission denied', path)
        return real_open(path, *args, **kwargs)

    # (a container without write access to /proc)
    monkeypatch.setattr(tool, 'open', no_clear_refs, raising=False)
    assert tool.time_iterations(lambda: 1, 1, 1, 'cpu', 'x')['mem_kind'] \
        == 'cpu_lifetime_peak_rss'


def test_folded_inference_model_is_built_after_the_train_rows(monkeypatch):
    """--fuse-conv-bn / --bf16-weights change weights in place: inference
    gets a model of its own, built once the train rows are done, so that
    it is not in their peak memory."""
    tool = load_tool('benchmark')
    events = []
    build, time_iterations = tool.build_model, tool.time_iterations

    def built(cfg, switches, device):
        model = build(cfg, switches, device)
        events.append(('build', any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            for m in model.modules())))
        return model

    def timed(step, *args, **kwargs):
        events.append(('time', args[-2].split()[1]))  # desc: "name mode b2"
        return time_iterations(step, *args, **kwargs)

    monkeypatch.setattr(tool, 'build_model', built)
    monkeypatch.setattr(tool, 'time_iterations', timed)
    tool.main([str(CONFIG), *BASE_ARGS, '--mode', 'all', '--fuse-conv-bn'])
    # The second build had BatchNorms when built; folded before timing.
    assert events == [('build', True), ('time', 'step'), ('build', True),
                      ('time', 'infer')]


def test_inference_batches_have_the_original_size():
    """--ori-size: the images have the input size, the label maps and
    ori_shape the original size inference resizes back to."""
    from mmengine.config import Config
    tool = load_tool('benchmark')
    cfg = Config.fromfile(str(CONFIG))
    batch = tool.random_batch(cfg, 2, (64, 64), 'cpu', (96, 80))
    for img, sample in zip(batch['inputs'], batch['data_samples']):
        assert img.shape[1:] == (64, 64)
        assert sample.img_shape == (64, 64)
        assert sample.ori_shape == (96, 80)
        assert sample.gt_sem_seg.data.shape == (1, 96, 80)
    assert tool.parse_args([str(CONFIG), '--img-size', '64', '48']
                           ).ori_size == [64, 48]


def test_loader_warms_up_past_the_queued_batches():
    from mmengine.config import Config
    tool = load_tool('benchmark')
    cfg = Config(dict(train_dataloader=dict(num_workers=4)))
    assert tool.prefetched_batches(cfg) == 8  # torch's prefetch_factor 2
    cfg.train_dataloader.prefetch_factor = 3
    assert tool.prefetched_batches(cfg) == 12
    cfg.train_dataloader.num_workers = 0
    assert tool.prefetched_batches(cfg) == 0


@pytest.mark.parametrize('args, message', [
    (['--compile-mode', 'max-autotune'], '--compile-mode needs --compile'),
    (['--compile-scope', 'blocks'], '--compile-scope needs --compile'),
    (['--img-size', '0', '64'], '--img-size and --ori-size must be >= 1'),
    (['--profile', '-1'], '--profile >= 0'),
])
def test_arguments_ignored_or_failing_later_are_refused(capsys, args,
                                                        message):
    tool = load_tool('benchmark')
    with pytest.raises(SystemExit):
        tool.parse_args([str(CONFIG), '--device', 'cpu', *args])
    assert message in capsys.readouterr().err
