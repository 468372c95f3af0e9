"""The Makefile's virtualenv: a new ``.venv`` keeps a torch that the
interpreter making it already has."""
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
