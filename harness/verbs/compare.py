"""``python -m harness compare``: comparison tables and plots, a pure function of run records."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.core import yamlfile
from harness.core.errors import HarnessError
from harness.core.io import atomic_write, result_line, staged
from harness.core.paths import BASELINES
from harness.core.schema import check_keys
from harness.execution import underway
from harness.reporting import ablations, outputs, plots
from harness.reporting.compare import main_runs, per_class_table, question_of, summarise, with_timing
from harness.reporting.markdown import comparison_md, per_class_md
from harness.reporting.select import METRICS, pick_experiment, select
from harness.study.records import load_runs

PUBLISHED = BASELINES / 'published.yaml'   # the published OneFormer3D rows; a study without an entry has none

HELP = 'tables (comparison, per class, ablations) and plots from run records; re-renders without re-training'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the compare verb."""
    parser.add_argument('--runs', type=Path, default=Path('results/runs'), help='folder of run records')
    parser.add_argument('--experiment', default=None, help='experiment to compare (needed if several)')
    parser.add_argument('--out', type=Path, default=Path('results'), help='where tables and plots/ go')
    parser.add_argument('--published', type=Path, default=None,
                        help=f'published reference numbers (default: {PUBLISHED.relative_to(BASELINES.parent)}; '
                             'a file given here must exist)')
    parser.add_argument(underway.INTERIM_FLAG, action='store_true',
                        help='compare a study some of whose runs are still under way (an interim look, labelled '
                             'as one in its tables, decision plot and .compare.json); without it such a study is '
                             'refused')


def run(args: argparse.Namespace) -> int:
    """Select the counted runs of one experiment, then write every table and plot in one step."""
    if args.published is not None and not args.published.exists():
        raise HarnessError(f'--published {args.published}: no such file; give the published table\'s path, or leave '
                           f'the flag out for {PUBLISHED.relative_to(BASELINES.parent)}')
    skipped: list[tuple[object, str]] = []
    records = load_runs(args.runs, skipped)
    experiment = pick_experiment(records, args.experiment, args.runs, [why for _, why in skipped])
    interim = underway.check(args.runs, experiment, args.interim)
    sel = select([r for r in records if r['experiment'] == experiment])
    # a record with wrong fields is listed, never counted (with its experiment's, or with every, comparison)
    sel.excluded += [why for exp, why in skipped if exp == experiment or not isinstance(exp, str)]
    if sel.runs.empty or main_runs(sel.runs).empty:
        raise HarnessError(f'{args.runs}: no counted run of {experiment} (finished, with metrics.json, without '
                           'ablation values); train and evaluate first (not included: ' + '; '.join(sel.excluded) + ')')
    previous = outputs.previous_set(args.out, experiment)   # before any work: a folder of another study is refused
    sel.runs = with_timing(sel.runs)
    published = load_published(args.published or PUBLISHED, experiment)
    summary, per_class, ablation = summarise(sel), per_class_table(sel.runs), ablations.tables(sel.runs)
    md = comparison_md(experiment, summary, sel, published, ablations.markdown(ablation), interim)
    with staged(args.out) as tmp:   # all outputs or none: never a mix of old and new
        atomic_write(tmp / 'comparison.csv', summary.to_csv(index=False))
        atomic_write(tmp / 'comparison.md', md)
        atomic_write(tmp / 'per_class.csv', per_class.to_csv(index=False))
        atomic_write(tmp / 'per_class.md', per_class_md(experiment, per_class, interim))
        if not ablation.empty:
            atomic_write(tmp / 'ablations.csv', ablation.to_csv(index=False))
        figures = plots.render_all(main_runs(sel.runs), per_class, published, tmp / 'plots')
        figures += plots.decision(summary, question_of(main_runs(sel.runs))[0], tmp / 'plots', interim=bool(interim))
        figures += ablations.plot(ablation, tmp / 'plots')
        written = [str(p.relative_to(tmp)) for p in tmp.rglob('*') if p.is_file()]
    removed = outputs.claim(args.out, experiment, written, previous, interim)
    print(md)
    print(result_line('compare', 'ok', experiment=experiment, runs=len(sel.runs), excluded=len(sel.excluded),
                      out=str(args.out), figures=[str(args.out / f.relative_to(tmp)) for f in figures],
                      removed=removed, interim=len(interim)))
    return 0


def load_published(path: Path, experiment: str) -> dict | None:
    """The published reference for this experiment, or None.

    Raises:
        HarnessError: not YAML, not a mapping, or this experiment's entry without ``label``, ``source``
            or a ``metrics`` mapping of numbers (in percent) or nulls; names the file and the key.
    """
    if not Path(path).exists():
        return None
    table = yamlfile.read_yaml(path, 'published table', 'fix it or pass another --published') or {}
    if not isinstance(table, dict):
        raise HarnessError(f'{path}: a mapping of experiment -> {{label, source, metrics}} expected, got '
                           f'{type(table).__name__}; fix it or pass another --published')
    entry = table.get(experiment)
    if entry is None:
        return None
    where = f'{path}: {experiment}'
    check_keys(where, entry, {'label', 'source', 'metrics'}, set())
    for key in ('label', 'source'):
        if not isinstance(entry[key], str):
            raise HarnessError(f'{where}.{key}: {entry[key]!r} must be text; fix it')
    check_keys(f'{where}.metrics', entry['metrics'], set(), set(METRICS))
    for key, value in entry['metrics'].items():
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or not 0 <= value <= 100):
            raise HarnessError(f'{where}.metrics.{key}: {value!r} must be a percentage in [0, 100] or null; fix it')
    return entry
