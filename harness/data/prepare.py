"""Raw S3DIS -> the layout mmdet3d / OneFormer3D read (``python -m harness prepare-data``)."""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from harness.core.errors import HarnessError
from harness.data.layout import (JOURNAL, MANIFEST, SUBDIRS, furniture_boxes, info_entry, journal_entry,
                                  load_manifest, write_infos, write_manifest, write_room)
from harness.data.raw import convert_room, list_raw_rooms, room_fingerprint
from harness.data.reader import read_room
from harness.data.verify import entry_problems

TOOL = 'python -m harness prepare-data'
MAX_WARNINGS_SHOWN = 40  # the rest are in MANIFEST.json
STALE = 'removed-rooms'   # where files of rooms gone from the raw tree are set aside


def convert_and_write(raw_room: str, out: str, name: str, area: int, source: dict) -> tuple[str, dict, list]:
    """Worker: one room from raw text to its three files (+ journal entry) and its boxes."""
    room = convert_room(Path(raw_room))
    entry = write_room(Path(out), name, room.points, room.semantic, room.instance, area, room.warnings, source)
    return name, entry, furniture_boxes(room.points, room.semantic, room.instance)


def plan(raw: Path, out: Path, areas: list[int], force: bool) -> tuple[dict, dict]:
    """Rooms per area in mmdet3d's order (name, raw folder, source), and the journal entries of
    rooms already complete from the same source (same raw root, same files' sizes and mtimes)."""
    rooms = {area: [(f'Area_{area}_{r}', path, {'raw': str(raw), 'files': room_fingerprint(path)})
                    for r in list_raw_rooms(raw, area) for path in [raw / f'Area_{area}' / r]]
             for area in areas}
    done = {} if force else {name: e for triples in rooms.values() for name, _, source in triples
                             if (e := journal_entry(out, name, source)) is not None}
    return rooms, done


def other_areas(raw: Path, out: Path, areas: list[int], force: bool) -> dict:
    """Manifest entries of rooms of other areas already prepared in ``out``, to keep listing them.

    Preparing more areas into a folder merges; an area prepared again replaces only its entries.

    Raises:
        HarnessError: ``out`` was prepared from another source (unless ``force``), or its manifest
            is unreadable (unless ``force``, which then lists only the areas converted now).
    """
    try:
        manifest = load_manifest(out)
    except HarnessError as err:
        if not force:
            problem = str(err).split('; rerun ')[0]   # that fix would hit this error again
            raise HarnessError(f'{problem}; pass --force to rewrite it (listing only --areas) or choose a new --out') \
                from err
        print(f'note: {out / MANIFEST}: unreadable, rewritten with only the areas converted now')
        return {}
    if manifest is None:
        _check_foreign(out, force)
        return {}
    if manifest.get('source') != str(raw) and not force:
        raise HarnessError(f'--out {out} was prepared from {manifest.get("source")}, not --raw {raw}; '
                           'choose a new --out or pass --force')
    kept = {}
    for name, entry in manifest['rooms'].items():
        if entry['area'] in areas:
            continue
        if entry_problems(out, name, entry):
            print(f'note: {name}: listed in {out / MANIFEST} but its files are missing or of another size; '
                  f'no longer listed (prepare Area_{entry["area"]} again)')
        else:
            kept[name] = entry
    return kept


def _check_foreign(out: Path, force: bool) -> None:
    """``out`` without a manifest is new, empty, or an interrupted first run (its journal): else its
    files are someone else's (an mmdet3d-prepared S3DIS, say), which rooms of the same name would overwrite.

    Raises:
        HarnessError: ``out`` holds files and neither MANIFEST.json nor a journal (unless ``force``).
    """
    if force or not out.is_dir() or (out / JOURNAL).is_dir():
        return
    found = sorted(p.name for p in out.iterdir())
    if found:
        shown = ', '.join(found[:3]) + (', ...' if len(found) > 3 else '')
        raise HarnessError(f'--out {out} holds files prepare-data did not write ({shown}; no {MANIFEST}); '
                           'choose a new or empty --out, or pass --force to write into it')


def stale_rooms(out: Path, rooms: dict) -> list[str]:
    """Rooms of the prepared areas whose points file is in ``out`` but whose raw room is gone
    (renamed or removed since): listed in neither the manifest nor the info pkls."""
    names = {name for triples in rooms.values() for name, _, _ in triples}
    return sorted(name for area in rooms for p in (out / 'points').glob(f'Area_{area}_*.bin')
                  if (name := p.stem) not in names)


def set_aside(out: Path, stale: list[str]) -> Path | None:
    """Move the files of ``stale`` rooms to ``out/removed-rooms/<time>/<subfolder>/``: kept (they are the
    user's), but out of the folders every reader checks (verify-data, run and evaluate refuse a room
    file no manifest lists). Returns the folder they went to, or None when there were none."""
    if not stale:
        return None
    aside = out / STALE / time.strftime('%Y%m%d-%H%M%S')
    for sub in SUBDIRS:
        for name in stale:
            src = out / sub / f'{name}.bin'
            if src.exists():
                (aside / sub).mkdir(parents=True, exist_ok=True)
                src.rename(aside / sub / src.name)   # same file system: atomic, nothing copied
    return aside


def prepare(raw: Path, out: Path, areas: list[int] = (1, 2, 3, 4, 5, 6), workers: int = 1,
            force: bool = False) -> dict:
    """Convert every room not yet complete (in parallel), then write the info pkls and the manifest.

    The raw tree is only read. Rooms are journaled as they complete, so an
    interrupted run resumes where it stopped; a room is skipped only if its raw
    files are unchanged. Rooms of other areas already in ``out`` stay listed.

    Returns:
        summary: ``out``, ``converted``, ``skipped``, ``points``, ``seconds``, ``warnings``.
    """
    raw_given, out_given = raw, out
    raw, out = Path(raw).resolve(), Path(out).resolve()
    if not raw.is_dir():
        raise HarnessError(f'{raw_given}: no such folder; pass --raw pointing at the extracted S3DIS')
    if out == raw or raw in out.parents:
        raise HarnessError(f'--out {out_given} is inside the raw tree {raw_given}; choose an output outside it')
    kept = other_areas(raw, out, list(areas), force)
    rooms, done = plan(raw, out, list(areas), force)
    (out / JOURNAL).mkdir(parents=True, exist_ok=True)   # before any room, so an interrupted first run is ours
    todo = [(str(path), str(out), name, area, source) for area, triples in rooms.items()
            for name, path, source in triples if name not in done]
    converted, boxes, n_points, seconds = convert_all(todo, workers)
    entries = {**kept, **done, **converted}
    for area, triples in rooms.items():
        data_list = [info_entry(i, name, boxes[name] if name in boxes else _boxes_from_disk(out, name))
                     for i, (name, _, _) in enumerate(triples)]
        write_infos(out, area, data_list)
    warnings = [w for name in sorted(entries) for w in entries[name].get('warnings', [])]
    write_manifest(out, entries, str(raw), warnings, TOOL)
    _note_stale(stale := stale_rooms(out, rooms), set_aside(out, stale))
    _report(len(todo), len(done), n_points, seconds, warnings)
    return {'out': str(out_given), 'converted': len(todo), 'skipped': len(done), 'points': n_points,
            'seconds': round(seconds, 2), 'warnings': len(warnings)}


def convert_all(todo: list[tuple], workers: int) -> tuple[dict, dict, int, float]:
    """Each room of ``todo`` (``convert_and_write``'s arguments) in a process pool, with a progress bar.

    Returns:
        (manifest entry per room, furniture boxes per room, points converted, seconds).
    """
    entries, boxes = {}, {}
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
    return entries, boxes, n_points, time.perf_counter() - start


def _note_stale(stale: list[str], aside: Path | None) -> None:
    if stale:
        print(f'note: {len(stale)} room(s) are no longer in the raw tree ({", ".join(stale[:5])}'
              f'{", ..." if len(stale) > 5 else ""}): dropped from {MANIFEST} and the info pkls; their files '
              f'were moved to {aside} (delete it if unwanted)')


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
