"""S3DIS-format synthetic rooms for all six areas, raw or prepared (``python -m harness synth``)."""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from harness.core.errors import HarnessError
from harness.core.io import atomic_write, writable_folder
from harness.data.layout import furniture_boxes, info_entry, write_infos, write_manifest, write_room
from harness.data.raw import CLASS_TO_LABEL, class_of
from harness.data.scenes import synthetic_room

AREAS = (1, 2, 3, 4, 5, 6)


def generate(out: Path, rooms_per_area: int | Sequence[int] = 2, seed: int = 0, points_per_room: int | None = None,
             raw: bool = False, defects: bool = False, points_per_m2: float | None = None) -> dict:
    """Generate every room of the six areas, then write it in the raw or the prepared layout.

    Args:
        out: a new (or empty) folder; nothing is overwritten.
        rooms_per_area: one count for every area, or six (areas 1..6).
        points_per_room: None draws 5k-50k per room, like small S3DIS rooms (or uses the density).
        points_per_m2: points per square metre of surface instead of a count per room.
        raw / defects: the raw archive layout (with the known raw defects injected).

    Returns:
        summary: ``out``, ``layout``, ``rooms``, ``points``, ``defects``.

    Raises:
        HarnessError: a bad count, density or seed (:func:`check_sampling`), or ``out`` not new; before generating.
    """
    out = Path(out)
    check_sampling(seed, points_per_room, points_per_m2)
    # before generating: a file at or above ``out`` was named by the path of our scratch folder
    if out.exists() and not out.is_dir():
        raise HarnessError(f'{out}: a file, not a folder; choose a new folder for the rooms')
    writable_folder(out.parent, 'choose another folder for the rooms')
    if out.exists() and any(out.iterdir()):
        raise HarnessError(f'{out} exists and is not empty; choose a new --out (nothing is overwritten)')
    if defects and not raw:
        raise HarnessError('--defects needs --raw (defects live in the raw text files)')
    # Written into a sibling folder, renamed into place when complete: an
    # interrupted synth leaves no half dataset at ``out``.
    tmp = out.parent / f'.{out.name}.partial-{os.getpid()}'
    shutil.rmtree(tmp, ignore_errors=True)   # our own scratch of this very process id
    counts = per_area_counts(rooms_per_area)
    total, injected = _write_rooms(tmp, counts, seed, points_per_room, raw, defects, points_per_m2)
    if out.exists():
        out.rmdir()   # empty (checked above)
    tmp.rename(out)
    return {'out': str(out), 'layout': 'raw' if raw else 'prepared', 'rooms': sum(counts), 'points': total,
            'defects': injected}


def check_sampling(seed: int, points_per_room: int | None, points_per_m2: float | None) -> None:
    """Refuse what the generator would misread: 0 points would silently mean "at random", a NaN
    density or a negative seed crash numpy, and with both a count and a density one would be ignored.

    Raises:
        HarnessError: naming the option and the fix.
    """
    if seed < 0:
        raise HarnessError(f'--seed must be >= 0 (got {seed}); numpy seeds are non-negative')
    if points_per_room is not None and points_per_m2 is not None:
        raise HarnessError('give --points-per-room or --points-per-m2, not both (a count per room, or a density)')
    if points_per_room is not None and points_per_room < 1:
        raise HarnessError(f'--points-per-room must be >= 1 (got {points_per_room}); '
                           'leave it out for 5k-50k points at random')
    if points_per_m2 is not None and not (math.isfinite(points_per_m2) and points_per_m2 > 0):
        raise HarnessError(f'--points-per-m2 must be a finite number > 0 (got {points_per_m2})')


def per_area_counts(rooms_per_area: int | Sequence[int]) -> list[int]:
    """Rooms of areas 1..6 from one count or six."""
    counts = [rooms_per_area] * len(AREAS) if isinstance(rooms_per_area, int) else list(rooms_per_area)
    if len(counts) != len(AREAS) or not all(isinstance(c, int) and c > 0 for c in counts):
        raise HarnessError(f'rooms per area {rooms_per_area!r}: give one count > 0 or six (areas 1..6)')
    return counts


def _write_rooms(out: Path, counts: list[int], seed: int, points_per_room: int | None, raw: bool,
                 defects: bool, points_per_m2: float | None = None) -> tuple[int, list[str]]:
    """Every room into ``out``; returns (points written, injected defects)."""
    total = 0
    rooms = [(a, i) for a, n in zip(AREAS, counts) for i in range(n)]
    per_area: dict[int, list] = {a: [] for a in AREAS}
    manifest = {}
    for area, index in tqdm(rooms, desc='synth', unit='room'):
        name, files = synthetic_room(seed, area, index, points_per_room, points_per_m2)
        total += sum(len(v) for v in files.values())
        if raw:
            write_raw_room(out / f'Area_{area}' / name, files)
        else:
            points, sem, inst = assemble(files)
            full = f'Area_{area}_{name}'
            manifest[full] = write_room(out, full, points, sem, inst, area)
            per_area[area].append((full, furniture_boxes(points, sem, inst)))
    injected = inject_defects(out) if defects else []
    if not raw:
        for area, items in per_area.items():
            write_infos(out, area, [info_entry(i, n, b) for i, (n, b) in enumerate(items)])
        write_manifest(out, manifest, f'synth --seed {seed}', [], 'python -m harness synth')
    return total, injected


def assemble(files: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A room's arrays as prepare-data builds them (files in sorted order, xyz shifted in float64)."""
    names = sorted(files)
    xyzrgb = np.concatenate([files[n] for n in names])
    sem = np.concatenate([np.full(len(files[n]), CLASS_TO_LABEL[class_of(n)], np.int64) for n in names])
    inst = np.concatenate([np.full(len(files[n]), i + 1, np.int64) for i, n in enumerate(names)])
    xyzrgb[:, :3] -= xyzrgb[:, :3].min(axis=0)
    return xyzrgb.astype(np.float32), sem, inst


def _text(points: np.ndarray) -> str:
    """S3DIS text lines: xyz with 3 decimals, integer colours."""
    return ''.join(f'{x:.3f} {y:.3f} {z:.3f} {int(r)} {int(g)} {int(b)}\n' for x, y, z, r, g, b in points)


def write_raw_room(room_dir: Path, files: dict[str, np.ndarray]) -> None:
    """Annotations/<class>_<k>.txt per instance plus the room-level <room>.txt, as in the archive."""
    for name, pts in files.items():
        atomic_write(room_dir / 'Annotations' / f'{name}.txt', _text(pts))
    atomic_write(room_dir / f'{room_dir.name}.txt', _text(np.concatenate(list(files.values()))))


def inject_defects(raw: Path) -> list[str]:
    """The raw defects prepare-data must survive, in the first room of Area_5 and Area_1.

    Returns:
        one description per defect (what prepare-data should report).
    """
    a5 = sorted((raw / 'Area_5').iterdir())[0] / 'Annotations'
    a1 = sorted((raw / 'Area_1').iterdir())[0] / 'Annotations'
    ceiling = a5 / 'ceiling_1.txt'
    lines = ceiling.read_text().splitlines(keepends=True)
    # like Area_5/hallway_6: a control character in place of the last separator
    head, _, tail = lines[2].rpartition(' ')
    lines[2] = f'{head}\x10{tail}'
    ceiling.write_text(''.join(lines))
    wall = a1 / 'wall_1.txt'
    lines = wall.read_text().splitlines(keepends=True)
    lines[1] = '1.0 2.0 abc 4 5 6\n'        # non-numeric token: dropped
    lines[3] = ' '.join(lines[3].split()[:5]) + '\n'  # five columns: dropped
    wall.write_text(''.join(lines))
    floor = (a1 / 'floor_1.txt').read_text().splitlines(keepends=True)
    (a1 / 'stairs_1.txt').write_text(''.join(floor[:50]))   # unknown class -> clutter
    (a1 / 'clutter_99.txt').write_text('')                  # empty file: skipped
    return [f'{ceiling}:3 stray character', f'{wall}:2 non-numeric token', f'{wall}:4 five columns',
            f'{a1}/stairs_1.txt unknown class', f'{a1}/clutter_99.txt empty']
