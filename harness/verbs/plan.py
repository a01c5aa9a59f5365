"""``python -m harness plan``: the run matrix of a spec, before anything runs."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from harness import backends
from harness.core.io import result_line
from harness.execution import underway
from harness.reporting.compare import main_runs
from harness.reporting.power import describe, needed, sizing
from harness.reporting.schedule import baseline_gains, describe_plateau
from harness.reporting.select import select
from harness.study import records
from harness.study.arms import BASELINE
from harness.study.matrix import RunPoint, run_matrix
from harness.study.spec import Spec
from harness.verbs.options import add_selection_arguments, selection

HELP = 'print the run matrix (arms x seeds x ablation points): run ids, state, estimated hours'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the plan verb."""
    parser.add_argument('--spec', type=Path, required=True, help='experiment spec')
    parser.add_argument('--runs', type=Path, default=Path('results/runs'),
                        help='run records: their state, and measured s/iteration for the estimate')
    add_selection_arguments(parser)
    parser.add_argument(underway.INTERIM_FLAG, action='store_true',
                        help="show the paired-difference SDs and the baseline's last-third gain of a study some of "
                             'whose runs are still under way (an interim look); hidden without it')


def measured(runs_dir: Path, experiment: str) -> dict[str, list[dict]]:
    """Finished runs of the experiment with timings, per arm."""
    out: dict[str, list[dict]] = {}
    if not Path(runs_dir).is_dir():
        return out
    for r in records.load_runs(runs_dir, []):   # a record with wrong fields estimates nothing
        if r['experiment'] == experiment and r['status'] == 'finished' and _timed(r.get('timing')):
            out.setdefault(r['arm'], []).append(r)
    return out


def _timed(timing: object) -> bool:
    """A record's timing gives an estimate: positive train_s and s_per_iter (a resumed session that
    trained 0 iterations records s_per_iter null)."""
    return isinstance(timing, dict) and all(
        isinstance(timing.get(key), (int, float)) and not isinstance(timing.get(key), bool) and timing[key] > 0
        for key in ('train_s', 's_per_iter'))


def estimate_hours(spec: Spec, point: RunPoint, timings: dict[str, list[dict]]) -> float | None:
    """s/iteration measured on this arm (else any arm) x planned iterations; else the mean training time."""
    pool = timings.get(point.arm) or [r for rs in timings.values() for r in rs]
    if not pool:
        return None
    iters = spec.part.planned_iterations(point)   # None where the spec does not fix them
    if iters:
        return float(np.mean([r['timing']['s_per_iter'] for r in pool])) * iters / 3600
    return float(np.mean([r['timing']['train_s'] for r in pool])) / 3600


def counted_runs(runs_dir: Path, experiment: str):
    """The experiment's counted main runs in ``runs_dir`` (compare's rules), or None."""
    if not Path(runs_dir).is_dir():
        return None
    mine = [r for r in records.load_runs(runs_dir, []) if r['experiment'] == experiment]
    return main_runs(select(mine).runs) if mine else None


def state(runs_dir: Path, point: RunPoint) -> tuple[str, int]:
    """(status of the latest attempt or 'to run', attempts so far)."""
    folders = records.attempts(runs_dir, point.run_id) if Path(runs_dir).is_dir() else []
    if not folders:
        return 'to run', 0
    return records.load_record(folders[-1] / 'run.json')['status'], len(folders)


def run(args: argparse.Namespace) -> int:
    """Print one line per run and the totals, then the sizing; nothing is derived or trained."""
    spec, _ = backends.load(args.spec)
    points = run_matrix(spec, selection(args))
    states, todo, todo_hours, unmeasured = matrix_table(spec, points, args.runs)
    seeds_needed, gains, running = sizing_section(spec, args.runs, args.interim)
    print(result_line('plan', 'ok', experiment=spec.experiment, seeds_needed=seeds_needed, under_way=running,
                      last_third_gain=round(float(np.mean(list(gains.values()))), 2) if gains else None,
                      runs=len(points), states=states, to_do=todo,
                      hours_to_do=round(todo_hours, 3) if unmeasured < todo or not todo else None,
                      unestimated=unmeasured))
    return 0


def matrix_table(spec: Spec, points: list[RunPoint], runs: Path) -> tuple[dict[str, int], int, float, int]:
    """Print the run matrix and its totals; returns (runs per state, runs to do, their estimated
    hours one after another, how many of them could not be estimated)."""
    timings = measured(runs, spec.experiment)
    if not Path(runs).is_dir():
        print(f'note: --runs {runs} does not exist (yet): every run shows as to run; check the path if this study '
              'has runs')
    print(f'{"#":>4}  {"run id":<58} {"arm":<26} {"seed":>4}  {"ablation":<34} {"state":<14} {"est. h":>7}')
    todo_hours, unmeasured, todo, states = 0.0, 0, 0, {}
    for i, p in enumerate(points, 1):
        (status, n), hours = state(runs, p), estimate_hours(spec, p, timings)
        states[status] = states.get(status, 0) + 1
        shown = status + (f' ({n} att.)' if n > 1 else '')
        abl = ', '.join(f'{k}={v}' for k, v in p.ablation_dict.items()) or '-'
        print(f'{i:>4}  {p.run_id:<58} {p.arm:<26} {p.seed:>4}  {abl:<34} {shown:<14} '
              f'{"?" if hours is None else f"{hours:.2f}":>7}')
        if status != 'finished':
            todo += 1
            todo_hours += hours or 0.0
            unmeasured += hours is None
    if todo and unmeasured == todo:
        total = 'unknown (no finished run of this experiment in --runs to measure s/iteration from)'
    else:
        total = f'{todo_hours:.2f} h' + (f' + {unmeasured} runs not estimated' if unmeasured else '')
        at_once = min(spec.slurm.array_parallelism, todo)
        if at_once > 1:   # the sum is one run after another; Slurm trains up to array_parallelism at once
            total += f' one after another, ~{todo_hours / at_once:.1f} h with Slurm ({at_once} at a time)'
    print(f'\n{len(points)} runs ({", ".join(f"{v} {k}" for k, v in sorted(states.items()))}); '
          f'{todo} to do, estimated {total}')
    if set(states) - {'to run'}:   # plan derives nothing: a record made under an older spec shows its own state
        print(f'states are the records\' own: `python -m harness status --spec {spec.path} --runs {runs}` checks '
              'each against the spec as it is now (a run whose config changed: refused)')
    return states, todo, todo_hours, unmeasured


def sizing_section(spec: Spec, runs: Path, interim: bool) -> tuple[int | None, dict, int]:
    """Print the seeds the question needs and the baseline's last-third gain, from the finished runs
    (hidden while the study is under way, unless ``interim``: then labelled); returns (seeds needed,
    gain per seed, runs still under way)."""
    seeds_needed, counted = None, counted_runs(runs, spec.experiment)
    running = underway.unfinished(runs, spec.experiment) if counted is not None else []
    hidden = running and not interim
    if running:
        # the study is under way: SDs and gains from its finished runs are interim results
        print('\n' + underway.describe(runs, spec.experiment, running) + (
            '; INTERIM LOOK: the figures below are not the study\'s' if interim else
            f'; power and schedule figures from its finished runs are hidden until then ({underway.INTERIM_FLAG} '
            'shows them)'))
    if hidden:
        counted = None
    if spec.question is not None:
        rows = sizing(spec.question, counted)
        if rows or not hidden:   # hidden: "no finished paired runs" would not be true
            print('\n' + '\n'.join(describe(spec.question, rows)))
        seeds_needed = needed(rows)
    gains = baseline_gains(counted, BASELINE) if counted is not None and not counted.empty else {}
    if counted is not None and not counted.empty:
        final = 100 * float(counted.loc[counted['arm'] == BASELINE, 'ap50'].mean()) if gains else None
        print(describe_plateau(BASELINE, gains, final))
    return seeds_needed, gains, len(running)
