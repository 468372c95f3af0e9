"""tools/benchmark_gpu.sh runs every part (CPU dry run, tiny settings)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import needs_cpu_fused_adamw

ROOT = Path(__file__).resolve().parents[2]


def dry_run_env(out: Path, **extra) -> dict:
    """Tiny CPU settings for every part of the script (the loader part's
    data in ``out``)."""
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + [p for p in [os.environ.get('PYTHONPATH')] if p]),
        PYTHON=sys.executable,
        TQDM_DISABLE='1',
        DEVICE='cpu',
        IMG='64',
        ITERS='1',
        WARMUP='0',
        SWEEP_BATCHES='2',
        BIG_BATCHES='2',
        BATCH='2',
        # Stacks of every profiled operator: 20 s per iteration on a CPU.
        PROFILE_ITERS='1',
        LOADER_WORKERS='1',
        DEMO_NUM='12',
        DEMO_SIZE='64',
        VAL_ORI='96',
        SWINB_CONFIG=str(ROOT / 'tests/data/configs/tiny_upernet_swin.py'),
        PTX_CONFIG=str(ROOT / 'configs/upernet_swin-nano_ptx-demo-128.py'),
        # Too short to compile: the part must fail without ending the run.
        COMPILE_TIMEOUT='1',
        DEMO_DATA=str(out / 'data'),
        # One kernel set per sdpa part (the others differ by name only):
        # each is a process that imports torch and mmseg.
        SDPA_KERNELS='math',
        **extra)


def run_script(out, env):
    return subprocess.run(['bash', str(ROOT / 'tools/benchmark_gpu.sh'),
                           str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


@needs_cpu_fused_adamw
def test_every_part_runs_and_is_summarised(tmp_path):
    out = tmp_path / 'bench'
    # An earlier run's rows of a part that fails this time are not shown
    # as this run's.
    out.mkdir()
    (out / 'compile.json').write_text(json.dumps(dict(results=[dict(
        variant='earlier run', mode='step', img_per_s=999.0)])))
    proc = run_script(out, dry_run_env(tmp_path))
    assert 'earlier run' not in proc.stdout
    # The compile parts fail (too short a timeout): after every other part
    # and the closing table, the exit status says so.
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ('failed parts: compile compile_blocks ptx_compile_infer '
            'ptx_compile_step ptx_flex_infer ptx_flex_step') in proc.stderr
    parts = {p.stem for p in out.glob('*.json')}
    assert parts == {
        'window_tokens', 'sweep', 'ablate', 'big_batches', 'sdpa_math',
        'ptx_sdpa_math', 'ptx_loader_workers-default',
        'ptx_loader_workers-1', 'ptx_sync', 'ptx_profile_step',
        'ptx_profile_infer'
    }
    sweep = json.loads((out / 'sweep.json').read_text())['results']
    all_switches = ('SwinTransformerSDPA+bf16+bf16_weights+fuse_conv_bn+'
                    'channels_last+fused_adamw+merge_param_groups+'
                    'top1_accuracy')
    assert [r['variant'] for r in sweep if r['mode'] == 'step'] == [
        'stock', 'SwinTransformerSDPA', 'bf16', 'bf16_weights',
        'fuse_conv_bn', 'channels_last', 'fused_adamw', 'merge_param_groups',
        'top1_accuracy', all_switches
    ]
    ablate = json.loads((out / 'ablate.json').read_text())['results']
    assert [r['variant'] for r in ablate if r['mode'] == 'infer'][:2] == [
        all_switches, all_switches.replace('SwinTransformerSDPA+', '')
    ]
    loader = json.loads(
        (out / 'ptx_loader_workers-1.json').read_text())['results']
    assert {r['mode'] for r in loader} == {'step', 'loader', 'infer'}
    result = json.loads((out / 'ptx_sync.json').read_text())
    assert result['settings']['sync'] == ['iteration', 'end']
    assert result['settings']['ori_size'] == [96, 96]
    # Fed by the loader part's data; the train step waits for nothing.
    rows = {(r['mode'], r['sync']): r for r in result['results']}
    assert set(rows) == {(mode, sync)
                         for mode in ('step', 'loader', 'infer', 'eval')
                         for sync in ('iteration', 'end')}
    assert all(r['host_syncs'] == 0 for r in rows.values()), rows
    assert '(sync end)' in proc.stdout  # the closing table tells them apart
    for mode in ('step', 'infer'):
        assert '== profile: ' in (out / f'ptx_profile_{mode}.log').read_text()
    for part in ('compile', 'compile_blocks'):
        assert (f'== {part} failed (exit status 124: stopped by its 1s '
                'limit)') in proc.stdout
    # The closing table holds every row of every part.
    table = proc.stdout[proc.stdout.rindex('part '):]
    rows = sum(
        len(json.loads(p.read_text()).get('results', []))
        for p in out.glob('*.json'))
    copies = json.loads((out / 'window_tokens.json').read_text())
    assert len(copies['rows']) == 8
    assert len(table.strip().splitlines()) == rows + 1


@needs_cpu_fused_adamw
def test_parts_pick_some(tmp_path):
    out = tmp_path / 'bench'
    # Run from another folder with a relative OUT_DIR: the script finds
    # its repository and puts it on the path itself.
    env = dry_run_env(tmp_path, PARTS='big_batches')
    env['PYTHONPATH'] = ''
    proc = subprocess.run(['bash', str(ROOT / 'tools/benchmark_gpu.sh'),
                           'bench'], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.stem for p in out.glob('*.json')] == ['big_batches']
    proc = run_script(out, dry_run_env(tmp_path,
                                       PARTS='big_batches warp_speed'))
    assert proc.returncode == 2
    assert "unknown part 'warp_speed'" in proc.stderr


def test_compile_mode_reaches_the_benchmark(tmp_path):
    """COMPILE_MODE is passed to the compile parts as --compile-mode (an
    unknown mode: benchmark.py's own error, then the part fails)."""
    env = dry_run_env(tmp_path, PARTS='compile', COMPILE_MODE='warp-speed')
    env['COMPILE_TIMEOUT'] = '60'  # time for the imports and the check
    proc = run_script(tmp_path / 'bench', env)
    assert proc.returncode == 1
    assert "--compile-mode: invalid choice: 'warp-speed'" in proc.stdout
    assert 'failed parts: compile' in proc.stderr


@needs_cpu_fused_adamw
def test_ptx_compile_and_flex_parts(tmp_path):
    """The ptx_compile parts: this project's config, compiled inference
    (whole modules) and train step (blocks), non-blocking copies, one wait
    at the end. TORCH_COMPILE_DISABLE runs the compiled code eagerly (no
    C++ build on CI): this checks what the parts ask for. The ptx_flex
    parts run the same benchmarks with attn_impl='flex' and FLEX_OPTIONS.
    FlexAttention runs nowhere here (it compiles itself, which
    TORCH_COMPILE_DISABLE forbids, and its backward needs a GPU), so both
    fail after saying what they ran."""
    out = tmp_path / 'bench'
    env = dry_run_env(
        tmp_path,
        PARTS='ptx_compile_infer ptx_compile_step ptx_flex_infer '
        'ptx_flex_step',
        TORCH_COMPILE_DISABLE='1',
        # Words on two lines, as a wrapped setting would be: both count.
        FLEX_OPTIONS='model.backbone.flex_kernel_options.BLOCK_M=64\n '
        'model.backbone.flex_kernel_options.BLOCK_N=64')
    env['COMPILE_TIMEOUT'] = '600'
    proc = run_script(out, env)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'failed parts: ptx_flex_infer ptx_flex_step\n' in proc.stderr
    for part, mode, variant_end in (
            ('ptx_compile_infer', 'infer', '+compile'),
            ('ptx_compile_step', 'step', '+compile_blocks')):
        run = json.loads((out / f'{part}.json').read_text())
        assert run['settings']['config'] == env['PTX_CONFIG']
        assert run['settings']['cfg_options'] == {
            'model.data_preprocessor.non_blocking': True}
        [row] = run['results']
        assert (row['mode'], row['sync']) == (mode, 'end')
        assert row['variant'].startswith('SwinTransformerSDPA+bf16+')
        assert row['variant'].endswith(variant_end)
    for part in ('ptx_flex_infer', 'ptx_flex_step'):
        log = (out / f'{part}.log').read_text()
        settings = next(line for line in log.splitlines()
                        if line.startswith('Settings: '))
        assert f"config={env['PTX_CONFIG']}," in settings
        assert ("cfg_options={'model.data_preprocessor.non_blocking': True, "
                "'model.backbone.attn_impl': 'flex', "
                "'model.backbone.flex_kernel_options.BLOCK_M': 64, "
                "'model.backbone.flex_kernel_options.BLOCK_N': 64}"
                ) in settings
        assert "sync=['end']" in settings


def test_deadline_bounds_and_skips_parts(tmp_path):
    """DEADLINE: a part gets the time left (less 20 s for the closing
    table), is stopped there and says so; one with under 30 s left is
    skipped. A stand-in for tools/benchmark.py that never ends."""
    python = tmp_path / 'python'
    python.write_text(
        '#!/bin/bash\n'
        'case "$1" in\n'
        '    tools/benchmark.py) exec sleep 300 ;;\n'
        '    -c) exit 0 ;;  # the import check\n'
        f'    *) exec {sys.executable} "$@" ;;  # the closing table\n'
        'esac\n')
    python.chmod(0o755)
    env = dry_run_env(tmp_path, PARTS='ptx_compile_infer ptx_compile_step',
                      DEADLINE='52')
    env.update(PYTHON=str(python), COMPILE_TIMEOUT='600')
    proc = run_script(tmp_path / 'bench', env)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r'== ptx_compile_infer failed \(exit status 124: '
                     r'stopped by its 3[12]s limit\)', proc.stdout)
    assert re.search(r'== ptx_compile_step skipped: -?\d+s left before '
                     'DEADLINE', proc.stdout), proc.stdout
    assert ('parts skipped for want of time before DEADLINE: '
            'ptx_compile_step') in proc.stderr
    assert 'failed parts: ptx_compile_infer' in proc.stderr


def test_deadline_skips_the_window_tokens_and_loader_parts(tmp_path):
    """Parts outside tools/benchmark.py keep to DEADLINE too: the loader's
    data is not generated and waited for, window_tokens does not run."""
    env = dry_run_env(tmp_path, PARTS='window_tokens loader', DEADLINE='45')
    proc = run_script(tmp_path / 'bench', env)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr == ('parts skipped for want of time before '
                           'DEADLINE: demo_data window_tokens\n')
    assert '== loader parts skipped: make_demo_data.py failed or did not ' \
        'run' in proc.stdout
    assert not (tmp_path / 'data').exists()


def test_settings_in_whole_seconds(tmp_path):
    for setting in ('DEADLINE', 'COMPILE_TIMEOUT'):
        env = dry_run_env(tmp_path, PARTS='sync')
        env[setting] = '2m'
        proc = run_script(tmp_path / 'bench', env)
        assert proc.returncode == 2
        assert proc.stderr == (f"{setting} must be whole seconds, got "
                               "'2m'\n")
