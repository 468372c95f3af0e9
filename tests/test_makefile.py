"""The Makefile: a new ``.venv`` keeps a torch that the interpreter making
it already has; ``make demo`` passes its folders to the tools whole."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The interpreter this test's virtualenv was made from, as `make` would be
# given it on a fresh machine.
BASE_PYTHON = getattr(sys, '_base_executable', sys.executable)

pytestmark = pytest.mark.skipif(
    shutil.which('make') is None, reason='needs make')


def _user_site(user_base: str) -> str:
    """The user site-packages folder of ``BASE_PYTHON`` under
    ``PYTHONUSERBASE=user_base``."""
    scheme = 'nt_user' if os.name == 'nt' else 'posix_user'
    return sysconfig.get_path('purelib', scheme, vars={'userbase': user_base})


def _fake_torch(user_base: str, version: str) -> None:
    """A package named torch, of the given version, in a user site."""
    site = _user_site(user_base)
    os.makedirs(osp.join(site, 'torch'))
    with open(osp.join(site, 'torch', '__init__.py'), 'w') as f:
        f.write(f'__version__ = {version!r}\n')


def _make_venv(tmp_path, user_base: str) -> str:
    venv = str(tmp_path / 'venv')
    env = {k: v for k, v in os.environ.items()
           if k not in ('VIRTUAL_ENV', 'PYTHONPATH')}
    env['PYTHONUSERBASE'] = user_base
    subprocess.run(['make', '-s', '-C', ROOT, f'PYTHON={BASE_PYTHON}',
                    f'VENV={venv}', f'{venv}/bin/python'],
                   env=env, check=True, capture_output=True, text=True)
    with open(osp.join(venv, 'pyvenv.cfg')) as f:
        cfg = dict(line.split(' = ', 1) for line in f.read().splitlines()
                   if ' = ' in line)
    return cfg['include-system-site-packages'].strip()


def _base_has_torch(user_base: str) -> bool:
    env = dict(os.environ, PYTHONUSERBASE=user_base)
    return subprocess.run([BASE_PYTHON, '-c', 'import torch'], env=env,
                          capture_output=True).returncode == 0


def test_new_venv_sees_the_interpreters_torch(tmp_path):
    user_base = str(tmp_path / 'user')
    _fake_torch(user_base, '2.5.0')
    if not _base_has_torch(user_base):
        pytest.skip(f'{BASE_PYTHON} does not read a user site-packages')
    assert _make_venv(tmp_path, user_base) == 'true'
    # ... and so imports it: pip's pinned CPU build is not installed.
    out = subprocess.run(
        [str(tmp_path / 'venv' / 'bin' / 'python'), '-c',
         'import torch; print(torch.__version__)'],
        env=dict(os.environ, PYTHONUSERBASE=user_base),
        capture_output=True, text=True, check=True).stdout
    assert out.strip() == '2.5.0'


@pytest.mark.parametrize('version', [None, '2.0.1'])
def test_new_venv_is_isolated_without_a_recent_torch(tmp_path, version):
    user_base = str(tmp_path / 'user')
    os.makedirs(user_base)
    if version:
        _fake_torch(user_base, version)
    elif _base_has_torch(user_base):
        pytest.skip(f'{BASE_PYTHON} has a torch of its own')
    assert _make_venv(tmp_path, user_base) == 'false'


def test_demo_passes_folders_with_spaces_whole(tmp_path):
    """``make demo`` with DEMO_DATA and DEMO_WORK_DIR holding spaces gives
    each tool the folders whole (a stand-in interpreter records what each
    gets), and ``make clean-demo`` removes that work dir only, not the
    folders named by its words."""
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    calls = tmp_path / 'calls.jsonl'
    stub = venv / 'bin' / 'python'
    stub.write_text(
        f'#!{sys.executable}\n'
        'import json, sys\n'
        f'with open({str(calls)!r}, "a") as f:\n'
        '    f.write(json.dumps(sys.argv[1:]) + "\\n")\n')
    stub.chmod(0o755)
    data, work = tmp_path / 'my data' / 'demo', tmp_path / 'work dirs' / 'demo'
    work.mkdir(parents=True)
    (work / 'best_dice_epoch_2.pth').write_bytes(b'')
    (tmp_path / 'work').mkdir()
    make = ['make', '-s', '-C', ROOT, f'VENV={venv}',
            '-o', f'{venv}/.mmseg_ptx-installed', f'DEMO_DATA={data}',
            f'DEMO_WORK_DIR={work}']
    subprocess.run(make + ['demo'], check=True, capture_output=True)
    tools = {}
    for line in calls.read_text().splitlines():
        argv = json.loads(line)
        tools[osp.basename(argv[0])] = argv[1:]
    assert tools['make_demo_data.py'][:2] == ['--out', str(data)]
    assert tools['dataset_stats.py'][0] == str(data)
    options = [f'{split}_dataloader.dataset.data_root={data}'
               for split in ('train', 'val', 'test')]
    assert tools['train.py'][1:3] == ['--work-dir', str(work)]
    assert tools['train.py'][-3:] == options
    assert tools['test.py'][1:6] == [
        str(work / 'best_dice_epoch_2.pth'), '--work-dir',
        str(work / 'test'), '--show-dir', str(work / 'test' / 'panels')]
    assert tools['test.py'][-3:] == options
    subprocess.run(make + ['clean-demo'], check=True, capture_output=True)
    assert not work.exists() and (tmp_path / 'work').is_dir()
    assert (tmp_path / 'work dirs').is_dir()
