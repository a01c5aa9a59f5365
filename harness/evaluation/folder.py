"""Evaluate a folder of dumped predictions against prepared GT: the one evaluation every run goes through."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from harness.core.errors import HarnessError
from harness.data import CLASS_NAMES, list_rooms, read_room
from harness.data.content import room_problems, rooms_vs_manifest
from harness.data.layout import load_manifest
from harness.evaluation.ap import OVERLAPS, evaluate_instances
from harness.evaluation.predictions import load_predictions, prediction_files


def evaluate_folder(predictions: Path, data: Path, area: int) -> tuple[dict, dict]:
    """Evaluate a folder of <room>.npz against the prepared GT of one area.

    Returns:
        the evaluator's result and its JSON-ready metrics record.
    """
    check_data(data, area)
    rooms = check_rooms(list_rooms(data, area), prediction_files(predictions), predictions, data, area)
    result = evaluate_instances(scenes(data, rooms), CLASS_NAMES)
    return result, metrics_record(result, n_rooms=len(rooms), area=area, predictions=str(predictions),
                                  data=str(data))


def check_data(data: Path, area: int) -> None:
    """The area's GT as ``run`` checks it: every room of MANIFEST.json (where there is one) on disk and
    no other, and each room's content as the layout says (harness.data.content).

    Raises:
        HarnessError: the first problems, each naming the file and the fix.
    """
    manifest = load_manifest(data)
    problems = rooms_vs_manifest(data, manifest, [area], missing=True) if manifest is not None else []
    for name in list_rooms(data, area) if not problems else []:
        problems += room_problems(data, name)
    if problems:
        more = f' (+{len(problems) - 3} more)' if len(problems) > 3 else ''
        raise HarnessError('; '.join(problems[:3]) + more + f'; `python -m harness verify-data {data}` lists all')


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
        'ap50_instance_weighted': _json_float(result.get('ap50_instance_weighted', math.nan)),
        'gt_counted': result.get('gt_counted'),
        'overlaps': [float(o) for o in OVERLAPS],
        'protocol': 'OneFormer3D S3DIS instance AP (ScanNet protocol with upstream\'s changes) + AP75',
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
