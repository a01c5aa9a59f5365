"""Raw S3DIS (Stanford3dDataset_v1.2_Aligned_Version) -> arrays, read-only.

One room = ``Area_N/<room>/Annotations/<class>_<k>.txt``, one instance per
file, lines ``x y z r g b``. The raw tree is never written (it is often
read-only); defects are repaired in memory and reported as ``file:line``.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.core.errors import HarnessError
from harness.data.reader import CLASS_NAMES

CLASS_TO_LABEL = {name: i for i, name in enumerate(CLASS_NAMES)}
# pandas < 3 parses floats with a fast, not correctly rounded routine by default.
_PRECISION = {'float_precision': 'round_trip'} if int(pd.__version__.split('.')[0]) < 3 else {}
_STRAY = re.compile(r'[^0-9eE+\-.\s]')
COLOUR_RANGE = (0, 255)   # S3DIS colours are 8-bit RGB; verify-data checks the same range (content.py)


@dataclass
class RoomData:
    """One converted room.

    Attributes:
        points: float32 [N, 6], xyz shifted by the room's minimum (computed in float64).
        semantic: int64 [N], 0..12.
        instance: int64 [N], 1..K numbered by sorted annotation file name.
        warnings: every repaired or dropped line, skipped file, unknown class.
    """

    points: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    warnings: list[str] = field(default_factory=list)


def _row_problem(values: np.ndarray) -> str | None:
    """What makes rows of ``x y z r g b`` unusable (None: all fine): a non-finite number, or a
    colour outside COLOUR_RANGE (prepared data with it would fail verify-data, and no rerun fixes that).

    The one rule for both parsers: the fast path falls back to line by line when it fails.
    """
    if not np.isfinite(values).all():
        return 'a non-finite number'
    colours = values[..., 3:]
    low, high = COLOUR_RANGE
    if ((colours < low) | (colours > high)).any():
        return f'colour(s) {colours.min():g}..{colours.max():g} outside {low}..{high}'
    return None


def _parse_fast(path: str) -> np.ndarray | None:
    """C parser; None when the file is not a clean N x 6 table (see :func:`_row_problem`)."""
    try:
        table = pd.read_csv(path, sep=' ', header=None, dtype=np.float64, engine='c', **_PRECISION)
    except (ValueError, pd.errors.ParserError):
        return None
    values = table.to_numpy()
    return values if values.shape[1] == 6 and _row_problem(values) is None else None


def _parse_line(line: str) -> tuple[list[float] | None, str | None]:
    """Six floats of one line (see :func:`_numbers`), dropped when :func:`_row_problem` finds one."""
    vals, issue = _numbers(line)
    problem = None if vals is None else _row_problem(np.asarray(vals))
    if problem:
        return None, f'dropped: {problem}: {line.strip()[:60]!r}'
    return vals, issue


def _numbers(line: str) -> tuple[list[float] | None, str | None]:
    """Six finite floats of one line, repairing a stray character when that is unambiguous."""
    def floats(text: str) -> list[float] | None:
        try:
            vals = [float(t) for t in text.split()]
        except ValueError:
            return None
        return vals if len(vals) == 6 and all(np.isfinite(vals)) else None

    vals = floats(line)
    if vals is not None:
        return vals, None
    strays = _STRAY.findall(line)
    if strays:
        # e.g. Area_5/hallway_6 ceiling_1.txt: a control character between two
        # numbers; a space restores exactly six numbers.
        repaired = floats(_STRAY.sub(' ', line))
        if repaired is not None:
            chars = ', '.join(f'U+{ord(c):04X}' for c in strays)
            return repaired, f'repaired: replaced stray character(s) {chars} with a space'
    tokens = line.split()
    bad = [t for t in tokens if floats(f'{t} 0 0 0 0 0') is None][:3]
    why = f'non-numeric {bad}' if bad else f'{len(tokens)} numbers'
    return None, f'dropped: expected 6 numbers, got {why}: {line.strip()[:60]!r}'


def read_annotation(path: str) -> tuple[np.ndarray, list[str]]:
    """float64 (n, 6) points of one annotation file and the defects found in it."""
    if os.path.getsize(path) == 0:
        return np.zeros((0, 6)), [f'{path}: empty annotation file, skipped']
    fast = _parse_fast(path)
    if fast is not None:
        return fast, []
    rows, issues = [], []
    with open(path, encoding='utf-8', errors='replace') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            vals, issue = _parse_line(line)
            if issue:
                issues.append(f'{path}:{number}: {issue}')
            if vals is not None:
                rows.append(vals)
    if not rows:
        issues.append(f'{path}: no valid line, skipped')
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6), issues


def class_of(filename: str) -> str:
    """Class of an annotation file: its name up to the first '_' (``wall_3 (1).txt`` -> wall)."""
    return os.path.basename(filename).split('_')[0]


def convert_room(room_dir: Path) -> RoomData:
    """Concatenate a room's annotation files as mmdet3d's collect_indoor3d_data does.

    Points are concatenated in ``glob`` order, like mmdet3d, so points and
    semantic masks equal its output byte for byte on the same filesystem.
    Instance ids follow the sorted file names instead (mmdet3d numbers in glob
    order, which depends on the filesystem), so they are portable and equal
    mmdet3d's up to a renumbering.

    Raises:
        HarnessError: the room has no Annotations/ folder or no valid point.
    """
    anno = Path(room_dir) / 'Annotations'
    if not anno.is_dir():
        raise HarnessError(f'{room_dir}: no Annotations/ folder; restore this room from the S3DIS archive')
    files = glob.glob(os.path.join(str(anno), '*.txt'))
    parsed, warnings = {}, []
    for f in files:
        pts, issues = read_annotation(f)
        warnings += issues
        if len(pts):
            parsed[f] = pts
    if not parsed:
        raise HarnessError(f'{room_dir}: no annotated point in Annotations/; restore this room')
    ids = {f: i + 1 for i, f in enumerate(sorted(parsed, key=os.path.basename))}
    unknown = sorted({class_of(f) for f in parsed if class_of(f) not in CLASS_TO_LABEL})
    if unknown:
        warnings.append(f'{anno}: unknown class name(s) {unknown} mapped to clutter')
    order = [f for f in files if f in parsed]
    xyzrgb = np.concatenate([parsed[f] for f in order])
    semantic = np.concatenate([np.full(len(parsed[f]), CLASS_TO_LABEL.get(class_of(f), 12), np.int64)
                               for f in order])
    instance = np.concatenate([np.full(len(parsed[f]), ids[f], np.int64) for f in order])
    xyzrgb[:, :3] -= xyzrgb[:, :3].min(axis=0)   # float64, as mmdet3d, then float32
    warnings += _unannotated(Path(room_dir), len(xyzrgb))
    return RoomData(xyzrgb.astype(np.float32), semantic, instance, warnings)


def _unannotated(room_dir: Path, annotated: int) -> list[str]:
    """A warning when the room-level ``<room>.txt`` has more points than the annotation files.

    S3DIS ships every room twice: all points in ``<room>.txt`` and the same
    points split by instance under ``Annotations/``. More points in the former
    means an annotation file is missing or truncated: an instance silently gone.
    """
    whole = room_dir / f'{room_dir.name}.txt'
    if not whole.is_file():
        return []
    with open(whole, 'rb') as f:
        lines = sum(chunk.count(b'\n') for chunk in iter(lambda: f.read(1 << 24), b''))
    if lines > annotated:
        return [f'{whole}: {lines} points, the annotation files {annotated}: {lines - annotated} points are in no '
                'file of Annotations/ (one missing or truncated? restore it from the S3DIS archive)']
    return []


def room_fingerprint(room_dir: Path) -> str:
    """sha256 of the name, size and mtime of every file :func:`convert_room` reads in a room.

    Cheap (a stat per file, no read): prepare-data skips a room on a rerun only when this is
    unchanged, so an edited, added, removed or renamed annotation file gets the room converted again.
    """
    room_dir = Path(room_dir)
    files = glob.glob(os.path.join(str(room_dir / 'Annotations'), '*.txt')) + [str(room_dir / f'{room_dir.name}.txt')]
    stats = sorted((os.path.relpath(f, room_dir), st.st_size, st.st_mtime_ns)
                   for f in files if (st := _stat(f)) is not None)
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def list_raw_rooms(raw: Path, area: int) -> list[str]:
    """Room folders of one area in ``os.listdir`` order: mmdet3d's info-pkl order (sample_idx)."""
    area_dir = Path(raw) / f'Area_{area}'
    if not area_dir.is_dir():
        raise HarnessError(f'{area_dir}: missing; pass --raw pointing at Stanford3dDataset_v1.2_Aligned_Version '
                           'or choose --areas that exist')
    return [d for d in os.listdir(area_dir) if (area_dir / d).is_dir()]
