"""Helpers shared by the command-line tools in ``tools/``."""
from .cli import add_runner_args, load_config

__all__ = ['add_runner_args', 'load_config']
