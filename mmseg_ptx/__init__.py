"""mmseg_ptx: SIIM-ACR pneumothorax segmentation as an MMSegmentation plugin.

Importing the package applies the stack fixes in :mod:`mmseg_ptx.compat`
first, then registers the plugin's components into MMSeg's registries.
"""
from . import compat

compat.apply_all()

from .version import __version__  # noqa: E402
from . import datasets, engine, evaluation, models  # noqa: E402,F401

__all__ = ['__version__', 'compat', 'datasets', 'engine', 'evaluation',
           'models']
