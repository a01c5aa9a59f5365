"""``python -m harness bench data``: prepare-data throughput on a generated raw tree (vs mmdet3d's scripts)."""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
import types
from pathlib import Path

from harness.core.args import at_least
from harness.core.io import atomic_write, check_out_file, result_line

HELP = 'time prepare-data on a generated raw S3DIS tree (optionally mmdet3d\'s converters too)'
GOAL = 5.0  # issue goal: >= 5x faster than mmdet3d's scripts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the data benchmark."""
    parser.add_argument('--rooms-per-area', type=at_least(1), default=1, help='rooms in each of the 6 areas')
    # S3DIS rooms average ~1M points (273M over 272 rooms): file sizes like the real ones
    parser.add_argument('--points-per-room', type=at_least(1), default=1_000_000,
                        help='points per room, about (synth gives each instance at least 30; the CSV counts what '
                             'was generated)')
    parser.add_argument('--workers', type=at_least(1), default=os.cpu_count() or 1, help='prepare-data --workers')
    parser.add_argument('--mmdet3d-root', type=Path, default=None,
                        help='mmdetection3d checkout (commit 22aaa47): also time its S3DIS converters')
    parser.add_argument('--out', type=Path, default=Path('results/bench'), help='folder for data.csv')
    parser.add_argument('--force', action='store_true', help='replace an existing CSV')


def run_mmdet3d(conv: dict[str, types.ModuleType], raw: Path, work: Path, workers: int) -> None:
    """mmdetection3d's own S3DIS conversion (collect_indoor3d_data + create_data) into ``work``.

    Its one-off edit of Area_5/hallway_6 is left out (it rewrites the raw file);
    everything else is the scripts' own code (``conv``: :func:`mmdet3d_s3dis_converters`'s modules).
    """
    import mmengine
    work.mkdir(parents=True, exist_ok=True)
    (work / 'Stanford3dDataset_v1.2_Aligned_Version').symlink_to(raw.resolve(), target_is_directory=True)
    (work / 's3dis_data').mkdir()
    areas = sorted(int(p.name.split('_')[1]) for p in raw.glob('Area_*'))
    with contextlib.redirect_stdout(io.StringIO()):  # the scripts print every room
        for area in areas:
            for room in os.listdir(raw / f'Area_{area}'):
                conv['indoor3d_util'].export(str(raw / f'Area_{area}' / room / 'Annotations'),
                                             str(work / 's3dis_data' / f'Area_{area}_{room}'))
        for area in areas:
            infos = conv['s3dis_data_utils'].S3DISData(str(work), f'Area_{area}').get_infos(num_workers=workers)
            v1 = work / 'v1' / f's3dis_infos_Area_{area}.pkl'
            v1.parent.mkdir(exist_ok=True)
            mmengine.dump(infos, str(v1), 'pkl')
            conv['update_infos_to_v2'].update_s3dis_infos(pkl_path=str(v1), out_dir=str(work / 'v2'))


def generated(prepared: Path) -> tuple[int, int]:
    """(rooms, points) of a prepared tree: what was timed (synth's counts are nominal: each instance
    gets at least 30 points), from points/<room>.bin, float32 [N, 6]."""
    files = list((prepared / 'points').glob('*.bin'))
    return len(files), sum(f.stat().st_size for f in files) // (6 * 4)


def run(args: argparse.Namespace) -> int:
    """Generate, then time ours (and mmdet3d's) on the same raw tree."""
    from harness.backends.upstream.reference import mmdet3d_s3dis_converters
    from harness.data.prepare import prepare
    from harness.data.synth import generate
    out = args.out / 'data.csv'
    check_out_file(out, args.force)   # before the timing, not after it
    conv = mmdet3d_s3dis_converters(args.mmdet3d_root) if args.mmdet3d_root is not None else None
    with tempfile.TemporaryDirectory(prefix='bench-data-') as tmp:
        tmp = Path(tmp)
        generate(tmp / 'raw', args.rooms_per_area, seed=0, points_per_room=args.points_per_room, raw=True)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):   # its per-room report; the table below is ours
            prepare(tmp / 'raw', tmp / 'ours', workers=args.workers)
        rows = [('harness', time.perf_counter() - start)]
        rooms, points = generated(tmp / 'ours')
        if conv is not None:
            start = time.perf_counter()
            run_mmdet3d(conv, tmp / 'raw', tmp / 'mmdet3d', args.workers)
            rows.append(('mmdet3d', time.perf_counter() - start))
    lines = ['tool,rooms,points,workers,seconds,rooms_per_s,points_per_s']
    for tool, seconds in rows:
        lines.append(f'{tool},{rooms},{points},{args.workers},{seconds:.3f},{rooms / seconds:.3f},{points / seconds:.0f}')
        print(f'{tool:<8} {seconds:7.2f} s  {rooms / seconds:7.2f} rooms/s  {points / seconds:12,.0f} points/s')
    atomic_write(out, '\n'.join(lines) + '\n', overwrite=args.force)
    ratio = rows[1][1] / rows[0][1] if len(rows) > 1 else None
    if ratio is not None:
        print(f'speed-up over mmdet3d: {ratio:.1f}x (goal >= {GOAL:.0f}x: {"met" if ratio >= GOAL else "NOT met"})')
    print(result_line('bench data', 'ok', csv=str(out), points_per_s=round(points / rows[0][1]),
                      speedup_vs_mmdet3d=round(ratio, 2) if ratio else None))
    return 0
