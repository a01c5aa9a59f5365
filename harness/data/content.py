"""What a prepared room's content must be, checked before anything trains on it or is scored against it.

The layout (docs/data.md, mmdet3d's): ``points/<room>.bin`` float32 [N, 6] with finite
x y z and colours r g b in 0..255; ``semantic_mask/<room>.bin`` int64 [N] in 0..12;
``instance_mask/<room>.bin`` int64 [N] in 1..K (prepare-data numbers instances from 1;
mmdet3d keeps 0 for "unannotated", which real S3DIS never has; the evaluator takes ids
below 1000), one semantic label per instance. Sizes are the reader's check. Each problem
is one line naming the file and the fix; ``verify-data``, ``run`` and ``evaluate`` share them.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError
from harness.data.layout import SUBDIRS
from harness.data.reader import CLASS_NAMES, read_room

MAX_INSTANCE_ID = 999   # the evaluator renames ids as 1000 * label + id (upstream's ScanNet protocol)


def fix(name: str) -> str:
    """The fix for a bad room: prepare its area again."""
    area = re.match(r'Area_(\d+)_', name)
    return f'rerun prepare-data for Area_{area.group(1)}' if area else 'rerun prepare-data'


def room_problems(root: Path, name: str) -> list[str]:
    """Every content problem of one room (empty when it is as the layout says).

    Covers what the reader's size checks cannot see: non-finite coordinates, colours
    outside 0..255, labels and ids outside the layout's ranges (float64 stored where
    int64 belongs shows as huge ids), instance id 0, and an instance with two labels.
    """
    root = Path(root)
    try:
        room = read_room(root, name)
    except HarnessError as err:
        return [str(err)]
    except OSError as err:   # unreadable file: named, with the cause
        return [f'{err.filename or root / name}: unreadable ({err.strerror}); fix its permissions or {fix(name)}']
    return (_point_problems(root / 'points' / f'{name}.bin', np.asarray(room.points), name)
            + _label_problems(root, name, np.asarray(room.semantic), np.asarray(room.instance)))


def _point_problems(path: Path, points: np.ndarray, name: str) -> list[str]:
    """float32 (N, 6): finite x y z r g b, colours in 0..255."""
    problems = []
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        problems.append(f'{path}: {int(bad.sum())} points with NaN or infinite values (first at row '
                        f'{int(np.flatnonzero(bad)[0])}); bad input data, not a training problem: drop or repair '
                        f'those points and {fix(name)}')
    rgb = points[~bad, 3:6]
    if len(rgb) and (rgb.min() < 0 or rgb.max() > 255):
        problems.append(f'{path}: colours {rgb.min():g}..{rgb.max():g} outside 0..255 (columns 4-6 are r g b as '
                        f'S3DIS stores them); {fix(name)}')
    return problems


def _label_problems(root: Path, name: str, sem: np.ndarray, inst: np.ndarray) -> list[str]:
    """Semantic labels 0..12, instance ids 1..999, one label per instance."""
    sem_path, inst_path = root / 'semantic_mask' / f'{name}.bin', root / 'instance_mask' / f'{name}.bin'
    problems = []
    if len(sem) and (sem.min() < 0 or sem.max() >= len(CLASS_NAMES)):
        problems.append(f'{sem_path}: labels {sem.min()}..{sem.max()} outside 0..{len(CLASS_NAMES) - 1}'
                        f'{_float_hint(sem, len(CLASS_NAMES) - 1)}; {fix(name)}')
    if len(inst) and (inst.min() < 0 or inst.max() > MAX_INSTANCE_ID):
        problems.append(f'{inst_path}: instance ids {inst.min()}..{inst.max()} outside 1..{MAX_INSTANCE_ID}'
                        f'{_float_hint(inst, MAX_INSTANCE_ID)}; {fix(name)}')
    elif (inst == 0).any():
        problems.append(f'{inst_path}: {int((inst == 0).sum())} points with instance id 0; the layout numbers '
                        f'instances 1..K (0 would be "no instance", which prepare-data never writes); {fix(name)}')
    if not problems and len(sem):
        pairs = np.unique(inst * len(CLASS_NAMES) + sem)
        ids, counts = np.unique(pairs // len(CLASS_NAMES), return_counts=True)
        if (counts > 1).any():
            problems.append(f'{inst_path}: instances {ids[counts > 1][:5].tolist()} have several semantic labels '
                            f'(each instance has one); {fix(name)}')
    return problems


def _float_hint(values: np.ndarray, top: int) -> str:
    """' (stored as float64? ...)' when the int64 bytes read as float64 are whole numbers in range."""
    as_float = values.view('<f8')
    if np.isfinite(as_float).all() and (as_float == np.round(as_float)).all() and \
            as_float.min() >= 0 and as_float.max() <= top:
        return ' (the file holds float64 values; the layout is little-endian int64)'
    return ''


def rooms_vs_manifest(root: Path, manifest: dict, areas: list[int] | None = None,
                      missing: bool = False) -> list[str]:
    """Rooms whose files are on disk but not in MANIFEST.json (and, with ``missing``, the reverse).

    Training and evaluation list rooms from disk, while the data's identity in every run record is
    the manifest's: a room on disk only would be trained or tested on without being part of it.

    Args:
        areas: only rooms of these areas (None: all).
    """
    root = Path(root)
    listed = {n for n, e in manifest['rooms'].items() if areas is None or e['area'] in areas}
    patterns = ['*.bin'] if areas is None else [f'Area_{a}_*.bin' for a in areas]
    problems = []
    for sub in SUBDIRS:
        on_disk = {p.stem for pattern in patterns for p in (root / sub).glob(pattern)}
        problems += [f'{root / sub / (n + ".bin")}: on disk but not in {root / "MANIFEST.json"} (it would be used '
                     'without being part of the data\'s identity); move it away, or rerun prepare-data to list it'
                     for n in sorted(on_disk - listed)]
        if missing:
            problems += [f'{root / sub / (n + ".bin")}: listed in MANIFEST.json but missing; {fix(n)}'
                         for n in sorted(listed - on_disk)]
    return problems
