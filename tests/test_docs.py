"""docs/plugin_usage.md: what ``import mmseg_ptx`` registers, and its
minimal config trains; docs/recipe_sampler_loss.md's config builds."""
import re
from pathlib import Path

from conftest import PYTHON, run_tool

import mmseg_ptx  # noqa: F401  (registers everything)
from mmseg import registry

DOC = Path(__file__).resolve().parents[1] / 'docs' / 'plugin_usage.md'


def documented() -> dict:
    """{registry name: type names} from the "What gets registered" table."""
    table = DOC.read_text().split('## What gets registered', 1)[1]
    found: dict = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 3 and cells[0].isupper():
            found.setdefault(cells[0], set()).update(
                re.findall(r'`(\w+)`', cells[1]))
    return found


def registered() -> dict:
    """{registry name: type names} this package put in mmseg's registries."""
    found: dict = {}
    for name in dir(registry):
        reg = getattr(registry, name)
        if not isinstance(reg, type(registry.MODELS)):
            continue
        ours = {
            key
            for key, obj in reg.module_dict.items()
            if getattr(obj, '__module__', '').startswith('mmseg_ptx')
        }
        if ours:
            found[name] = ours
    return found


def test_registered_types_are_documented():
    assert documented() == registered()


def test_registered_types_are_exported_by_their_subpackage():
    """``from mmseg_ptx.engine import FuseConvBNHook`` and the like: each
    registered type is in its subpackage's ``__all__`` (as mmseg's are)."""
    import importlib
    missing = []
    for registry_name, types in registered().items():
        for name in types:
            obj = getattr(registry, registry_name).module_dict[name]
            package = '.'.join(obj.__module__.split('.')[:2])
            if name not in importlib.import_module(package).__all__:
                missing.append(f'{package}.{name}')
    assert not missing


def test_minimal_config_trains_with_stock_mmseg(tmp_path, demo_root):
    """The doc's config, outside this repository, trained and validated by
    MMSeg's own tools/train.py: only its custom_imports brings mmseg_ptx
    in. At 64 px, on the demo data, with a tiny Swin (command-line
    overrides only: the config is the doc's)."""
    import mmseg
    text = DOC.read_text().split('## A minimal config of your own', 1)[1]
    code = re.search(r'```python\n(.*?)```', text, re.DOTALL).group(1)
    for size in ('(512, 512)', "'data/siim'"):
        assert code.count(size) == 1, size
    code = code.replace('(512, 512)', '(64, 64)').replace(
        "'data/siim'", repr(str(demo_root)))
    config = tmp_path / 'my_config.py'
    config.write_text(code)
    stock_tools = Path(mmseg.__file__).parent / '.mim' / 'tools'
    tiny = [
        'model.backbone.embed_dims=16', 'model.backbone.depths=[1,1,1,1]',
        'model.backbone.num_heads=[1,1,2,2]', 'model.backbone.window_size=4',
        'model.backbone.pretrain_img_size=64',
        'model.decode_head.in_channels=[16,32,64,128]',
        'model.decode_head.channels=16', 'model.auxiliary_head.in_channels=64',
        'model.auxiliary_head.channels=16',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0']
    proc = run_tool([
        PYTHON, str(stock_tools / 'train.py'), str(config),
        '--work-dir', str(tmp_path / 'work'), '--cfg-options', *tiny,
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2'], cwd=tmp_path,
        env={'PYTHONPATH': ''})
    assert 'kaggle_dice' in proc.stdout + proc.stderr
    checkpoint = tmp_path / 'work' / 'iter_2.pth'
    assert checkpoint.is_file()
    # Its flip TTA, through MMSeg's own tools/test.py --tta.
    proc = run_tool([
        PYTHON, str(stock_tools / 'test.py'), str(config), str(checkpoint),
        '--tta', '--work-dir', str(tmp_path / 'tta'), '--cfg-options',
        *tiny], cwd=tmp_path, env={'PYTHONPATH': ''})
    assert 'kaggle_dice' in proc.stdout + proc.stderr


def test_recipe_config_merges_over_an_mmseg_config(tmp_path):
    """docs/recipe_sampler_loss.md's config, added to an ordinary MMSeg
    config (UPerNet Swin on ADE20K): its losses and sampler build, with
    none of the base's CrossEntropyLoss or DefaultSampler keys."""
    from mmengine.config import Config
    recipe = DOC.with_name('recipe_sampler_loss.md').read_text()
    code = re.search(r'## Config\n+```python\n(.*?)```', recipe,
                     re.DOTALL).group(1)
    config = tmp_path / 'my_config.py'
    config.write_text("_base_ = ['mmseg::_base_/models/upernet_swin.py', "
                      "'mmseg::_base_/datasets/ade20k.py']\n" + code)
    cfg = Config.fromfile(str(config))
    assert cfg.train_dataloader.sampler == dict(
        type='ClassBalancedSampler', pos_weight=1.5)
    for head in ('decode_head', 'auxiliary_head'):
        loss = registry.MODELS.build(cfg.model[head].loss_decode)
        assert type(loss).__name__ == 'DiceCELoss'
        assert loss.class_weight == [0.5047, 54.2225]
