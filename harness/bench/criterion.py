"""``python -m harness bench criterion``: forward+backward time of the arms' criteria at S3DIS shapes."""
from __future__ import annotations

import argparse
import csv
import io
import logging
import resource
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import torch
from influencerformer import registry
from tqdm import tqdm

from harness.study.arms import build_criterion, load_criteria
from harness.core.args import at_least
from harness.core.errors import HarnessError
from harness.core.io import atomic_write, check_out_file, result_line
from harness.bench.inputs import pred_leaves, random_gts, random_pred

HELP = "time forward+backward of the arms' criteria (vs Hungarian) at S3DIS shapes"
log = logging.getLogger(__name__)

# Goal of the matching-free study: at most Hungarian's cost on CPU, checked at the largest shape.
GOAL = {'cpu': 1.0, 'cuda': 1.0}
# the reference arm of every registered criterion (influencerformer.registry)
CRITERIA = tuple(e.arm for e in registry.CRITERIA)
FIELDS = ['device', 'criterion', 'n_points', 'n_gts', 'batch', 'n_queries', 'n_layers',
          'median_ms', 'min_ms', 'max_ms', 'repeats', 'peak_mem_mib', 'threads', 'torch',
          'ratio_vs_hungarian']


@dataclass
class Case:
    """One timed configuration. Defaults are upstream's S3DIS training shapes."""

    criterion: str
    n_points: int
    n_gts: int
    device: str
    batch: int = 2          # upstream's S3DIS batch size
    n_queries: int = 400    # upstream's num_instance_queries
    n_layers: int = 4       # iter_pred: final + 3 aux predictions
    warmup: int = 1
    repeats: int = 7


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the criterion benchmark."""
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu', help='where to run')
    parser.add_argument('--points', type=at_least(1), nargs='+', default=[20000, 50000],
                        help='voxels per scene (S3DIS rooms: tens of thousands)')
    parser.add_argument('--gts', type=at_least(1), nargs='+', default=[20, 60], help='GT instances per scene')
    parser.add_argument('--criteria', nargs='+', default=list(CRITERIA),
                        help='arms of baselines/criteria.yaml (hungarian is always timed: the reference)')
    parser.add_argument('--repeats', type=at_least(1), default=7, help='timed runs per case (median reported)')
    parser.add_argument('--warmup', type=at_least(0), default=1, help='untimed runs before timing')
    parser.add_argument('--out', type=Path, default=Path('results/bench'), help='folder for the CSV')
    parser.add_argument('--force', action='store_true', help='replace an existing CSV')


def run(args: argparse.Namespace) -> int:
    """Time every case, each in a fresh process (clean peak-memory reading)."""
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise HarnessError('--device cuda but torch.cuda.is_available() is False: install a CUDA '
                           'build of torch (README, "Installing on a GPU machine") or use --device cpu')
    if max(args.gts) > min(args.points):   # partition_masks gives each GT at least one point
        raise HarnessError(f'--gts {max(args.gts)} > --points {min(args.points)}: each GT needs a point of its own; '
                           'give --gts no larger than the smallest --points')
    criteria = ['hungarian'] + [c for c in args.criteria if c != 'hungarian']
    unknown = sorted(set(criteria) - set(load_criteria()))
    if unknown:
        raise HarnessError(f'--criteria {unknown} not in baselines/criteria.yaml')
    out = args.out / f'criterion-{args.device}.csv'
    check_out_file(out, args.force)   # before the timing, not after it (it makes --out: after the flags' checks)
    cases = [Case(crit, s, k, args.device, warmup=args.warmup, repeats=args.repeats)
             for s in args.points for k in args.gts for crit in criteria]
    rows = []
    for case in tqdm(cases, desc='bench criterion', unit='case'):
        with ProcessPoolExecutor(1, mp_context=get_context('spawn')) as pool:
            rows.append(pool.submit(measure, case).result())
    add_ratios(rows)
    atomic_write(out, to_csv(rows), overwrite=args.force)
    print(format_table(rows))
    return report(rows, args.device, out)


def measure(case: Case) -> dict:
    """Build inputs, warm up, then time ``repeats`` forward+backward passes.

    Returns:
        a CSV row (dict over FIELDS except the ratio).
    """
    crit = build_criterion(load_criteria()[case.criterion])  # baselines/criteria.yaml
    sizes = [case.n_points] * case.batch
    pred = random_pred(sizes, case.n_queries, n_aux=case.n_layers - 1, device=case.device)
    # S3DIS: every class is an instance class, so few points are background.
    gts = random_gts(sizes, [case.n_gts] * case.batch, bg_frac=0.05, device=case.device)
    tensors = pred_leaves(pred)

    def step() -> None:
        crit(pred, gts)['inst_loss'].backward()
        for t in tensors:
            t.grad = None
        if case.device == 'cuda':
            torch.cuda.synchronize()

    peak = peak_memory_of(step, case.device)
    for _ in range(case.warmup):
        step()
    times = []
    for _ in range(case.repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return {**{k: v for k, v in asdict(case).items() if k in FIELDS},
            'median_ms': round(statistics.median(times), 2), 'min_ms': round(min(times), 2),
            'max_ms': round(max(times), 2), 'peak_mem_mib': round(peak / 2**20, 1),
            'threads': torch.get_num_threads(), 'torch': torch.__version__}


def peak_memory_of(step, device: str) -> float:
    """Bytes above the inputs at the peak of one call of ``step`` (the first one).

    CUDA: max_memory_allocated growth. CPU: growth of the process's peak RSS
    over the RSS before the call (the inputs are built in place, so the call
    sets the high-water mark).
    """
    if device == 'cuda':
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        return torch.cuda.max_memory_allocated() - before
    before = _current_rss()
    step()
    return max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)


def _current_rss() -> float:
    """Resident set size in bytes (Linux /proc)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def add_ratios(rows: list[dict]) -> None:
    """Each criterion's median time over Hungarian's at the same shape, in place."""
    hungarian = {(r['n_points'], r['n_gts']): r['median_ms'] for r in rows if r['criterion'] == 'hungarian'}
    for r in rows:
        base = hungarian.get((r['n_points'], r['n_gts']))
        r['ratio_vs_hungarian'] = round(r['median_ms'] / base, 3) if base else ''


def to_csv(rows: list[dict]) -> str:
    """CSV text with the FIELDS columns."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def format_table(rows: list[dict]) -> str:
    """Fixed-width table for the terminal."""
    head = f"{'criterion':<22}{'S':>7}{'K':>4}{'median ms':>11}{'min ms':>9}{'peak MiB':>10}{'ratio':>7}"
    lines = [head, '-' * len(head)]
    for r in rows:
        lines.append(f"{r['criterion']:<22}{r['n_points']:>7}{r['n_gts']:>4}{r['median_ms']:>11.1f}"
                     f"{r['min_ms']:>9.1f}{r['peak_mem_mib']:>10.1f}{str(r['ratio_vs_hungarian']):>7}")
    return '\n'.join(lines)


def report(rows: list[dict], device: str, out: Path) -> int:
    """Print the goal check of every criterion at the largest shape and the RESULT line."""
    size = max((r['n_points'], r['n_gts']) for r in rows)
    ratios = {r['criterion']: r['ratio_vs_hungarian'] for r in rows
              if (r['n_points'], r['n_gts']) == size and r['criterion'] != 'hungarian'}
    for name, ratio in ratios.items():
        print(f"{name}/hungarian time at S={size[0]}, K={size[1]}: {ratio} "
              f"(goal <= {GOAL[device]} on {device}: {'met' if ratio != '' and ratio <= GOAL[device] else 'NOT met'})")
    print(result_line('bench criterion', 'ok', device=device, csv=str(out), ratios=ratios,
                      at={'n_points': size[0], 'n_gts': size[1]}, goal=GOAL[device]))
    return 0
