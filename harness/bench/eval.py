"""``python -m harness bench eval``: evaluator throughput on an S3DIS-Area-5-sized workload."""
from __future__ import annotations

import argparse
import contextlib
import io
import time
import types
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from harness.data import CLASS_NAMES
from harness.core.args import at_least
from harness.core.errors import HarnessError
from harness.evaluation.ap import evaluate_instances
from harness.core.io import atomic_write, check_out_file, result_line

HELP = 'time the instance-AP evaluator (and optionally upstream\'s) on a generated workload'
GOAL = 20.0  # issue goal: >= 20x faster than upstream's evaluator
# Expected instances per room and class, shaped like S3DIS office rooms (one
# ceiling and floor, many walls, chairs and clutter). A guess, not measured on
# S3DIS (it cannot be downloaded here); 'uniform' draws classes evenly.
S3DIS_LIKE = np.array([1, 1, 6, 1, 1, 1, 2, 2, 6, 0.3, 2, 0.5, 8])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the evaluator benchmark (defaults: S3DIS Area 5 sizes)."""
    parser.add_argument('--rooms', type=at_least(1), default=68, help='rooms (Area 5 has 68)')
    parser.add_argument('--preds', type=at_least(1), default=200, help='predictions per room')
    parser.add_argument('--points', type=int, default=100_000, help='points per room')
    parser.add_argument('--seed', type=at_least(0, '; numpy seeds are non-negative'), default=0,
                        help='workload seed')
    parser.add_argument('--composition', choices=['s3dis-like', 'uniform'], default='s3dis-like',
                        help='class mix of GT instances (upstream\'s cost grows with same-class GTs)')
    parser.add_argument('--upstream-root', type=Path, default=None,
                        help='OneFormer3D checkout: also time its evaluator on the same workload')
    parser.add_argument('--out', type=Path, default=Path('results/bench'), help='folder for eval-<composition>.csv')
    parser.add_argument('--force', action='store_true', help='replace an existing CSV')


def synthetic_scene(rng: np.random.Generator, n_preds: int, n_points: int,
                    composition: str = 's3dis-like') -> dict:
    """One room: 25-54 contiguous GT instances, predictions = noisy GT copies sorted by score."""
    n_inst = int(rng.integers(25, 55))
    weights = S3DIS_LIKE if composition == 's3dis-like' else np.ones(len(CLASS_NAMES))
    if n_points < 20 * 55:
        raise HarnessError(f'--points {n_points}: use at least {20 * 55} (up to 54 instances of >= 20 points)')
    # 20 points each, the rest shared with varied sizes (walls large, chairs small)
    sizes = 20 + (rng.dirichlet(np.full(n_inst, 0.7)) * (n_points - 20 * n_inst)).astype(int)
    sizes[-1] += n_points - sizes.sum()
    sem = np.repeat(rng.choice(len(CLASS_NAMES), n_inst, p=weights / weights.sum()), sizes)
    inst = np.repeat(np.arange(1, n_inst + 1), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    masks = np.zeros((n_preds, n_points), bool)
    labels = np.empty(n_preds, np.int64)
    for i, k in enumerate(rng.integers(0, n_inst, n_preds)):
        a, b = starts[k], starts[k + 1]
        keep = rng.random(b - a) < rng.uniform(0.5, 1.0)
        masks[i, a:b] = keep
        spill = int((b - a) * rng.uniform(0, 0.3))  # leak into the next points
        masks[i, b:b + spill] = True
        labels[i] = sem[a] if rng.random() < 0.8 else rng.integers(0, len(CLASS_NAMES))
    scores = np.sort(rng.random(n_preds))[::-1].copy()
    return {'gt_semantic': sem, 'gt_instance': inst, 'pred_masks': masks,
            'pred_labels': labels, 'pred_scores': scores}


def run(args: argparse.Namespace) -> int:
    """Time ours (generation excluded); optionally upstream on identical scenes."""
    out = args.out / f'eval-{args.composition}.csv'
    check_out_file(out, args.force)   # before the timing, not after it
    upstream = _upstream_evaluator(args.upstream_root) if args.upstream_root is not None else None
    timer = {'gen': 0.0}
    start = time.perf_counter()
    ours = evaluate_instances(_timed_scenes(args, timer), CLASS_NAMES)
    ours_s = time.perf_counter() - start - timer['gen']
    rows = [_row('harness', args, ours_s, ours)]
    if upstream is not None:
        up_s, up = _time_upstream(args, upstream)
        rows.append(_row('upstream', args, up_s, up))
        diff = max(abs(ours[k] - up[k]) for k in ('ap', 'ap50', 'ap25'))
        print(f'|ours - upstream| over ap/ap50/ap25: {diff:.2e}')
    atomic_write(out, _csv(rows), overwrite=args.force)
    for r in rows:
        print(f"{r['evaluator']:<9} {r['seconds']:>8.2f} s  {r['points_per_s']:>14,.0f} points/s  "
              f"AP50 {100 * r['ap50']:.1f}")
    ratio = rows[1]['seconds'] / ours_s if len(rows) > 1 else None
    if ratio is not None:
        print(f'speed-up over upstream: {ratio:.1f}x (goal >= {GOAL:.0f}x: {"met" if ratio >= GOAL else "NOT met"})')
    print(result_line('bench eval', 'ok', csv=str(out), points_per_s=round(rows[0]['points_per_s']),
                      speedup_vs_upstream=round(ratio, 2) if ratio else None))
    return 0


def _scenes(args: argparse.Namespace) -> Iterator[dict]:
    """The workload, deterministic for --seed, one room at a time."""
    rng = np.random.default_rng(args.seed)
    for _ in range(args.rooms):
        yield synthetic_scene(rng, args.preds, args.points, args.composition)


def _timed_scenes(args: argparse.Namespace, timer: dict) -> Iterator[dict]:
    """The workload with a progress bar; generation time accumulated in ``timer['gen']``."""
    gen = _scenes(args)
    for _ in tqdm(range(args.rooms), desc='bench eval', unit='room'):
        t0 = time.perf_counter()
        scene = next(gen)
        timer['gen'] += time.perf_counter() - t0
        yield scene


def _upstream_evaluator(root: Path) -> types.ModuleType:
    """Upstream's instance_seg_eval module from the checkout at ``root`` (checked before any timing)."""
    from harness.backends.upstream.reference import upstream_module
    return upstream_module(root, 'instance_seg_eval')


def _time_upstream(args: argparse.Namespace, ise: types.ModuleType) -> tuple[float, dict]:
    """Upstream's instance_seg_eval on the same scenes (materialised: it takes lists)."""
    import torch

    scenes = list(_scenes(args))
    inputs = ([s['gt_semantic'] for s in scenes], [s['gt_instance'].copy() for s in scenes],
              [torch.from_numpy(s['pred_masks']) for s in scenes],
              [torch.from_numpy(s['pred_labels']) for s in scenes],
              [torch.from_numpy(s['pred_scores']) for s in scenes])
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # upstream prints its own table
        m = ise.instance_seg_eval(*inputs, valid_class_ids=tuple(range(len(CLASS_NAMES))),
                                  class_labels=list(CLASS_NAMES))
    return time.perf_counter() - start, {'ap': m['all_ap'], 'ap50': m['all_ap_50%'], 'ap25': m['all_ap_25%']}


def _row(name: str, args: argparse.Namespace, seconds: float, metrics: dict) -> dict:
    """One CSV row."""
    return {'evaluator': name, 'composition': args.composition, 'rooms': args.rooms,
            'preds_per_room': args.preds,
            'points_per_room': args.points, 'seconds': round(seconds, 3),
            'points_per_s': args.rooms * args.points / seconds, 'ap50': metrics['ap50']}


def _csv(rows: list[dict]) -> str:
    """CSV text of the rows."""
    keys = list(rows[0])
    lines = [','.join(keys)] + [','.join(f'{r[k]:.6g}' if isinstance(r[k], float) else str(r[k])
                                         for k in keys) for r in rows]
    return '\n'.join(lines) + '\n'
