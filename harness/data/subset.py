"""``python -m harness subset``: a tiny, valid prepared dataset cut from a prepared one."""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
from tqdm import tqdm

from harness.core.errors import HarnessError
from harness.core.io import result_line
from harness.data.layout import furniture_boxes, info_entry, write_infos, write_manifest, write_room
from harness.data.reader import list_rooms, read_room

HELP = 'cut N rooms per area (optionally at most P points each) from a prepared dataset'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of subset."""
    parser.add_argument('--src', type=Path, default=Path('data/s3dis'), help='prepared dataset')
    parser.add_argument('--out', type=Path, required=True, help='new folder (must not exist or be empty)')
    parser.add_argument('--rooms-per-area', type=int, default=1, help='rooms kept per area')
    parser.add_argument('--max-points', type=int, default=None,
                        help='random subsample per room (order kept), for CPU smoke runs')
    parser.add_argument('--seed', type=int, default=0, help='subsampling seed')


def area_rooms(src: Path, area: int) -> list[str]:
    """Rooms of an area in its info pkl's order (else sorted names)."""
    pkl = src / f's3dis_infos_Area_{area}.pkl'
    if pkl.exists():
        return [Path(e['lidar_points']['lidar_path']).stem for e in pickle.loads(pkl.read_bytes())['data_list']]
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


def run(args: argparse.Namespace) -> int:
    """Copy the first rooms of every area through the shared writer."""
    if args.out.exists() and any(args.out.iterdir()):
        raise HarnessError(f'{args.out} exists and is not empty; choose a new --out (nothing is overwritten)')
    if args.out.resolve() == args.src.resolve():
        raise HarnessError('--out must differ from --src')
    rng = np.random.default_rng(args.seed)
    manifest, total = {}, 0
    for area in range(1, 7):
        names = area_rooms(args.src, area)[:args.rooms_per_area]
        entries = []
        for i, name in enumerate(tqdm(names, desc=f'subset Area_{area}', unit='room')):
            room = read_room(args.src, name)
            points, sem, inst = cut(room.points, room.semantic, room.instance, args.max_points, rng)
            manifest[name] = write_room(args.out, name, points, sem, inst, area)
            entries.append(info_entry(i, name, furniture_boxes(points, sem, inst)))
            total += len(points)
        if names:
            write_infos(args.out, area, entries)
    if not manifest:
        raise HarnessError(f'{args.src}: no prepared rooms found; check --src')
    write_manifest(args.out, manifest, str(args.src), [], 'python -m harness subset')
    print(result_line('subset', 'ok', out=str(args.out), rooms=len(manifest), points=total))
    return 0
