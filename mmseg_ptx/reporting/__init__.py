"""Figures and tables shared by the hooks and the report tools."""
from .json_io import read_json, to_jsonable, write_json
from .plots import plot_pr_curve

__all__ = ['plot_pr_curve', 'read_json', 'to_jsonable', 'write_json']
