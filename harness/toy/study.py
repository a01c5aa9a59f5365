"""``python -m harness study toy``: criteria optimised directly on free parameters.

A set-prediction problem with no network in between: M free query masks
(logits over S points), class logits and objectness scores, one scene with K
disjoint GT instances (and optionally background), Adam lr 0.05. Whatever a
criterion drives free parameters to is what it asks of a network. This is
where the original Influencer formulation's degenerate optimum shows
(docs/influencer-loss.md).
"""
from __future__ import annotations

import argparse
import itertools
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from influencerformer import InstanceGT, registry

from harness.study.arms import build_criterion, canonical, load_criteria
from harness.core.args import at_least
from harness.core.errors import HarnessError
from harness.core.io import atomic_write, head, result_line, writable_folder
from harness.toy import plots as toy_plots

HELP = 'toy study: recovery of GT instances per criterion over a grid of queries x instances'
# The reference arm of every registered criterion (influencerformer.registry); any other arm of
# baselines/criteria.yaml (a variant) can be given with --criteria.
CRITERIA = tuple(e.arm for e in registry.CRITERIA)
POINTS_PER_INSTANCE = 30   # S = 30 K (150 points for K = 5; tests use the 300-point toy)
LR = 0.05                  # the setting
# The grid. 600 steps keep it within 10 minutes on 2 cores; the base toy (8 queries,
# 5 instances) has settled by then (see the curves).
GRID = {'queries': [8, 50, 400], 'instances': [5, 20, 60], 'seeds': 5, 'steps': 600}
QUICK = {'queries': [8], 'instances': [5], 'seeds': 1, 'steps': 200}
OUTPUTS = ('runs.csv', 'curves.csv', 'summary.md')
TITLE = '# Toy study: free parameters, one scene'   # summary.md's first line: render replaces only its own
SUMMARY_COLUMNS = ['recovered_90', 'recovered_90_right_class', 'recovered_50', 'best_iou_mean', 'best_iou_min',
                   'duplicate_claims', 'query_coverage', 'steps_to_recovery', 'ms_per_step']
# what summarise and the plots read of each table
NEEDED = {'runs.csv': ['criterion', 'queries', 'instances', 'background', 'seed', 'steps', 'best_ious',
                       *SUMMARY_COLUMNS],
          'curves.csv': ['criterion', 'queries', 'instances', 'step', 'recovered_90']}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the toy study (defaults: the issue's grid)."""
    parser.add_argument('--out', type=Path, default=Path('results/toy'), help='CSV and plots go here')
    # None: GRID's value (or QUICK's with --quick), so that a flag --quick would override is refused.
    # Counts are >= 1: 0 seeds, steps or queries leave nothing to run or measure.
    count = at_least(1)
    parser.add_argument('--queries', type=count, nargs='+', default=None, help=f"M values (default {GRID['queries']})")
    parser.add_argument('--instances', type=count, nargs='+', default=None,
                        help=f"K values (default {GRID['instances']})")
    parser.add_argument('--seeds', type=count, default=None, help=f"seeds per grid cell (default {GRID['seeds']})")
    parser.add_argument('--steps', type=count, default=None, help=f"Adam steps per run (default {GRID['steps']})")
    parser.add_argument('--eval-every', type=count, default=25, help='steps between recovery measurements')
    parser.add_argument('--criteria', nargs='+', default=list(CRITERIA), help='arms of baselines/criteria.yaml')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='parallel runs')
    parser.add_argument('--quick', action='store_true', help='tiny grid for tests (8 queries, 5 instances, 1 seed, '
                        '200 steps, with background); not with --queries, --instances, --seeds or --steps')
    parser.add_argument('--force', action='store_true', help='replace existing results in --out')
    parser.add_argument('--render', action='store_true',
                        help="re-render --out's summary.md and plots from its runs.csv and curves.csv (nothing "
                             'trains; arms renamed since show their current names)')


def problem(n_instances: int, background: bool, seed: int) -> InstanceGT:
    """K disjoint instances of similar size over S = 30 K points (20% background if asked)."""
    gen = torch.Generator().manual_seed(seed)
    n_points = POINTS_PER_INSTANCE * n_instances
    owner = torch.randint(0, n_instances, (n_points,), generator=gen)
    owner[:n_instances] = torch.arange(n_instances)
    if background:
        bg = torch.rand(n_points, generator=gen) < 0.2
        bg[:n_instances] = False
        owner[bg] = -1
    return InstanceGT(owner[None] == torch.arange(n_instances)[:, None], torch.randint(0, 13, (n_instances,), generator=gen))


def ious(masks: torch.Tensor, sp: torch.Tensor) -> torch.Tensor:
    """(M, K) IoU of binarised query masks with GT masks."""
    b = (masks >= 0).float()
    inter = b @ sp.float().T
    return inter / (b.sum(1)[:, None] + sp.sum(1)[None] - inter).clamp_min(1)


def train(criterion: str, n_queries: int, n_instances: int, background: bool, seed: int,
          steps: int, eval_every: int) -> dict:
    """One run; returns its metrics row and its recovery curve."""
    torch.set_num_threads(1)  # runs are parallel across processes
    gt = problem(n_instances, background, seed)
    crit = build_criterion(load_criteria()[criterion])
    gen = torch.Generator().manual_seed(10_000 + seed)
    masks = (torch.randn(n_queries, gt.sp_masks.shape[1], generator=gen) * 0.1).requires_grad_()
    cls = torch.zeros(n_queries, 14, requires_grad=True)
    score = torch.zeros(n_queries, 1, requires_grad=True)
    # each query's anchor point (read by the anchored criteria only): drawn uniformly, as the native model does
    anchors = torch.randint(0, gt.sp_masks.shape[1], (n_queries,), generator=gen)
    opt = torch.optim.Adam([masks, cls, score], lr=LR)
    curve, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        opt.zero_grad()
        crit({'cls_preds': [cls], 'scores': [score], 'masks': [masks], 'query_anchors': [anchors]},
             [gt])['inst_loss'].backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            best = ious(masks.detach(), gt.sp_masks).max(0).values
            curve.append({'step': step, 'recovered_50': float((best >= 0.5).float().mean()),
                          'recovered_90': float((best >= 0.9).float().mean())})
    per_step = (time.perf_counter() - start) / steps
    row = metrics(masks.detach(), cls.detach(), gt, curve, n_queries)
    row.update(criterion=criterion, queries=n_queries, instances=n_instances, background=background,
               seed=seed, steps=steps, ms_per_step=1e3 * per_step)
    return {'row': row, 'curve': [{**c, **{k: row[k] for k in ('criterion', 'queries', 'instances',
                                                              'background', 'seed')}} for c in curve]}


def metrics(masks: torch.Tensor, cls: torch.Tensor, gt: InstanceGT, curve: list[dict], n_queries: int) -> dict:
    """Best IoU per GT, recovery, duplicate claims, coverage, class accuracy, steps to recovery."""
    iou = ious(masks, gt.sp_masks)
    best, best_q = iou.max(0)
    claims = (iou > 0.5).sum(0)
    reachable = min(1.0, n_queries / len(gt))   # fewer queries than GTs cap recovery
    reached = [c['step'] for c in curve if c['recovered_90'] >= reachable - 1e-9]
    right = cls[best_q].argmax(1) == gt.labels_3d
    return {'best_iou_mean': float(best.mean()), 'best_iou_min': float(best.min()),
            'recovered_50': float((best >= 0.5).float().mean()), 'recovered_90': float((best >= 0.9).float().mean()),
            'recovered_90_right_class': float(((best >= 0.9) & right).float().mean()),
            'duplicate_claims': int((claims - 1).clamp_min(0).sum()),
            'query_coverage': float((masks >= 0).float().mean(1).mean()),
            'steps_to_recovery': reached[0] if reached else np.nan,
            'best_ious': ' '.join(f'{v:.3f}' for v in best.tolist())}


def settings(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the grid's flags filled in (GRID's values, or QUICK's with --quick); --criteria (by
    their current names: an old name is its arm), --queries and --instances without repeats.

    Raises:
        HarnessError: --quick with a flag it fixes (it would be ignored).
    """
    given = [f'--{k}' for k in GRID if getattr(args, k) is not None]
    if args.quick and given:
        raise HarnessError(f"--quick fixes the grid ({QUICK['steps']} steps, 8 queries, 5 instances, 1 seed); "
                           f"leave out {' '.join(given)}, or leave out --quick")
    fill = QUICK if args.quick else GRID
    filled = {k: fill[k] if getattr(args, k) is None else getattr(args, k) for k in GRID}
    return argparse.Namespace(**{**vars(args), **filled, 'queries': list(dict.fromkeys(filled['queries'])),
                                 'instances': list(dict.fromkeys(filled['instances'])),
                                 'criteria': list(dict.fromkeys(canonical(c) for c in args.criteria))})


def grid(args: argparse.Namespace) -> list[tuple]:
    """(criterion, M, K, background, seed) for every run (--quick: the background scene only)."""
    backgrounds = (True,) if args.quick else (False, True)
    return list(itertools.product(args.criteria, args.queries, args.instances, backgrounds, range(args.seeds)))


def run(args: argparse.Namespace) -> int:
    """Every run of the grid in parallel; tidy CSVs and plots (or, with --render, the tables and plots only)."""
    if args.render:
        return render(args.out, args.force)
    args = settings(args)
    unknown = set(args.criteria) - set(load_criteria())
    if unknown:
        raise HarnessError(f'--criteria {sorted(unknown)} not in baselines/criteria.yaml')
    existing = [name for name in OUTPUTS if (args.out / name).exists()]
    if existing and not args.force:   # every output, before minutes of training
        raise HarnessError(f"{args.out}: {', '.join(existing)} exist(s); pass --force to replace them or choose "
                           'another --out')
    writable_folder(args.out)   # before minutes of training, not after
    steps = args.steps
    jobs, rows, curves = grid(args), [], []
    start = time.perf_counter()
    with ProcessPoolExecutor(max(1, args.workers)) as pool, tqdm(total=len(jobs), desc='study toy', unit='run') as bar:
        for future in as_completed([pool.submit(train, *job, steps, args.eval_every) for job in jobs]):
            out = future.result()
            rows.append(out['row'])
            curves += out['curve']
            bar.update()
    runs = pd.DataFrame(rows).sort_values(['criterion', 'queries', 'instances', 'background', 'seed'])
    curve = pd.DataFrame(curves)
    atomic_write(args.out / 'runs.csv', runs.to_csv(index=False), overwrite=args.force)
    atomic_write(args.out / 'curves.csv', curve.to_csv(index=False), overwrite=args.force)
    summary = summarise(runs)
    atomic_write(args.out / 'summary.md', summary, overwrite=args.force)
    figures = toy_plots.render_all(runs, curve, args.out / 'plots')
    print(summary)
    print(result_line('study toy', 'ok', out=str(args.out), runs=len(runs),
                      minutes=round((time.perf_counter() - start) / 60, 2), figures=[str(f) for f in figures]))
    return 0


def render(out: Path, force: bool = False) -> int:
    """summary.md and plots again from ``out``'s CSVs, a pure function of them (as compare is of run records);
    a summary.md the study did not write is replaced only with ``force``."""
    if not (out / 'runs.csv').exists() or not (out / 'curves.csv').exists():
        raise HarnessError(f'{out}: no runs.csv and curves.csv to render; run the toy study into it first')
    summary_path = out / 'summary.md'
    if summary_path.is_file() and not force and head(summary_path)[0].rstrip() != TITLE:
        raise HarnessError(f'{summary_path}: not written by the toy study; move it away, or pass --force to '
                           'replace it')
    runs, curve = (read_table(out / name) for name in ('runs.csv', 'curves.csv'))
    runs['criterion'] = runs['criterion'].map(canonical)     # the CSVs keep the names the runs had
    curve['criterion'] = curve['criterion'].map(canonical)
    summary = summarise(runs)
    atomic_write(out / 'summary.md', summary, overwrite=True)
    figures = toy_plots.render_all(runs, curve, out / 'plots')
    print(result_line('study toy', 'rendered', out=str(out), runs=len(runs), figures=[str(f) for f in figures]))
    return 0


def read_table(path: Path) -> pd.DataFrame:
    """One of the study's CSVs, with at least one row; else a one-line error naming it."""
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise HarnessError(f'{path}: not a toy study table ({str(err).splitlines()[0]}); '
                           'run the toy study into this folder again (--force)') from err
    missing = [c for c in NEEDED[path.name] if c not in table]
    if table.empty or missing:
        raise HarnessError(f'{path}: ' + ('no rows' if table.empty else f'no column {missing[0]}') + '; not a toy '
                           'study table: run the toy study into this folder again (--force)')
    return table


def summarise(runs: pd.DataFrame) -> str:
    """Markdown: per criterion, mean over the grid; then the base toy (8 queries, 5 instances)."""
    at = SUMMARY_COLUMNS.index('steps_to_recovery') + 1
    cols = [*SUMMARY_COLUMNS[:at], 'runs_recovered', *SUMMARY_COLUMNS[at:]]
    runs = runs.assign(runs_recovered=runs['steps_to_recovery'].notna().astype(float))
    lines = [TITLE, '',
             f'{runs["seed"].nunique()} seeds per cell, {int(runs["steps"].iloc[0])} Adam steps (lr {LR}); '
             'recovered_90 = fraction of GTs whose best query has IoU >= 0.9; steps_to_recovery = mean over the '
             'runs that recovered every reachable GT, runs_recovered = the fraction of runs that did.', '']
    for title, part in (('All grid cells', runs),
                        ('Base toy: 8 queries, 5 instances', runs[(runs.queries == 8) & (runs.instances == 5)])):
        if part.empty:
            continue
        table = part.groupby('criterion')[cols].mean()
        lines += [f'## {title}', '', '| criterion | ' + ' | '.join(cols) + ' |', '|---' * (len(cols) + 1) + '|']
        # no run recovered: no steps to average (a dash, as diagnose shows undefined rates)
        lines += [f'| {name} | ' + ' | '.join('–' if pd.isna(v) else f'{v:.3g}' for v in row) + ' |'
                  for name, row in table.iterrows()]
        lines.append('')
    return '\n'.join(lines) + '\n'
