"""``python -m harness evaluate``: dumped predictions + prepared GT -> metrics.json and a table."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from harness.data import CLASS_NAMES, list_rooms, read_room
from harness.core.errors import HarnessError
from harness.evaluation.ap import OVERLAPS, evaluate_instances
from harness.core.io import atomic_write, result_line
from harness.evaluation.predictions import load_predictions, prediction_files

HELP = 'instance AP@25/50/75 and mAP of dumped predictions against prepared S3DIS GT'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the evaluate verb."""
    parser.add_argument('predictions', type=Path, help='folder of <room>.npz prediction files')
    parser.add_argument('--data', type=Path, default=Path('data/s3dis'), help='prepared S3DIS root')
    parser.add_argument('--area', type=int, default=5, help='test area (S3DIS convention: 5)')
    parser.add_argument('--out', type=Path, default=None,
                        help='metrics.json to write (default: none, print only)')
    parser.add_argument('--force', action='store_true', help='replace an existing --out file')


def run(args: argparse.Namespace) -> int:
    """Evaluate every room of the area; missing or unknown rooms are errors."""
    if args.out is not None and args.out.exists() and not args.force:
        raise HarnessError(f'{args.out} exists; pass --force to replace it or choose another --out')
    result, record = evaluate_folder(args.predictions, args.data, args.area)
    rooms = range(record['n_rooms'])
    if args.out is not None:
        atomic_write(args.out, json.dumps(record, indent=1) + '\n', overwrite=args.force)
    print(format_table(result))
    print(result_line('evaluate', 'ok', rooms=len(rooms), ap=record['ap'], ap50=record['ap50'],
                      ap25=record['ap25'], ap75=record['ap75'], out=str(args.out) if args.out else None))
    return 0


def evaluate_folder(predictions: Path, data: Path, area: int) -> tuple[dict, dict]:
    """Evaluate a folder of <room>.npz against the prepared GT of one area.

    Returns:
        the evaluator's result and its JSON-ready metrics record.
    """
    rooms = check_rooms(list_rooms(data, area), prediction_files(predictions), predictions, data, area)
    result = evaluate_instances(scenes(data, rooms), CLASS_NAMES)
    return result, metrics_record(result, n_rooms=len(rooms), area=area, predictions=str(predictions),
                                  data=str(data))


def check_rooms(gt_rooms: list[str], preds: dict[str, Path], pred_dir: Path, data: Path,
                area: int) -> dict[str, Path]:
    """Room -> prediction file, in GT order; no silent partial evaluation."""
    if not gt_rooms:
        raise HarnessError(f'{data}: no rooms of Area_{area} under points/; check --data and --area')
    missing = [r for r in gt_rooms if r not in preds]
    unknown = sorted(set(preds) - set(gt_rooms))
    if missing:
        raise HarnessError(f'{pred_dir}: no predictions for {len(missing)} of {len(gt_rooms)} '
                           f'Area_{area} rooms: {", ".join(missing[:10])}; dump every room')
    if unknown:
        raise HarnessError(f'{pred_dir}: predictions for rooms not in {data} Area_{area}: '
                           f'{", ".join(unknown[:10])}; check --data/--area or remove them')
    return {r: preds[r] for r in gt_rooms}


def scenes(data: Path, rooms: dict[str, Path]) -> Iterator[dict]:
    """Evaluator scenes, one room at a time (memory stays at one room)."""
    for name, path in tqdm(rooms.items(), desc='evaluate', unit='room'):
        room = read_room(data, name)
        pred = load_predictions(path)
        if pred['pred_masks'].shape[1] != len(room.semantic):
            raise HarnessError(f'{path}: masks over {pred["pred_masks"].shape[1]} points, room {name} '
                               f'has {len(room.semantic)}; predictions must cover all raw points')
        yield {'gt_semantic': np.asarray(room.semantic), 'gt_instance': np.asarray(room.instance), **pred}


def _json_float(x: float) -> float | None:
    """NaN (class without GT) as null: JSON has no NaN."""
    return None if math.isnan(x) else float(x)


def metrics_record(result: dict, **meta) -> dict:
    """JSON-ready metrics: means, per class, the full [C, 10] table and its thresholds."""
    return {
        'ap': _json_float(result['ap']), 'ap50': _json_float(result['ap50']),
        'ap25': _json_float(result['ap25']), 'ap75': _json_float(result['ap75']),
        'per_class': {name: {k: _json_float(v) for k, v in vals.items()}
                      for name, vals in result['per_class'].items()},
        'ap_table': [[_json_float(v) for v in row] for row in result['ap_table']],
        'overlaps': [float(o) for o in OVERLAPS],
        'protocol': 'OneFormer3D S3DIS instance AP (specs/instance-eval.md) + AP75',
        **meta,
    }


def format_table(result: dict) -> str:
    """Per class AP25 / AP50 / AP75 / AP in percent with one decimal, then the means."""
    def pct(x: float) -> str:
        return f'{"-":>7}' if math.isnan(x) else f'{100 * x:>7.1f}'
    head = f'{"class":<10}{"AP25":>7}{"AP50":>7}{"AP75":>7}{"AP":>7}'
    lines = [head, '-' * len(head)]
    for name, v in result['per_class'].items():
        lines.append(f'{name:<10}{pct(v["ap25"])}{pct(v["ap50"])}{pct(v["ap75"])}{pct(v["ap"])}')
    lines += ['-' * len(head), f'{"mean":<10}{pct(result["ap25"])}{pct(result["ap50"])}'
              f'{pct(result["ap75"])}{pct(result["ap"])}']
    return '\n'.join(lines)
