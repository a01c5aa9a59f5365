"""Is a prepared S3DIS folder complete and consistent? (``python -m harness verify-data``)."""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness.core.errors import HarnessError
from harness.data.content import fix, room_problems, rooms_vs_manifest
from harness.data.layout import INFO_CATEGORIES, SUBDIRS, load_manifest, read_infos
from harness.data.reader import CLASS_NAMES, read_room

ROOM_NAME = re.compile(r'Area_(\d+)_')   # rooms are named Area_<n>_<room> (docs/data.md)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 22), b''):
            digest.update(block)
    return digest.hexdigest()


def check_hashes(root: Path, manifest: dict) -> list[str]:
    """Every room the manifest lists agrees with its files (:func:`entry_problems`: count, area,
    sizes, as ``run`` checks) and each file that exists has its recorded sha256."""
    problems = []
    for name, entry in tqdm(manifest['rooms'].items(), desc='verify hashes', unit='room'):
        problems += entry_problems(root, name, entry)
        for sub in SUBDIRS:
            path = root / sub / f'{name}.bin'
            if path.exists() and _sha256(path) != entry['sha256'][sub]:
                problems.append(f'{path}: sha256 differs from MANIFEST.json; {fix(name)}')
    return problems


def check_room(root: Path, name: str, stats: Counter) -> list[str]:
    """dtype/length (via the reader), coordinates, colours, label and id ranges, one label per instance."""
    area = ROOM_NAME.match(name)
    if area is None:   # a stray file (points/README.bin): no area to count it under
        return [f'{root}/points/{name}.bin: not a room (rooms are named Area_<n>_<room>.bin); move it away']
    problems = room_problems(root, name)
    if problems:
        return problems
    room = read_room(root, name)
    sem, inst = np.asarray(room.semantic), np.asarray(room.instance)
    area = area.group(1)
    stats[(area, 'rooms')] += 1
    stats[(area, 'points')] += len(sem)
    for i, s in np.unique(np.stack([inst, sem]), axis=1).T:
        if i > 0 and 0 <= s < len(CLASS_NAMES):
            stats[(area, CLASS_NAMES[s])] += 1
    return problems


def check_infos(root: Path, on_disk: set[str]) -> list[str]:
    """Each info pkl entry has its three files, and each room on disk is in a pkl."""
    problems, listed = [], set()
    for pkl in sorted(root.glob('s3dis_infos_Area_*.pkl')):
        try:
            info = read_infos(pkl)
        except HarnessError as err:
            problems.append(str(err))
            continue
        metainfo = info.get('metainfo')
        if not isinstance(metainfo, dict) or metainfo.get('categories') != INFO_CATEGORIES:
            problems.append(f'{pkl}: not a v2 S3DIS info file (metainfo.categories differ); rerun prepare-data')
            continue
        for i, entry in enumerate(info['data_list']):
            paths = _entry_paths(entry)
            if paths is None:
                problems.append(f'{pkl}: data_list[{i}] is not an info entry (a mapping with lidar_points.lidar_path, '
                                'pts_semantic_mask_path, pts_instance_mask_path); rerun prepare-data')
                continue
            name = Path(paths['points']).stem
            listed.add(name)
            for sub, path in paths.items():
                if Path(path).stem != name:
                    problems.append(f'{pkl}: {name} points to {path} for {sub}; rerun prepare-data')
                if not (root / sub / f'{name}.bin').exists():
                    problems.append(f'{root / sub / (name + ".bin")}: listed in {pkl.name} but missing; {fix(name)}')
    for name in sorted(on_disk - listed):
        problems.append(f'{root}/points/{name}.bin: in no s3dis_infos_Area_N.pkl; {fix(name)}')
    return problems


def _entry_paths(entry: object) -> dict[str, str] | None:
    """An info entry's file per folder ({points, semantic_mask, instance_mask} -> path), None if malformed."""
    try:
        paths = {'points': entry['lidar_points']['lidar_path'],
                 'semantic_mask': entry['pts_semantic_mask_path'],
                 'instance_mask': entry['pts_instance_mask_path']}
    except (KeyError, TypeError, IndexError):   # a key missing, or a str / list where a mapping belongs
        return None
    return paths if all(isinstance(p, str) for p in paths.values()) else None


ROW_BYTES = {'points': 24, 'instance_mask': 8, 'semantic_mask': 8}   # float32 x 6, int64, int64


def quick_check(root: Path, areas: list[int]) -> list[str]:
    """What a run checks before training: the manifest lists rooms of every area used and no
    room of them is on disk only; each listed room's files exist with the size its point count
    implies; and their content is as the layout says (:func:`harness.data.content.room_problems`:
    one pass over the data, seconds per GB). ``verify-data`` also checks the files' hashes."""
    root = Path(root)
    manifest = load_manifest(root)
    if manifest is None:
        return [f'{root}/MANIFEST.json: missing; rerun prepare-data (or synth/subset)']
    problems = []
    for area in areas:
        rooms = {n: e for n, e in manifest['rooms'].items() if e.get('area') == area}
        if not rooms:
            problems.append(f'{root}/MANIFEST.json: no room of Area_{area}; prepare that area or change the spec')
        for name, entry in rooms.items():
            # content is read only when the manifest and the sizes agree (else the reader would only repeat them)
            problems += entry_problems(root, name, entry) or room_problems(root, name)
    return problems + rooms_vs_manifest(root, manifest, areas)


def entry_problems(root: Path, name: str, entry: dict) -> list[str]:
    """A MANIFEST.json room entry against its files: ``n_points`` a positive integer, ``area`` the
    one in the room's name, each file present with the size ``n_points`` implies (``ROW_BYTES``).
    One check for ``run`` (:func:`quick_check`) and ``verify-data`` (:func:`check_hashes`)."""
    n = entry.get('n_points')
    counted = isinstance(n, int) and not isinstance(n, bool) and n > 0
    problems = [] if counted else [f'{root}/MANIFEST.json: room {name} has {n!r} points; {fix(name)}']
    named = ROOM_NAME.match(name)
    if named is None or int(named.group(1)) != entry['area']:
        problems.append(f'{root}/MANIFEST.json: room {name} is listed under area {entry["area"]!r}, its name says '
                        f'{"Area_" + named.group(1) if named else "no area"}; {fix(name)}')
    for sub, row in ROW_BYTES.items():
        path = root / sub / f'{name}.bin'
        size = path.stat().st_size if path.exists() else None
        if size is None or (counted and size != n * row):
            says = f', the manifest says {n} points ({n * row} bytes)' if counted else ''
            problems.append(f'{path}: {"missing" if size is None else f"{size} bytes"}{says}; {fix(name)}')
    return problems


def verify(root: Path) -> tuple[Counter, list[str]]:
    """Every check of a prepared folder.

    Returns:
        per-area statistics (rooms, points, instances per class) and one line per problem.

    Raises:
        HarnessError: ``root`` is not a prepared dataset at all.
    """
    root = Path(root)
    if not (root / 'points').is_dir():
        raise HarnessError(f'{root}: no points/ folder; point at a prepared S3DIS root (prepare-data --out)')
    manifest = load_manifest(root)
    problems = [] if manifest else [f'{root}/MANIFEST.json: missing; rerun prepare-data (or synth/subset)']
    if manifest:
        problems += check_hashes(root, manifest) + rooms_vs_manifest(root, manifest)
    on_disk = {p.stem for p in (root / 'points').glob('*.bin')}
    stats: Counter = Counter()
    for name in tqdm(sorted(on_disk), desc='verify rooms', unit='room'):
        problems += check_room(root, name, stats)
    problems += check_infos(root, on_disk)
    return stats, problems


def summary_table(stats: Counter) -> str:
    """Rooms, points and instances per class, per area."""
    areas = sorted({a for a, _ in stats}, key=int)
    head = f'{"":<10}' + ''.join(f'{"Area_" + a:>10}' for a in areas)
    rows = [head, '-' * len(head)]
    for key in ('rooms', 'points', *CLASS_NAMES):
        rows.append(f'{key:<10}' + ''.join(f'{stats[(a, key)]:>10,}' for a in areas))
    return '\n'.join(rows)
