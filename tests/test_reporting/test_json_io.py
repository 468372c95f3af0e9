import json
import math

import numpy as np
import pytest
import torch

from mmseg_ptx.reporting import read_json, to_jsonable, write_json


def test_to_jsonable_strict_values():
    value = dict(a=float('nan'), b=[np.float32(0.5), torch.tensor(2)],
                 c=(np.int64(3), -math.inf), d=np.array([[1, 2]]), e='x')
    assert to_jsonable(value) == dict(a=None, b=[0.5, 2], c=[3, None],
                                      d=[[1, 2]], e='x')


def test_write_json_strict_and_atomic(tmp_path):
    path = str(tmp_path / 'out.json')
    write_json(dict(dice=float('nan'), n=np.int32(4)), path)
    assert json.loads(open(path).read(),
                      parse_constant=pytest.fail) == dict(dice=None, n=4)
    # A failed write leaves the earlier file and no partial one.
    with pytest.raises(TypeError):
        write_json(dict(bad=object()), path)
    assert json.load(open(path)) == dict(dice=None, n=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.json']


def test_read_json_names_a_malformed_file(tmp_path):
    path = tmp_path / 'history.json'
    path.write_text('[1, 2')
    with pytest.raises(ValueError, match=r'history\.json is not valid JSON'):
        read_json(str(path))
    path.write_text('[1, 2]')
    assert read_json(str(path)) == [1, 2]


def test_write_json_leaves_no_temporary_file_when_it_fails(tmp_path):
    """Renaming onto a folder fails: no ``.tmp`` is left beside it."""
    folder = tmp_path / 'stats.json'
    (folder / 'inside').mkdir(parents=True)
    with pytest.raises(OSError):
        write_json({'a': 1}, str(folder))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['stats.json']
