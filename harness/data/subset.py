"""A tiny, valid prepared dataset cut from a prepared one (``python -m harness subset``)."""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness.core.errors import HarnessError
from harness.data.layout import furniture_boxes, info_entry, read_infos, write_infos, write_manifest, write_room
from harness.data.reader import list_rooms, read_room


def area_rooms(src: Path, area: int) -> list[str]:
    """Rooms of an area in its info pkl's order (else sorted names)."""
    pkl = src / f's3dis_infos_Area_{area}.pkl'
    if pkl.exists():
        return [Path(e['lidar_points']['lidar_path']).stem for e in read_infos(pkl)['data_list']]
    return list_rooms(src, area)


def cut(points: np.ndarray, sem: np.ndarray, inst: np.ndarray, max_points: int | None,
        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Subsample (keeping point order) and renumber instances 1..K in ascending old id."""
    if max_points is not None and len(points) > max_points:
        keep = np.sort(rng.choice(len(points), max_points, replace=False))
        points, sem, inst = points[keep], sem[keep], inst[keep]
    ids, new = np.unique(inst, return_inverse=True)
    new = new.reshape(inst.shape) + (0 if ids.min(initial=1) == 0 else 1)
    return np.asarray(points), np.asarray(sem), new.astype(np.int64)


def subset(src: Path, out: Path, rooms_per_area: int = 1, max_points: int | None = None, seed: int = 0) -> dict:
    """Copy the first rooms of every area (optionally subsampled) through the shared writer.

    The rooms are written into a sibling temporary folder renamed to ``out`` when complete: a
    failure half-way (a source room missing) leaves ``out`` as it was, so the same command can run again.

    Returns:
        summary: ``out``, ``rooms``, ``points``.

    Raises:
        HarnessError: a count below 1 or ``out`` not new (or empty), before writing; a source room
            unreadable or none to copy, with nothing left at ``out``.
    """
    src, out = Path(src), Path(out)
    check_counts(rooms_per_area, max_points)
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f'{out} exists and is not empty; choose a new --out (nothing is overwritten)')
    if out.resolve() == src.resolve():
        raise HarnessError('--out must differ from --src')
    out.parent.mkdir(parents=True, exist_ok=True)
    # a new sibling (same file system: one rename), made by mkdir so it gets the usual mode, not mkdtemp's 0700
    tmp = out.parent / f'.{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}'
    tmp.mkdir()
    try:
        manifest, total = _write(src, tmp, rooms_per_area, max_points, seed)
        if out.exists():
            out.rmdir()   # empty (checked above)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)   # only left after a failure
    return {'out': str(out), 'rooms': len(manifest), 'points': total}


def check_counts(rooms_per_area: int, max_points: int | None) -> None:
    """Refuse counts a slice or the sampler would misread (-1 keeps all but the last room, 0 writes nothing).

    Raises:
        HarnessError: ``rooms_per_area`` < 1, or ``max_points`` given and < 1.
    """
    if rooms_per_area < 1:
        raise HarnessError(f'--rooms-per-area must be >= 1 (got {rooms_per_area})')
    if max_points is not None and max_points < 1:
        raise HarnessError(f'--max-points must be >= 1 (got {max_points}); leave it out to keep every point')


def _write(src: Path, out: Path, rooms_per_area: int, max_points: int | None, seed: int) -> tuple[dict, int]:
    """Rooms, info pkls and MANIFEST.json into ``out``; returns (manifest rooms, points written)."""
    rng = np.random.default_rng(seed)
    manifest, total = {}, 0
    for area in range(1, 7):
        names = area_rooms(src, area)[:rooms_per_area]
        if 0 < len(names) < rooms_per_area:
            print(f'note: Area_{area} has {len(names)} room(s), fewer than --rooms-per-area {rooms_per_area}: '
                  'all of them are kept')
        entries = []
        for i, name in enumerate(tqdm(names, desc=f'subset Area_{area}', unit='room')):
            room = read_room(src, name)
            points, sem, inst = cut(room.points, room.semantic, room.instance, max_points, rng)
            manifest[name] = write_room(out, name, points, sem, inst, area)
            entries.append(info_entry(i, name, furniture_boxes(points, sem, inst)))
            total += len(points)
        if names:
            write_infos(out, area, entries)
    if not manifest:
        raise HarnessError(f'{src}: no prepared rooms found; check --src')
    write_manifest(out, manifest, str(src), [], 'python -m harness subset')
    return manifest, total
