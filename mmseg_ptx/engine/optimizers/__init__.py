"""Optimizer wrapper constructors registered in MMSeg's registry."""
from .merged_param_groups_constructor import (
    MergedParamGroupsOptimWrapperConstructor, merge_param_groups)

__all__ = ['MergedParamGroupsOptimWrapperConstructor', 'merge_param_groups']
