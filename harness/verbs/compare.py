"""``python -m harness compare``: comparison tables and plots, a pure function of run records."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from harness.core.errors import HarnessError
from harness.core.io import atomic_write, result_line, staged
from harness.core.paths import BASELINES
from harness.reporting import ablations, plots
from harness.reporting.compare import main_runs, per_class_table, summarise, with_timing
from harness.reporting.markdown import comparison_md, per_class_md
from harness.reporting.select import pick_experiment, select
from harness.study.records import load_runs

HELP = 'tables (comparison, per class, ablations) and plots from run records; re-renders without re-training'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the compare verb."""
    parser.add_argument('--runs', type=Path, default=Path('results/runs'), help='folder of run records')
    parser.add_argument('--experiment', default=None, help='experiment to compare (needed if several)')
    parser.add_argument('--out', type=Path, default=Path('results'), help='where tables and plots/ go')
    parser.add_argument('--published', type=Path, default=BASELINES / 'published.yaml',
                        help='published reference numbers')


def run(args: argparse.Namespace) -> int:
    """Select the counted runs of one experiment, then write every table and plot in one step."""
    records = load_runs(args.runs)
    experiment = pick_experiment(records, args.experiment, args.runs)
    sel = select([r for r in records if r['experiment'] == experiment])
    if sel.runs.empty or main_runs(sel.runs).empty:
        raise HarnessError(f'{args.runs}: no counted run of {experiment} (finished, with metrics.json, without '
                           'ablation values); train and evaluate first (not included: ' + '; '.join(sel.excluded) + ')')
    sel.runs = with_timing(sel.runs)
    published = load_published(args.published, experiment)
    summary, per_class, ablation = summarise(sel), per_class_table(sel.runs), ablations.tables(sel.runs)
    md = comparison_md(experiment, summary, sel, published, ablations.markdown(ablation))
    with staged(args.out) as tmp:   # all outputs or none: never a mix of old and new
        atomic_write(tmp / 'comparison.csv', summary.to_csv(index=False))
        atomic_write(tmp / 'comparison.md', md)
        atomic_write(tmp / 'per_class.csv', per_class.to_csv(index=False))
        atomic_write(tmp / 'per_class.md', per_class_md(experiment, per_class))
        if not ablation.empty:
            atomic_write(tmp / 'ablations.csv', ablation.to_csv(index=False))
        figures = plots.render_all(main_runs(sel.runs), per_class, published, tmp / 'plots')
        figures += ablations.plot(ablation, tmp / 'plots')
    print(md)
    print(result_line('compare', 'ok', experiment=experiment, runs=len(sel.runs), excluded=len(sel.excluded),
                      out=str(args.out), figures=[str(args.out / f.relative_to(tmp)) for f in figures]))
    return 0


def load_published(path: Path, experiment: str) -> dict | None:
    """The published reference for this experiment, or None."""
    if not Path(path).exists():
        return None
    try:
        table = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise HarnessError(f'{path}: not valid YAML ({err})') from err
    return table.get(experiment)
