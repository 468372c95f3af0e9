"""docs/plugin_usage.md: what ``import mmseg_ptx`` registers, and its
minimal config builds a Runner."""
import re
from pathlib import Path

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


def test_minimal_config_builds_a_runner(tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner
    text = DOC.read_text().split('## A minimal config of your own', 1)[1]
    code = re.search(r'```python\n(.*?)```', text, re.DOTALL).group(1)
    path = tmp_path / 'my_config.py'
    path.write_text(code)
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(tmp_path / 'work')
    # The Runner checks that training, validation and testing each have
    # all their parts; the loops (and data sets) are built when run.
    runner = Runner.from_cfg(cfg)
    assert type(runner.model.decode_head.loss_decode).__name__ == \
        'DiceCELoss'
