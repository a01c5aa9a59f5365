"""Import modules of a user's OneFormer3D checkout at run time (never copied here).

Used for cross-checks (tests, ``bench eval --upstream-root``). Upstream's package
``__init__`` imports MinkowskiEngine and compiled ops; the modules we compare
against need only mmengine / mmdet3d registries and numpy, so they are loaded
one by one under a private package name.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

from harness.core.errors import HarnessError

PACKAGE = '_oneformer3d_upstream'
SCANNET_UTILS = 'mmdet3d.evaluation.functional.scannet_utils'


def upstream_module(root: Path, name: str) -> types.ModuleType:
    """Import ``<root>/oneformer3d/<name>.py`` without its package ``__init__``.

    Raises:
        HarnessError: no such file, or mmdet3d is not installed.
    """
    src = Path(root) / 'oneformer3d'
    if not (src / f'{name}.py').is_file():
        raise HarnessError(f'{root}: no oneformer3d/{name}.py; pass the root of a OneFormer3D checkout')
    try:
        registry = importlib.import_module('mmdet3d.registry')
    except ImportError as err:
        raise HarnessError(f'upstream code needs mmdet3d ({err}); `make venv` installs enough of it') from err
    # With mmcv-lite the registries' lazy import of all mmdet3d.models fails;
    # upstream's classes register themselves when their module is imported.
    registry.MODELS._imported = registry.TASK_UTILS._imported = True
    _stub_scannet_utils()
    if PACKAGE not in sys.modules:
        pkg = types.ModuleType(PACKAGE)
        pkg.__path__ = [str(src)]
        sys.modules[PACKAGE] = pkg
    return importlib.import_module(f'{PACKAGE}.{name}')


def _stub_scannet_utils() -> None:
    """Make mmdet3d's pure-numpy ``scannet_utils.util_3d`` importable without mmcv ops."""
    if f'{SCANNET_UTILS}.util_3d' in sys.modules:
        return
    try:
        importlib.import_module(f'{SCANNET_UTILS}.util_3d')
        return
    except Exception:  # noqa: BLE001 - any failure (missing mmcv._ext) means: load it alone
        pass
    import mmdet3d
    base = Path(mmdet3d.__file__).parent / 'evaluation' / 'functional' / 'scannet_utils'
    for part in ('mmdet3d.evaluation', 'mmdet3d.evaluation.functional', SCANNET_UTILS):
        module = types.ModuleType(part)
        module.__path__ = []
        sys.modules[part] = module
    sys.modules[SCANNET_UTILS].__path__ = [str(base)]
    sys.modules[SCANNET_UTILS].util_3d = importlib.import_module(f'{SCANNET_UTILS}.util_3d')


# Imports of update_infos_to_v2.py that its S3DIS path never uses; stubbed when
# they cannot be imported (they need nuScenes and compiled mmcv ops).
_UNUSED_BY_S3DIS = {'nuscenes': [], 'nuscenes.nuscenes': ['NuScenes'],
                    'mmdet3d.datasets': [], 'mmdet3d.datasets.convert_utils':
                    ['convert_annos', 'get_kitti_style_2d_boxes', 'get_nuscenes_2d_boxes'],
                    'mmdet3d.datasets.utils': ['convert_quaternion_to_matrix'],
                    'mmdet3d.structures': ['points_cam2img']}


def _load_file(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def mmdet3d_s3dis_converters(root: Path) -> dict[str, types.ModuleType]:
    """mmdetection3d's S3DIS converters from a checkout (commit 22aaa47), for cross-checks.

    Returns:
        ``indoor3d_util`` (export), ``s3dis_data_utils`` (S3DISData) and
        ``update_infos_to_v2`` (update_s3dis_infos).
    """
    root = Path(root)
    paths = {'indoor3d_util': root / 'data' / 's3dis' / 'indoor3d_util.py',
             's3dis_data_utils': root / 'tools' / 'dataset_converters' / 's3dis_data_utils.py',
             'update_infos_to_v2': root / 'tools' / 'dataset_converters' / 'update_infos_to_v2.py'}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise HarnessError(f'{root}: not a mmdetection3d checkout (missing {missing[0]})')
    for name, attrs in _UNUSED_BY_S3DIS.items():
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - unusable here: stub it
            stub = types.ModuleType(name)
            stub.__path__ = []
            for attr in attrs:
                setattr(stub, attr, None)
            sys.modules[name] = stub
    return {name: _load_file(f'_mmdet3d_{name}', path) for name, path in paths.items()}
