"""Registered components; see the submodules."""
