"""The tools' shared argument handling: ``--cfg-options`` that would set a
config variable and nothing that used it are refused."""
import argparse
import os
import os.path as osp

import pytest
from mmengine.config import Config

from mmseg_ptx.apis import (add_cfg_options_arg, config_type_name,
                            has_custom_hook, load_config, merge_cfg_options,
                            read_config)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RECIPE = osp.join(ROOT, 'configs', 'upernet_swin-b_ptx-512.py')


@pytest.fixture(scope='module')
def recipe():
    return read_config(RECIPE)


def test_variable_override_names_the_settings_that_hold_it(recipe):
    cfg = recipe.copy()
    with pytest.raises(ValueError) as err:
        merge_cfg_options(cfg, {'class_weight': 'data/siim/splits/stats.json'})
    message = str(err.value)
    assert "config variable 'class_weight' only" in message
    assert message.endswith(
        'model.decode_head.loss_decode.class_weight=... '
        'model.auxiliary_head.loss_decode.class_weight=...')
    # Nothing merged: the config is as it was.
    assert cfg.class_weight == [0.5047, 54.2225]
    with pytest.raises(ValueError, match='train_dataloader.dataset.data_root'):
        merge_cfg_options(cfg, {'data_root': '/elsewhere'})
    # A variable that is a list of dicts.
    with pytest.raises(ValueError, match='train_dataloader.dataset.pipeline'):
        merge_cfg_options(cfg, {'train_pipeline': []})


@pytest.mark.parametrize('options, message', [
    ({'norm_cfg.type': 'BN'}, "variable 'norm_cfg' only: its value was "
     'filled in where the config file uses it when the file was read. Set '
     'the settings it was filled into instead; these hold its value: '
     'model.decode_head.norm_cfg.type=... '
     'model.auxiliary_head.norm_cfg.type=...'),
    ({'norm_cfg': dict(type='BN', requires_grad=True)}, 'these hold its '
     'value: model.decode_head.norm_cfg=... model.auxiliary_head.norm_cfg='
     '...'),
    # Spread into the data sets with **: its items are there.
    ({'split_settings.neg_keep_ratio': 0.3}, 'the file spread its items '
     'into these: train_dataloader.dataset.neg_keep_ratio=... '
     'val_dataloader.dataset.neg_keep_ratio=... '
     'test_dataloader.dataset.neg_keep_ratio=...'),
    ({'split_settings': {}}, 'train_dataloader.dataset.<item>=...'),
    # Other keys of the same settings (make demo's data_root) do not set
    # the one the variable's key would.
    ({'split_settings.neg_keep_ratio': 0.3,
      **{f'{split}_dataloader.dataset.data_root': 'data/demo'
         for split in ('train', 'val', 'test')}},
     'train_dataloader.dataset.neg_keep_ratio=...'),
    ({'split_settings': {},
      **{f'{split}_dataloader.dataset.data_root': 'data/demo'
         for split in ('train', 'val', 'test')}},
     'train_dataloader.dataset.<item>=...'),
    # A list variable's item.
    ({'train_pipeline.1.type': 'X'}, 'train_dataloader.dataset.pipeline.1.'
     'type=...'),
])
def test_dict_variables_and_keys_inside_variables(recipe, options,
                                                  message):
    """A dict (or list) variable, or a key inside one: mmengine copied
    (or spread) it where the file uses it, so the option would change
    nothing the run reads."""
    cfg = recipe.copy()
    with pytest.raises(ValueError) as err:
        merge_cfg_options(cfg, options)
    assert message in str(err.value)
    assert cfg.split_settings.neg_keep_ratio == 0.15
    assert cfg.norm_cfg.type == 'SyncBN'


def test_settings_merge(recipe):
    cfg = recipe.copy()
    merge_cfg_options(cfg, {
        'model.decode_head.loss_decode.class_weight': 'stats.json',
        'model.auxiliary_head.loss_decode.class_weight': 'stats.json',
        # Top-level keys the Runner reads are settings.
        'work_dir': 'somewhere',
        'load_from': 'a.pth',
        # The variable's own value, and a variable nothing else holds.
        'class_weight': [0.5047, 54.2225],
        'a_new_key': 1,
    })
    # The variable with every setting that holds it: harmless.
    merge_cfg_options(cfg, {
        'data_root': '/elsewhere',
        **{f'{split}_dataloader.dataset.data_root': '/elsewhere'
           for split in ('train', 'val', 'test')}
    })
    # A key inside a dict variable, with every setting that holds it.
    merge_cfg_options(cfg, {
        'split_settings.val_ratio': 0.25,
        **{f'{split}_dataloader.dataset.val_ratio': 0.25
           for split in ('train', 'val', 'test')}
    })
    assert cfg.train_dataloader.dataset.val_ratio == 0.25
    assert cfg.val_dataloader.dataset.data_root == '/elsewhere'
    assert cfg.model.decode_head.loss_decode.class_weight == 'stats.json'
    assert cfg.model.auxiliary_head.loss_decode.class_weight == 'stats.json'
    assert (cfg.work_dir, cfg.load_from, cfg.a_new_key) == ('somewhere',
                                                            'a.pth', 1)
    assert cfg.class_weight == [0.5047, 54.2225]
    merge_cfg_options(cfg, None)


def test_unused_variable_merges(tmp_path):
    path = tmp_path / 'cfg.py'
    path.write_text('scale = 2\nmodel = dict(type="M", factor=3)\n')
    cfg = Config.fromfile(str(path))
    merge_cfg_options(cfg, {'scale': 4})
    assert cfg.scale == 4
    # Numbers of another type are other values: 3.0 is not the int 3.
    path.write_text('factor = 3.0\nmodel = dict(type="M", factor=3)\n')
    cfg = Config.fromfile(str(path))
    merge_cfg_options(cfg, {'factor': 4.0})
    assert cfg.factor == 4.0
    # Top-level settings the Runner reads, whatever else holds their value
    # (False, here).
    path.write_text('find_unused_parameters = False\n'
                    'model = dict(type="M", flag=False)\n'
                    'sync_bn = "torch"\nnorm = "torch"\n')
    cfg = Config.fromfile(str(path))
    merge_cfg_options(cfg, {'find_unused_parameters': True,
                            'sync_bn': 'none'})
    assert (cfg.find_unused_parameters, cfg.sync_bn) == (True, 'none')


def test_load_config_refuses_variable_overrides(tmp_path):
    args = argparse.Namespace(
        config=RECIPE, launcher='none', local_rank=0, work_dir=None,
        cfg_options={'crop_size': (256, 256)})
    with pytest.raises(ValueError, match='model.data_preprocessor.size=...'):
        load_config(args)


def test_load_config_keeps_the_configs_work_dir(tmp_path):
    """--work-dir wins; without it the config's own, and only without
    either ./work_dirs/<config name>."""
    path = tmp_path / 'mine.py'
    path.write_text("work_dir = 'runs/mine'\nmodel = dict(type='M')\n")
    args = argparse.Namespace(config=str(path), launcher='none',
                              local_rank=0, work_dir=None, cfg_options=None)
    assert load_config(args).work_dir == 'runs/mine'
    args.work_dir = 'runs/given'
    assert load_config(args).work_dir == 'runs/given'
    path.write_text("model = dict(type='M')\n")
    args.work_dir = None
    assert load_config(args).work_dir == osp.join('./work_dirs', 'mine')


def test_config_entries():
    from mmseg_ptx.apis import config_entries
    one = dict(type='PneumothoraxMetric')
    assert config_entries(Config(dict(val_evaluator=one)),
                          'val_evaluator') == [one]
    assert config_entries(Config(dict(val_evaluator=[one, one])),
                          'val_evaluator') == [one, one]
    assert config_entries(Config(), 'val_evaluator') == []
    assert config_entries(None, 'val_evaluator') == []


def test_config_type_names_and_custom_hooks():
    from mmseg_ptx.engine.hooks import ChannelsLastHook
    for type_ in ('ChannelsLastHook', 'mmseg.ChannelsLastHook',
                  'mmseg_ptx.ChannelsLastHook', ChannelsLastHook):
        assert config_type_name(dict(type=type_)) == 'ChannelsLastHook'
        assert config_type_name(dict(type=type_), '') == 'ChannelsLastHook'
        cfg = Config(dict(custom_hooks=[dict(type='PRCurveHook'),
                                        dict(type=type_)]))
        assert has_custom_hook(cfg, 'ChannelsLastHook')
        assert not has_custom_hook(cfg, 'CompileModulesHook')
    assert not has_custom_hook(Config(dict(custom_hooks=None)),
                               'ChannelsLastHook')
    assert not has_custom_hook(Config(), 'ChannelsLastHook')
    # Without a type: the builder's default, where given.
    assert config_type_name({}, 'OptimWrapper') == 'OptimWrapper'
    with pytest.raises(KeyError):
        config_type_name({})


def test_leave_process_group_waits_then_closes(monkeypatch):
    """The ranks of a run leave together, the group closed before the
    interpreter's shutdown; without a group, nothing."""
    import torch.distributed as dist

    from mmseg_ptx.apis import leave_process_group
    calls = []
    monkeypatch.setattr(dist, 'barrier', lambda: calls.append('barrier'))
    monkeypatch.setattr(dist, 'destroy_process_group',
                        lambda: calls.append('destroy'))
    monkeypatch.setattr(dist, 'is_initialized', lambda: False)
    leave_process_group()
    assert calls == []
    monkeypatch.setattr(dist, 'is_initialized', lambda: True)
    leave_process_group()
    assert calls == ['barrier', 'destroy']


def test_check_device_refuses_unknown_and_absent_devices(monkeypatch):
    import torch

    from mmseg_ptx.apis import UsageError, check_device
    check_device(None)
    check_device('cpu')
    with pytest.raises(UsageError, match=r'^--device gpu: .*gpu'):
        check_device('gpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(UsageError, match='^--device cuda:0: no CUDA device '
                       'is available'):
        check_device('cuda:0')


def test_require_replaceable_json(tmp_path):
    from mmseg_ptx.apis import UsageError, require_replaceable_json
    path = tmp_path / 'out.json'
    require_replaceable_json(str(path), '--out', ('a', ))  # not there
    path.write_text('{"a": 1, "b": 2}')
    require_replaceable_json(str(path), '--out', ('a', ))  # an earlier one
    for text in ('{"b": 2}', '[1]', 'ImageId,EncodedPixels\n', '\xff'):
        path.write_text(text)
        with pytest.raises(UsageError, match='is not an output of this'):
            require_replaceable_json(str(path), '--out', ('a', ))
    for folder in (str(tmp_path), str(tmp_path / 'new') + '/'):
        with pytest.raises(UsageError, match='is a folder'):
            require_replaceable_json(folder, '--out', ('a', ))


def test_require_folder(tmp_path):
    from mmseg_ptx.apis import UsageError, require_folder
    require_folder(str(tmp_path), '--out')  # a folder
    require_folder(str(tmp_path / 'new'), '--out')  # made later
    afile = tmp_path / 'a_file'
    afile.write_text('mine')
    with pytest.raises(UsageError, match=f'^--out {afile} is a file'):
        require_folder(str(afile), '--out')
    below = afile / 'new' / 'deeper'
    with pytest.raises(UsageError,
                       match=f'^--out {below}: {afile} is a file, not a'):
        require_folder(str(below), '--out')
    # A link to nothing (a scratch mount gone, say) is no folder to make.
    gone = tmp_path / 'gone'
    gone.symlink_to(tmp_path / 'nowhere')
    for path in (gone, gone / 'sub'):
        with pytest.raises(UsageError, match=f'^--out {path}: {gone} is a '
                           f'link to nothing \\({tmp_path}/nowhere\\)'):
            require_folder(str(path), '--out')
    # A link to a file is a file.
    to_file = tmp_path / 'to_file'
    to_file.symlink_to(afile)
    with pytest.raises(UsageError, match=f'^--out {to_file}/sub: {to_file} '
                       'is a file, not a folder'):
        require_folder(str(to_file / 'sub'), '--out')


def test_require_writable_file(tmp_path):
    from mmseg_ptx.apis import UsageError, require_writable_file
    earlier = tmp_path / 'tuned.json'
    earlier.write_text('{}')
    require_writable_file(str(earlier), '--out')  # replaced later
    require_writable_file(str(tmp_path / 'new' / 'x.json'), '--out')
    assert os.listdir(tmp_path) == ['tuned.json']
    gone = tmp_path / 'gone'
    gone.symlink_to(tmp_path / 'nowhere')
    with pytest.raises(UsageError, match='is a link to nothing'):
        require_writable_file(str(gone / 'x.json'), '--out')


def test_unwritable_output_folders_refused(tmp_path, monkeypatch):
    """A folder no file can be made in (a read-only mount; root writes
    through permission bits, so the failure is stood in for) is refused
    before the work, naming the option, the path and the reason; one not
    there yet is tried in its nearest existing parent."""
    import tempfile

    from mmseg_ptx.apis import (UsageError, require_folder,
                                require_writable_file)
    tried = []

    def read_only(dir=None, **kwargs):
        tried.append(dir)
        raise OSError(30, 'Read-only file system')

    monkeypatch.setattr(tempfile, 'TemporaryFile', read_only)
    with pytest.raises(UsageError, match=f'^--show-dir {tmp_path}/a/b: '
                       f'cannot write in {tmp_path} \\(Read-only file'):
        require_folder(str(tmp_path / 'a' / 'b'), '--show-dir')
    with pytest.raises(UsageError, match=f'^--out {tmp_path}/x.json: '
                       f'cannot write in {tmp_path} '):
        require_writable_file(str(tmp_path / 'x.json'), '--out')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=f'^--out x.json: cannot write in '
                       f'{tmp_path} '):
        require_writable_file('x.json', '--out')
    assert tried == [str(tmp_path)] * 3
    assert os.listdir(tmp_path) == []


def parse_cfg_options(*items):
    parser = argparse.ArgumentParser()
    add_cfg_options_arg(parser)
    return parser.parse_args(['--cfg-options', *items]).cfg_options


def test_cfg_options_given_twice_merge():
    """As mmengine's DictAction: a second --cfg-options adds to the
    first."""
    parser = argparse.ArgumentParser()
    add_cfg_options_arg(parser)
    assert parser.parse_args(
        ['--cfg-options', 'a=1', 'c=x', '--cfg-options', 'b=2', 'c=y']
    ).cfg_options == {'a': 1, 'b': 2, 'c': 'y'}


def test_cfg_options_values_keep_their_spaces():
    """A path with spaces stays that path (mmengine's DictAction removes
    every space: another folder, one that may exist); lists and the
    other value types parse as in mmengine."""
    assert parse_cfg_options(
        'data_root=/data/SIIM 2019/ü', 'work_dir="runs/a b"', 'b=[1, 2]',
        'c=(1,2)', 'd=1,2', 'e=True', 'f=None', 'g=3.5', 'h=4', 'i=x=y',
        "j='[a, b]'", 'k=', 'l= /data/x y ') == {
            'data_root': '/data/SIIM 2019/ü', 'work_dir': 'runs/a b',
            'b': [1, 2], 'c': (1, 2), 'd': [1, 2], 'e': True, 'f': None,
            'g': 3.5, 'h': 4, 'i': 'x=y', 'j': ['a', 'b'], 'k': '',
            'l': '/data/x y'}


@pytest.mark.parametrize('item,message', [
    ('data_root', 'expects key=value pairs'),
    ('=3', 'expects key=value pairs'),
    ('roots=[/a b, /c]', 'with a space inside'),
    ('roots=/a b,/c', 'with a space inside'),
])
def test_cfg_options_refused(item, message, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_cfg_options(item)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize('env,said', [
    ({}, True), ({'RANK': '0', 'LOCAL_RANK': '0'}, True),
    ({'RANK': '1', 'LOCAL_RANK': '1'}, False),
    # The first process of the second node: its files may be the ones.
    ({'RANK': '8', 'LOCAL_RANK': '0'}, True),
    ({'SLURM_PROCID': '2', 'SLURM_LOCALID': '2'}, False),
    ({'SLURM_PROCID': '4', 'SLURM_LOCALID': '0'}, True),
    # One task of a job step that is not a launch: no local rank.
    ({'SLURM_PROCID': '1'}, True),
    # torchrun inside srun (one task per node): torchrun's variables name
    # the process, Slurm's the task.
    ({'SLURM_PROCID': '0', 'SLURM_LOCALID': '0', 'RANK': '3',
      'LOCAL_RANK': '3'}, False),
    ({'SLURM_PROCID': '1', 'SLURM_LOCALID': '0', 'RANK': '8',
      'LOCAL_RANK': '0'}, True)])
def test_usage_errors_said_once_per_node(env, said, monkeypatch, capsys):
    """The processes a launcher starts on a node meet the same usage
    error: the node's first says it, all exit with status 2."""
    from mmseg_ptx.apis import UsageError, reports_usage_errors
    for name in ('RANK', 'LOCAL_RANK', 'SLURM_PROCID', 'SLURM_LOCALID'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    @reports_usage_errors
    def main():
        raise UsageError('no batch')

    assert main() == 2
    assert capsys.readouterr().err == ('error: no batch\n' if said else '')


def test_usage_errors_reach_torchruns_error_file(
        tmp_path, monkeypatch, capsys):
    """Every process writes its usage error into the error file torchrun
    names, whose message its failure summary shows (not 'error_file:
    <N/A>'), said on stderr by the node's first only."""
    import json

    from mmseg_ptx.apis import UsageError, reports_usage_errors
    error_file = tmp_path / 'error.json'
    monkeypatch.setenv('TORCHELASTIC_ERROR_FILE', str(error_file))
    monkeypatch.setenv('LOCAL_RANK', '1')

    @reports_usage_errors
    def main():
        raise UsageError('--out x is a file; give a folder')

    assert main() == 2
    assert capsys.readouterr().err == ''
    assert json.loads(error_file.read_text())['message']['message'] == (
        'UsageError: --out x is a file; give a folder')
    # A stale variable (a finished launch's folder gone): still exit 2.
    monkeypatch.setenv('TORCHELASTIC_ERROR_FILE',
                       str(tmp_path / 'gone' / 'error.json'))
    assert main() == 2


@pytest.mark.parametrize('env,local_rank,rank', [
    ({}, 0, 0), ({'RANK': '5', 'LOCAL_RANK': '1'}, 1, 5),
    ({'SLURM_PROCID': '5', 'SLURM_LOCALID': '1'}, 1, 5),
    # torchrun inside srun: torchrun's variables name the process.
    ({'SLURM_PROCID': '1', 'SLURM_LOCALID': '0', 'RANK': '11',
      'LOCAL_RANK': '3'}, 3, 11)])
def test_launch_ranks(env, local_rank, rank, monkeypatch):
    from mmseg_ptx.apis.cli import launch_local_rank, launch_rank
    for name in ('RANK', 'LOCAL_RANK', 'SLURM_PROCID', 'SLURM_LOCALID'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (launch_local_rank(), launch_rank()) == (local_rank, rank)


def test_a_tools_output_keeps_its_order_in_a_merged_log():
    """stdout redirected to a file is block-buffered: a tool's printed
    line came after the stderr line that followed it."""
    import subprocess
    import sys
    script = (
        'import sys\n'
        'from mmseg_ptx.apis import reports_usage_errors\n'
        '@reports_usage_errors\n'
        'def main():\n'
        '    print("predicted 12 images")\n'
        '    print("1 file failed", file=sys.stderr)\n'
        'main()\n')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONUNBUFFERED'}
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    env['PYTHONPATH'] = root
    out = subprocess.run([sys.executable, '-c', script], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, check=True, timeout=300).stdout
    assert out.splitlines()[-2:] == ['predicted 12 images', '1 file failed']


def test_logs_to_stderr_within_the_block(tmp_path, capsys):
    """The console handler writes to stderr in the block and to its own
    stream again after it; a log file's handler is left alone."""
    import logging

    from mmengine.logging import MMLogger, print_log

    from conftest import process_state_kept
    from mmseg_ptx.apis import logs_to_stderr
    with process_state_kept():  # the logger and its handlers go after
        logger = MMLogger.get_instance('logs_to_stderr_test',
                                       log_file=str(tmp_path / 'run.log'))
        console = [h for h in logger.handlers
                   if type(h) is logging.StreamHandler]
        assert console
        before = [h.stream for h in console]
        file_stream = next(h.stream for h in logger.handlers
                           if isinstance(h, logging.FileHandler))
        with logs_to_stderr():
            print_log('a warning', logger='current', level=logging.WARNING)
        assert [h.stream for h in console] == before
        assert 'a warning' in capsys.readouterr().err
        assert next(h.stream for h in logger.handlers
                    if isinstance(h, logging.FileHandler)) is file_stream
        for handler in logger.handlers:
            handler.flush()
        assert 'a warning' in (tmp_path / 'run.log').read_text()


def test_loader_dataset_looks_through_wrappers():
    from mmseg_ptx.apis import loader_dataset
    inner = dict(type='SIIMPneumothoraxDataset', data_root='data/siim')
    cfg = Config(dict(
        train_dataloader=dict(dataset=dict(type='RepeatDataset', times=2,
                                           dataset=inner)),
        val_dataloader=dict(dataset=inner), test_dataloader=None))
    assert loader_dataset(cfg, 'train_dataloader') == inner
    assert loader_dataset(cfg, 'val_dataloader') == inner
    assert loader_dataset(cfg, 'test_dataloader') == {}
    assert loader_dataset(cfg, 'other') == {}
    assert loader_dataset(None, 'train_dataloader') == {}
