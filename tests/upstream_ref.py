"""Upstream OneFormer3D modules for cross-checks; skip unless ONEFORMER3D_ROOT is set.

Point ONEFORMER3D_ROOT at a checkout of filaPro/oneformer3d (commit e2a9dd2);
nothing of it is copied into this repository.
"""
from __future__ import annotations

import os
import types

import pytest

from harness.backends.upstream import reference as upstream_code


def upstream_module(name: str) -> types.ModuleType:
    """``oneformer3d/<name>.py`` from $ONEFORMER3D_ROOT, or skip the test."""
    root = os.environ.get('ONEFORMER3D_ROOT')
    if not root:
        pytest.skip('set ONEFORMER3D_ROOT to a OneFormer3D checkout to cross-check against upstream')
    pytest.importorskip('mmdet3d.registry')
    return upstream_code.upstream_module(root, name)


def mmdet3d_converters() -> str:
    """$MMDET3D_ROOT (a mmdetection3d checkout at 22aaa47), or skip the test."""
    root = os.environ.get('MMDET3D_ROOT')
    if not root:
        pytest.skip('set MMDET3D_ROOT to a mmdetection3d checkout to cross-check prepare-data')
    pytest.importorskip('mmengine')
    return root
