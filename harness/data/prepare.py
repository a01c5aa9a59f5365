"""``python -m harness prepare-data``: raw S3DIS -> the layout mmdet3d / OneFormer3D read."""
from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from harness.core.errors import HarnessError
from harness.core.io import result_line
from harness.data.layout import furniture_boxes, info_entry, journal_entry, write_infos, write_manifest, write_room
from harness.data.raw import convert_room, list_raw_rooms
from harness.data.reader import read_room

HELP = 'convert raw S3DIS (read-only) into points/, *_mask/, s3dis_infos_Area_N.pkl and MANIFEST.json'
TOOL = 'python -m harness prepare-data'
MAX_WARNINGS_SHOWN = 40  # the rest are in MANIFEST.json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of prepare-data."""
    parser.add_argument('--raw', type=Path, required=True,
                        help='Stanford3dDataset_v1.2_Aligned_Version (Area_1 .. Area_6 inside)')
    parser.add_argument('--out', type=Path, default=Path('data/s3dis'), help='prepared dataset root')
    parser.add_argument('--areas', type=int, nargs='+', default=[1, 2, 3, 4, 5, 6], help='areas to convert')
    # Parsing is CPU-bound and rooms are independent; one process per core.
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='parallel rooms')
    parser.add_argument('--force', action='store_true', help='reconvert rooms that are already complete')


def convert_and_write(raw_room: str, out: str, name: str, area: int) -> tuple[str, dict, list]:
    """Worker: one room from raw text to its three files (+ journal entry) and its boxes."""
    room = convert_room(Path(raw_room))
    entry = write_room(Path(out), name, room.points, room.semantic, room.instance, area, room.warnings)
    return name, entry, furniture_boxes(room.points, room.semantic, room.instance)


def plan(raw: Path, out: Path, areas: list[int], force: bool) -> tuple[dict, dict]:
    """Rooms per area in mmdet3d's order, and the journal entries of rooms already complete."""
    rooms = {area: [(f'Area_{area}_{r}', raw / f'Area_{area}' / r) for r in list_raw_rooms(raw, area)]
             for area in areas}
    done = {} if force else {name: e for pairs in rooms.values() for name, _ in pairs
                             if (e := journal_entry(out, name)) is not None}
    return rooms, done


def run(args: argparse.Namespace) -> int:
    """Convert every room not yet complete; then write the info pkls and the manifest."""
    raw, out = args.raw.resolve(), args.out.resolve()
    if not raw.is_dir():
        raise HarnessError(f'{args.raw}: no such folder; pass --raw pointing at the extracted S3DIS')
    if out == raw or raw in out.parents:
        raise HarnessError(f'--out {args.out} is inside the raw tree {args.raw}; choose an output outside it')
    rooms, done = plan(raw, out, args.areas, args.force)
    todo = [(str(path), str(out), name, area) for area, pairs in rooms.items()
            for name, path in pairs if name not in done]
    entries, boxes = dict(done), {}
    start, n_points = time.perf_counter(), 0
    pool = ProcessPoolExecutor(max(1, args.workers))
    try:
        with tqdm(total=len(todo), desc='prepare-data', unit='room') as bar:
            for future in as_completed([pool.submit(convert_and_write, *t) for t in todo]):
                name, entry, room_boxes = future.result()
                entries[name], boxes[name] = entry, room_boxes
                n_points += entry['n_points']
                bar.set_postfix(points_per_s=f'{n_points / (time.perf_counter() - start):,.0f}')
                bar.update()
    except BaseException:
        # Stop at the first failure (or Ctrl-C): rooms done so far are journaled,
        # a rerun resumes from there.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    seconds = time.perf_counter() - start
    for area, pairs in rooms.items():
        data_list = [info_entry(i, name, boxes[name] if name in boxes else _boxes_from_disk(out, name))
                     for i, (name, _) in enumerate(pairs)]
        write_infos(out, area, data_list)
    warnings = [w for name in sorted(entries) for w in entries[name].get('warnings', [])]
    write_manifest(out, entries, str(raw), warnings, TOOL)
    _report(len(todo), len(done), n_points, seconds, warnings)
    print(result_line('prepare-data', 'ok', out=str(args.out), converted=len(todo), skipped=len(done),
                      points=n_points, seconds=round(seconds, 2), warnings=len(warnings)))
    return 0


def _boxes_from_disk(out: Path, name: str) -> list[dict]:
    """Boxes of a room converted by an earlier run (read back from its files)."""
    room = read_room(out, name)
    return furniture_boxes(room.points, room.semantic, room.instance)


def _report(converted: int, skipped: int, points: int, seconds: float, warnings: list[str]) -> None:
    """Throughput and every warning (the first MAX_WARNINGS_SHOWN; all are in the manifest)."""
    rate = f'{converted / seconds:.2f} rooms/s, {points / seconds:,.0f} points/s' if seconds > 0 and converted else ''
    print(f'converted {converted} rooms ({points:,} points) in {seconds:.1f} s {rate}; '
          f'{skipped} already complete')
    if warnings:
        print(f'{len(warnings)} warning(s):')
        for w in warnings[:MAX_WARNINGS_SHOWN]:
            print(f'  {w}')
        if len(warnings) > MAX_WARNINGS_SHOWN:
            print(f'  ... {len(warnings) - MAX_WARNINGS_SHOWN} more in MANIFEST.json')
