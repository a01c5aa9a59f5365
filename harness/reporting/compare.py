"""``python -m harness compare``: comparison tables and plots, a pure function of run records."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from harness.reporting import plots
from harness.core.errors import HarnessError
from harness.core.io import atomic_write, result_line
from harness.study.records import load_metrics, load_runs

HELP = 'tables (comparison, per class) and plots from run records; re-renders without re-training'
METRICS = ('ap25', 'ap50', 'ap75', 'ap')           # paper order
LABEL = {'ap25': 'AP25', 'ap50': 'AP50', 'ap75': 'AP75', 'ap': 'mAP'}
BASELINE = 'hungarian'                              # the arm every other arm is compared with


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the compare verb."""
    parser.add_argument('--runs', type=Path, default=Path('results/runs'), help='folder of run records')
    parser.add_argument('--experiment', default=None, help='experiment to compare (needed if several)')
    parser.add_argument('--out', type=Path, default=Path('results'), help='where tables and plots/ go')
    parser.add_argument('--published', type=Path, default=Path('baselines/published.yaml'),
                        help='published reference numbers')
    parser.add_argument('--resamples', type=int, default=10_000, help='bootstrap resamples for the CI')
    parser.add_argument('--bootstrap-seed', type=int, default=0, help='fixed, so CIs are reproducible')


def run(args: argparse.Namespace) -> int:
    """Build every table and plot of one experiment from its records."""
    records = load_runs(args.runs)
    experiment = pick_experiment(records, args.experiment, args.runs)
    included, excluded = split_runs([r for r in records if r['experiment'] == experiment])
    if included.empty:
        raise HarnessError(f'{args.runs}: no finished run with metrics.json for {experiment}; '
                           'train and evaluate first (not included: ' + '; '.join(excluded) + ')')
    published = load_published(args.published, experiment)
    summary = summarise(included, args.resamples, args.bootstrap_seed)
    per_class = per_class_table(included)
    out = args.out
    atomic_write(out / 'comparison.csv', summary.to_csv(index=False), overwrite=True)
    atomic_write(out / 'comparison.md', comparison_md(experiment, summary, included, published, excluded),
                 overwrite=True)
    atomic_write(out / 'per_class.csv', per_class.to_csv(index=False), overwrite=True)
    atomic_write(out / 'per_class.md', per_class_md(experiment, per_class), overwrite=True)
    figures = plots.render_all(included, per_class, published, out / 'plots')
    print((out / 'comparison.md').read_text())
    print(result_line('compare', 'ok', experiment=experiment, runs=len(included), excluded=len(excluded),
                      out=str(out), figures=[str(f) for f in figures]))
    return 0


def pick_experiment(records: list[dict], wanted: str | None, runs: Path) -> str:
    """The one experiment to compare; several without --experiment is an error (never mixed)."""
    names = sorted({r['experiment'] for r in records})
    if wanted is not None:
        if wanted not in names:
            raise HarnessError(f'{runs}: no runs of experiment {wanted!r}; found {names}')
        return wanted
    if len(names) != 1:
        raise HarnessError(f'{runs}: runs of {len(names)} experiments {names}; pick one with --experiment')
    return names[0]


def split_runs(records: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """Finished runs with metrics (latest attempt per run id) and a line for every other record."""
    rows, excluded = {}, []
    for r in sorted(records, key=lambda r: (r['run_id'], r['attempt'])):
        metrics = load_metrics(r['_dir']) if r['status'] == 'finished' else None
        if metrics is None:
            why = r['status'] if r['status'] != 'finished' else 'finished but no metrics.json'
            error = f" ({r['error']})" if r.get('error') else ''
            excluded.append(f"{r['run_id']} attempt {r['attempt']}: {why}{error}")
            continue
        if r['run_id'] in rows:
            excluded.append(f"{r['run_id']} attempt {rows[r['run_id']]['attempt']}: superseded by a later attempt")
        iterations = r.get('iterations')
        s_per_iter = (r.get('timing') or {}).get('s_per_iter') or (
            r['wall_s'] / iterations if iterations and r.get('wall_s') else None)
        rows[r['run_id']] = {'run_id': r['run_id'], 'attempt': r['attempt'], 'arm': r['arm'],
                             'seed': r['seed'], 'dir': r['_dir'], 'wall_s': r.get('wall_s'),
                             'iterations': iterations, 's_per_iter': s_per_iter,
                             'criterion_ms': (r.get('timing') or {}).get('criterion_ms'),
                             **{m: metrics[m] for m in METRICS}, 'per_class': metrics['per_class']}
    return pd.DataFrame(list(rows.values())), excluded


def paired_bootstrap(diffs: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile CI of the mean of paired differences (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), (resamples, len(diffs)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise(runs: pd.DataFrame, resamples: int, seed: int) -> pd.DataFrame:
    """One row per arm (mean, std, seeds), then one delta row per arm vs hungarian."""
    rows = []
    for arm, group in runs.groupby('arm', sort=False):
        group = group.sort_values('seed')
        row = {'row': arm, 'kind': 'arm', 'n': len(group), 'seeds': ' '.join(map(str, group['seed'])),
               'wall_s': group['wall_s'].mean(), 's_per_iter': group['s_per_iter'].mean()}
        for m in METRICS:
            vals = group[m].astype(float).to_numpy()
            row.update({f'{m}_mean': vals.mean(), f'{m}_std': vals.std(ddof=1) if len(vals) > 1 else float('nan'),
                        f'{m}_values': ' '.join(f'{v:.4f}' for v in vals)})
        rows.append(row)
    base = runs[runs['arm'] == BASELINE].set_index('seed')
    for arm in [a for a in runs['arm'].unique() if a != BASELINE and len(base)]:
        other = runs[runs['arm'] == arm].set_index('seed')
        seeds = sorted(set(base.index) & set(other.index))
        row = {'row': f'{arm} - {BASELINE}', 'kind': 'delta', 'n': len(seeds), 'seeds': ' '.join(map(str, seeds))}
        for m in METRICS:
            diffs = (other.loc[seeds, m].astype(float) - base.loc[seeds, m].astype(float)).to_numpy()
            low, high = paired_bootstrap(diffs, resamples, seed) if len(seeds) >= 2 else (float('nan'),) * 2
            row.update({f'{m}_mean': diffs.mean() if len(seeds) else float('nan'),
                        f'{m}_ci_low': low, f'{m}_ci_high': high,
                        f'{m}_values': ' '.join(f'{v:+.4f}' for v in diffs)})
        rows.append(row)
    return pd.DataFrame(rows)


def load_published(path: Path, experiment: str) -> dict | None:
    """The published reference for this experiment, or None."""
    if not Path(path).exists():
        return None
    try:
        table = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise HarnessError(f'{path}: not valid YAML ({err})') from err
    return table.get(experiment)


def per_class_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Class x arm means over seeds of AP25 / AP50 / AP75 (fractions; NaN where no GT)."""
    rows = []
    for arm, group in runs.groupby('arm', sort=False):
        for name in group['per_class'].iloc[0]:
            row = {'class': name, 'arm': arm}
            for m in ('ap25', 'ap50', 'ap75'):
                vals = [pc[name][m] for pc in group['per_class'] if pc[name][m] is not None]
                row[m] = float(np.mean(vals)) if vals else float('nan')
            rows.append(row)
    return pd.DataFrame(rows)


def pct(x: float | None, signed: bool = False) -> str:
    """Percent with one decimal, like papers; '–' for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return '–'
    return f'{100 * x:+.1f}' if signed else f'{100 * x:.1f}'


def comparison_md(experiment: str, summary: pd.DataFrame, runs: pd.DataFrame,
                  published: dict | None, excluded: list[str]) -> str:
    """GitHub-readable comparison: arms, deltas with CI, published row, per-seed values, exclusions."""
    head = '| | seeds | ' + ' | '.join(LABEL[m] for m in METRICS) + ' | wall / run | s / iter |'
    lines = [f'# {experiment}: instance segmentation, last checkpoint', '', head,
             '|' + '---|' * (len(METRICS) + 4)]
    for r in summary.itertuples():
        r = r._asdict()
        if r['kind'] == 'arm':
            cells = [f"{pct(r[f'{m}_mean'])} ± {pct(r[f'{m}_std'])}" if r['n'] > 1 else pct(r[f'{m}_mean'])
                     for m in METRICS]
            wall = f"{r['wall_s'] / 3600:.2f} h" if r['wall_s'] >= 3600 else f"{r['wall_s']:.0f} s"
            spi = f"{r['s_per_iter']:.2f}" if not math.isnan(r['s_per_iter']) else '–'
            lines.append(f"| {r['row']} | {r['n']} | " + ' | '.join(cells) + f' | {wall} | {spi} |')
        else:
            cells = [f"{pct(r[f'{m}_mean'], True)} [{pct(r[f'{m}_ci_low'], True)}, {pct(r[f'{m}_ci_high'], True)}]"
                     if r['n'] >= 2 else f"{pct(r[f'{m}_mean'], True)}, CI n/a (1 seed)" for m in METRICS]
            lines.append(f"| Δ {r['row']} | {r['n']} paired | " + ' | '.join(cells) + ' | | |')
    if published:
        vals = [pct(published['metrics'].get(m) / 100 if published['metrics'].get(m) is not None else None)
                for m in METRICS]
        lines.append(f"| {published['label']} | – | " + ' | '.join(vals) + ' | | |')
    lines += ['', 'Mean ± sample std over seeds, in percent. Δ: paired by seed, 95% percentile bootstrap CI of the '
              'mean difference. Metrics of the last checkpoint (never the best on Area 5, which is also the test '
              'set). spconv is not bitwise deterministic on GPU: seeds differ, so compare across seeds.']
    if published:
        lines += ['', f"Published reference: {published['source'].strip()}"]
    lines += ['', '## Per seed', '', '| arm | seed | ' + ' | '.join(LABEL[m] for m in METRICS) + ' |',
              '|' + '---|' * (len(METRICS) + 2)]
    for r in runs.sort_values(['arm', 'seed']).itertuples():
        lines.append(f'| {r.arm} | {r.seed} | ' + ' | '.join(pct(getattr(r, m)) for m in METRICS) + ' |')
    lines += ['', '## Not included', ''] + ([f'- {e}' for e in excluded] or ['- none'])
    return '\n'.join(lines) + '\n'


def per_class_md(experiment: str, table: pd.DataFrame) -> str:
    """Per class: AP50, AP25, AP75 of each arm (mean over seeds, percent)."""
    arms = list(dict.fromkeys(table['arm']))
    cols = [(m, a) for m in ('ap50', 'ap25', 'ap75') for a in arms]
    lines = [f'# {experiment}: per-class AP (mean over seeds, percent)', '',
             '| class | ' + ' | '.join(f'{LABEL[m]} {a}' for m, a in cols) + ' |',
             '|' + '---|' * (len(cols) + 1)]
    wide = table.set_index(['class', 'arm'])
    for name in dict.fromkeys(table['class']):
        lines.append(f'| {name} | ' + ' | '.join(pct(wide.loc[(name, a), m]) for m, a in cols) + ' |')
    return '\n'.join(lines) + '\n'
