"""Raw S3DIS -> the layout mmdet3d / OneFormer3D read (``python -m harness prepare-data``)."""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from harness.core.errors import HarnessError
from harness.data.layout import furniture_boxes, info_entry, journal_entry, write_infos, write_manifest, write_room
from harness.data.raw import convert_room, list_raw_rooms
from harness.data.reader import read_room

TOOL = 'python -m harness prepare-data'
MAX_WARNINGS_SHOWN = 40  # the rest are in MANIFEST.json


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


def prepare(raw: Path, out: Path, areas: list[int] = (1, 2, 3, 4, 5, 6), workers: int = 1,
            force: bool = False) -> dict:
    """Convert every room not yet complete (in parallel), then write the info pkls and the manifest.

    The raw tree is only read. Rooms are journaled as they complete, so an
    interrupted run resumes where it stopped.

    Returns:
        summary: ``out``, ``converted``, ``skipped``, ``points``, ``seconds``, ``warnings``.
    """
    raw_given, out_given = raw, out
    raw, out = Path(raw).resolve(), Path(out).resolve()
    if not raw.is_dir():
        raise HarnessError(f'{raw_given}: no such folder; pass --raw pointing at the extracted S3DIS')
    if out == raw or raw in out.parents:
        raise HarnessError(f'--out {out_given} is inside the raw tree {raw_given}; choose an output outside it')
    rooms, done = plan(raw, out, list(areas), force)
    todo = [(str(path), str(out), name, area) for area, pairs in rooms.items()
            for name, path in pairs if name not in done]
    entries, boxes = dict(done), {}
    start, n_points = time.perf_counter(), 0
    pool = ProcessPoolExecutor(max(1, workers))
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
    return {'out': str(out_given), 'converted': len(todo), 'skipped': len(done), 'points': n_points,
            'seconds': round(seconds, 2), 'warnings': len(warnings)}


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
