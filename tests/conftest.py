"""Shared fixtures: a tiny generated SIIM data set and tiny run configs."""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import os.path as osp
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmseg_ptx import compat

ROOT = Path(__file__).resolve().parent.parent

# Under pytest-xdist the workers share the machine's cores: each takes its
# share of torch's threads, and so do the tools its tests start (they keep
# an OMP_NUM_THREADS that is set), instead of every worker taking them all.
_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
if _WORKERS > 1:
    # The cores this process may use (a CI container's share, say), not
    # the machine's.
    _CORES = (len(os.sched_getaffinity(0))
              if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1)
    _THREADS = max(1, _CORES // _WORKERS)
    torch.set_num_threads(_THREADS)
    os.environ['OMP_NUM_THREADS'] = str(_THREADS)
TINY_CONFIG = ROOT / 'configs' / 'upernet_swin-nano_ptx-demo-128.py'


def _cpu_fused_adamw() -> bool:
    try:
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)
    except RuntimeError:  # torch < 2.4: fused needs CUDA
        return False
    return True


# Newer-torch features, for the tests of what uses them (setup.cfg admits
# torch >= 2.1; the rest of the suite runs there too).
CPU_FUSED_ADAMW = _cpu_fused_adamw()
needs_cpu_fused_adamw = pytest.mark.skipif(
    not CPU_FUSED_ADAMW, reason='fused AdamW on the CPU needs torch >= 2.4')
needs_sdpa_kernel = pytest.mark.skipif(
    compat.sdpa_kernel is None,
    reason='choosing SDPA kernels needs torch.nn.attention.sdpa_kernel')
needs_flex_attention = pytest.mark.skipif(
    compat.flex_attention is None,
    reason='FlexAttention with a learned bias needs torch >= 2.6')
needs_recent_dynamo = pytest.mark.skipif(
    not hasattr(torch.compiler, 'is_compiling'),
    reason="torch < 2.3's dynamo breaks graphs in mmcv/mmseg code")
needs_safe_globals = pytest.mark.skipif(
    not hasattr(torch.serialization, 'safe_globals'),
    reason='torch.load allow-lists (compat fix 2) need torch >= 2.5')


@pytest.fixture
def exact_cuda_float32():
    """Compare float32 with float32 on CUDA: no TF32 matmuls or convs."""
    matmul, cudnn = (torch.backends.cuda.matmul.allow_tf32,
                     torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = matmul
    torch.backends.cudnn.allow_tf32 = cudnn


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory) -> Path:
    """24 synthetic radiographs at 128 px in both Kaggle layouts."""
    from mmseg_ptx.datasets.synthetic import write_demo_dataset
    root = tmp_path_factory.mktemp('siim_demo')
    write_demo_dataset(root, num=24, seed=0, size=128, layout='both')
    return root


def write_tiny_run_config(path: Path, data_root: Path, max_epochs: int = 1,
                          extra: str = '') -> Path:
    """A config inheriting the tiny demo config, sized for a test run."""
    path.write_text(f"""
_base_ = [{str(TINY_CONFIG)!r}]
data_root = {str(data_root)!r}
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
val_dataloader = dict(
    num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs={max_epochs}, val_interval=1)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=3))
randomness = dict(seed=0)
{extra}
""")
    return path


def write_test_pipeline_child(path: Path, scale: int,
                              extra: str = '') -> Path:
    """A config inheriting the tiny one that redefines only
    ``test_pipeline``, resizing to ``scale``: the usual OpenMMLab idiom,
    which leaves the data loaders at the base's pipeline (mmengine
    resolved the variable in the base file). ``extra`` is appended."""
    path.write_text(f"""_base_ = [{str(TINY_CONFIG)!r}]
test_pipeline = [
    dict(type='LoadDicomImageFromFile', color_type='grayscale'),
    dict(type='Resize', scale=({scale}, {scale}), keep_ratio=True),
    dict(type='LoadRLEAnnotations'),
    dict(type='GreyToBGR'),
    dict(type='PackSegInputs'),
]
{extra}""")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_tool(args: list[str], timeout: int = 600, cwd: Path | None = None,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command from the repository root; fail with its output."""
    full_env = dict(os.environ)
    full_env['PYTHONPATH'] = os.pathsep.join(
        [str(ROOT), full_env.get('PYTHONPATH', '')])
    full_env.setdefault('OMP_NUM_THREADS', '2')
    if env:
        full_env.update(env)
    proc = subprocess.run(args, cwd=cwd or ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f'{" ".join(map(str, args))} exited {proc.returncode}\n'
        f'--- stdout ---\n{proc.stdout[-4000:]}\n'
        f'--- stderr ---\n{proc.stderr[-4000:]}')
    return proc


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module, to call its functions."""
    spec = importlib.util.spec_from_file_location(
        f'{name}_tool', ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _manager_classes(cls=None) -> list:
    """mmengine's ManagerMixin and its subclasses: each keeps its own
    named instances (loggers, message hubs, visualizers, scopes)."""
    from mmengine.utils import ManagerMixin
    cls = cls or ManagerMixin
    return [cls] + [sub for child in cls.__subclasses__()
                    for sub in _manager_classes(child)]


@contextlib.contextmanager
def process_state_kept():
    """Run the body as in a process of its own, as far as a tool's
    ``main()`` sees, and put back what it changes for the rest of the
    process. mmengine's named instances (loggers, message hubs,
    visualizers, scopes) start empty, as in a new process: otherwise a
    Runner would take the visualizer an earlier one made, named
    ``'visualizer'`` by the configs, and log into that run's folder. The
    loggers the body makes have their handlers closed (they hold streams
    of captured output and log files). The environment (``LOCAL_RANK``),
    the random generators the Runner seeds, and torch's, cuDNN's and
    OpenCV's settings are put back too."""
    import random

    import cv2
    import numpy as np
    managers = {cls: dict(cls._instance_dict) for cls in _manager_classes()}
    for cls in managers:
        cls._instance_dict.clear()
    environ = dict(os.environ)
    rng = random.getstate(), np.random.get_state(), torch.get_rng_state()
    threads = torch.get_num_threads(), cv2.getNumThreads()
    cudnn = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    try:
        yield
    finally:
        # Classes first imported by the body (mmseg's visualizer, say) had
        # no instances before it.
        for cls in _manager_classes():
            for instance in cls._instance_dict.values():
                if isinstance(instance, logging.Logger):
                    for handler in instance.handlers[:]:
                        handler.close()
                        instance.removeHandler(handler)
            cls._instance_dict.clear()
            cls._instance_dict.update(managers.get(cls, {}))
        os.environ.clear()
        os.environ.update(environ)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
        (torch.backends.cudnn.benchmark,
         torch.backends.cudnn.deterministic) = cudnn


@pytest.fixture
def own_process_state():
    """For a test that builds an mmengine Runner in this process: it
    starts without the named instances earlier tests made and puts back
    what it changes (:func:`process_state_kept`). Otherwise its Runner
    takes the visualizer an earlier test's Runner made and logs into that
    test's folder."""
    with process_state_kept():
        yield


@pytest.fixture
def tool_main(monkeypatch, capsys):
    """Call ``tools/<name>.py``'s ``main()`` in this process, from the
    repository root, as ``python tools/<name>.py ARGS`` would: returns its
    exit status, stdout and stderr; what the run changes for the rest of
    the process is put back (:func:`process_state_kept`). A tool process
    costs seconds of imports; each tool still has a test that starts it
    as a process."""

    def call(name: str, *args) -> tuple[int, str, str]:
        tool = load_tool(name)
        monkeypatch.chdir(ROOT)
        monkeypatch.setattr(sys, 'argv', [f'{name}.py', *map(str, args)])
        with process_state_kept():
            try:
                status = tool.main()
            except SystemExit as exit_:
                status = exit_.code
                if isinstance(status, str):  # sys.exit(message): status 1
                    print(status, file=sys.stderr)
                    status = 1
        out, err = capsys.readouterr()
        return status or 0, out, err

    return call


PYTHON = sys.executable
__all__ = ['ROOT', 'TINY_CONFIG', 'PYTHON', 'load_tool',
           'write_tiny_run_config', 'free_port', 'run_tool', 'osp']
