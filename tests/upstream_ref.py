"""Load modules of a OneFormer3D checkout for cross-checks (nothing of it is copied here).

Tests that use it skip unless ONEFORMER3D_ROOT points at a checkout of
filaPro/oneformer3d (commit e2a9dd2) and ``mmdet3d.registry`` imports.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import pytest

PACKAGE = '_oneformer3d_upstream'


def upstream_module(name: str) -> types.ModuleType:
    """Import ``oneformer3d/<name>.py`` from $ONEFORMER3D_ROOT without its __init__.

    The package __init__ imports MinkowskiEngine and compiled ops; the modules
    the cross-checks need only import mmengine / mmdet3d registries.
    """
    root = os.environ.get('ONEFORMER3D_ROOT')
    if not root:
        pytest.skip('set ONEFORMER3D_ROOT to a OneFormer3D checkout to cross-check against upstream')
    src = Path(root) / 'oneformer3d'
    if not (src / f'{name}.py').is_file():
        pytest.fail(f'ONEFORMER3D_ROOT={root}: no oneformer3d/{name}.py there; point it at the checkout root')
    registry = pytest.importorskip('mmdet3d.registry')
    # With mmcv-lite the registries' lazy import of all mmdet3d.models fails;
    # upstream's classes register themselves when their module is imported.
    registry.MODELS._imported = registry.TASK_UTILS._imported = True
    if PACKAGE not in sys.modules:
        pkg = types.ModuleType(PACKAGE)
        pkg.__path__ = [str(src)]
        sys.modules[PACKAGE] = pkg
    return importlib.import_module(f'{PACKAGE}.{name}')
