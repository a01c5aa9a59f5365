"""Reader of the prepared S3DIS layout (mmdet3d's, docs/data.md), memory-mapped.

``<root>/points/<room>.bin`` float32 [N, 6] (x y z r g b), ``<root>/semantic_mask/<room>.bin``
int64 [N] (0..12), ``<root>/instance_mask/<room>.bin`` int64 [N] (1..K); rooms are
named ``Area_<n>_<room>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError

# Index = label; the order of mmdet3d / OneFormer3D's S3DIS classes.
CLASS_NAMES = ('ceiling', 'floor', 'wall', 'beam', 'column', 'window', 'door',
               'table', 'chair', 'sofa', 'bookcase', 'board', 'clutter')


@dataclass
class Room:
    """One prepared room; arrays are read-only memory maps (no copy of the dataset).

    Attributes:
        name: e.g. ``Area_5_office_1``.
        points: float32 [N, 6]; semantic: int64 [N]; instance: int64 [N].
    """

    name: str
    points: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray


def list_rooms(root: Path, area: int) -> list[str]:
    """Sorted room names of one area, from ``points/Area_<area>_*.bin``."""
    folder = Path(root) / 'points'
    if not folder.is_dir():
        raise HarnessError(f'{folder}: missing; {root} is not a prepared S3DIS folder (points/, semantic_mask/, '
                           'instance_mask/): give one that prepare-data, synth or subset wrote')
    return sorted(p.stem for p in folder.glob(f'Area_{area}_*.bin'))


def _memmap(path: Path, dtype: np.dtype, row: int) -> np.ndarray:
    """Read-only memory map of a headerless .bin, with its size checked."""
    if not path.is_file():
        raise HarnessError(f'{path}: missing; re-prepare this room')
    item = np.dtype(dtype).itemsize * row
    size = path.stat().st_size
    if size % item:
        raise HarnessError(f'{path}: {size} bytes is not a whole number of {item}-byte rows; re-prepare this room')
    if size == 0:
        raise HarnessError(f'{path}: empty (0 points); re-prepare this room (prepare-data) or remove it')
    data = np.memmap(path, dtype=dtype, mode='r')
    return data.reshape(-1, row) if row > 1 else data


def read_room(root: Path, name: str) -> Room:
    """Memory-map one room's points and masks; lengths are checked to agree."""
    root = Path(root)
    points = _memmap(root / 'points' / f'{name}.bin', np.float32, 6)
    semantic = _memmap(root / 'semantic_mask' / f'{name}.bin', np.int64, 1)
    instance = _memmap(root / 'instance_mask' / f'{name}.bin', np.int64, 1)
    if not len(points) == len(semantic) == len(instance):
        raise HarnessError(f'{root}: room {name} has {len(points)} points but {len(semantic)} semantic '
                           f'and {len(instance)} instance labels; re-prepare this room')
    return Room(name, points, semantic, instance)
