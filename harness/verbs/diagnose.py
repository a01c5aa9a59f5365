"""``python -m harness diagnose``: why each arm's AP is what it is (native runs: from the diagnosis each
record keeps in its metrics.json, or else from the run's checkpoint)."""
from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from tqdm import tqdm

from harness.core.errors import HarnessError
from harness.core.io import atomic_write, head, result_line
from harness.data.reader import list_rooms
from harness.execution import underway
from harness.reporting.compare import main_runs
from harness.reporting.markdown import interim_banner
from harness.reporting.select import pick_experiment, select
from harness.study.planning import data_differs, data_identity
from harness.study.records import load_metrics, load_record, load_runs, read_config

HELP = ('mask fit, class, ranking and duplicates of every query of the counted native runs '
        '(what AP mixes, measured apart); writes diagnosis.csv and diagnosis.md')
COLUMNS = ['oracle_recall50', 'mean_best_iou', 'right_class', 'ranked_first', 'duplicates',
           'no_object_queries', 'active_queries', 'gts_anchored', 'fit_if_anchored']


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the diagnose verb."""
    parser.add_argument('--runs', type=Path, default=Path('results/runs'), help='folder of run records')
    parser.add_argument('--experiment', default=None, help='experiment to diagnose (needed if several)')
    parser.add_argument('--data', type=Path, default=None,
                        help="diagnose every run from its checkpoint on this prepared data root (default: the diagnosis "
                             "each record keeps; runs without one from their checkpoint on their recorded data.root)")
    parser.add_argument('--out', type=Path, default=Path('results'),
                        help='where diagnosis.csv / .md go (derived from the records: re-written)')
    parser.add_argument('--force', action='store_true',
                        help='replace a diagnosis.csv / .md in --out that diagnose did not write')
    parser.add_argument(underway.INTERIM_FLAG, action='store_true',
                        help='diagnose a study some of whose runs are still under way (an interim look, labelled '
                             'as one); without it such a study is refused')


def run(args: argparse.Namespace) -> int:
    """The runs compare counts (same selection): each run's kept diagnosis, else its evaluated checkpoint."""
    from harness.backends.native.diagnose import diagnose_run
    if args.out.exists() and not args.out.is_dir():
        raise HarnessError(f'--out {args.out}: a file, not a folder; choose a folder for diagnosis.csv / .md')
    records = load_runs(args.runs)
    experiment = pick_experiment(records, args.experiment, args.runs)
    if not args.force:
        check_ours(args.out, experiment)
    interim = underway.check(args.runs, experiment, args.interim)
    counted = select([r for r in records if r['experiment'] == experiment]).runs
    runs = main_runs(counted)   # compare's headline runs: an ablation point is another setting, never averaged in
    if runs.empty:
        raise HarnessError(f'{args.runs}: no counted run of {experiment} without ablation values to diagnose')
    todo = [source(r, args.data) for r in runs.itertuples()]
    check_sources([t for t in todo if t.kept is None], args.data)   # before any checkpoint is loaded
    rows = []
    for t in tqdm(todo, desc='diagnose', unit='run'):
        measured = t.kept if t.kept is not None else diagnose_run(t.record, t.config, t.root)
        rows.append({'arm': t.row.arm, 'seed': t.row.seed, 'ap50': t.row.ap50, **measured,
                     'source': 'record' if t.kept is not None else 'checkpoint'})
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / 'diagnosis.csv', table.to_csv(index=False), overwrite=True)
    md = markdown(experiment, table, interim, ablation_runs=len(counted) - len(runs))
    atomic_write(args.out / 'diagnosis.md', md, overwrite=True)
    print(md)
    print(result_line('diagnose', 'ok', runs=len(table), out=str(args.out / 'diagnosis.md'), interim=len(interim)))
    return 0


class Source(NamedTuple):
    """Where one counted run's diagnosis comes from: ``kept`` (its metrics.json's), or its checkpoint on ``root``."""
    row: Any            # compare's row of the run (arm, seed, ap50, dir)
    record: dict        # its run.json
    config: dict        # its resolved config
    kept: dict | None   # the diagnosis its record keeps; None: diagnose the checkpoint
    root: Path          # the prepared data the checkpoint is diagnosed on


def source(row: Any, data: Path | None) -> Source:
    """A counted run's :class:`Source`: ``--data`` (when given) forces the checkpoint on that data.

    Raises:
        HarnessError: not a native run.
    """
    record, config = load_record(Path(row.dir) / 'run.json'), read_config(row.dir)
    if record.get('backend') != 'native':
        raise HarnessError(f'{row.dir}: a {record.get("backend")} run; diagnose reads native models only')
    return Source(row, record, config, None if data else recorded(Path(row.dir)),
                  data or Path(config['data']['root']))


def check_sources(todo: list[Source], given: Path | None) -> None:
    """Each checkpoint is there and is diagnosed on the data its run was tested on: the folder exists, its
    test area is valid GT (as ``evaluate`` checks it) and its identity is the record's.

    Args:
        given: ``--data`` (None: each run's recorded data.root), named in the messages.

    Raises:
        HarnessError: the first problem, naming the checkpoint, folder or run and the fix.
    """
    from harness.backends.native.diagnose import checkpoint_of
    from harness.evaluation.folder import check_data
    checked = {}
    for t in todo:
        checkpoint_of(t.record)
        area = t.config['data']['test_area']
        if not t.root.is_dir():
            raise HarnessError(f'--data {t.root}: no such folder' if given else
                               f"{t.root}: no such data folder (the run's data.root); pass --data <prepared root>")
        if (t.root, area) not in checked:
            check_data(t.root, area)
            if not list_rooms(t.root, area):
                raise HarnessError(f'{t.root}: no rooms of Area_{area} (the runs\' test area) under points/; '
                                   'pass --data <the data the runs were trained on>')
            checked[t.root, area] = data_identity(t.root)
        why = data_differs(t.record.get('data') or {}, checked[t.root, area])
        if why:
            raise HarnessError(f'{t.row.dir}: not the data in {t.root}: {why}; pass --data <the data it was '
                               'trained on> (on other rooms its AP would be paired with figures of other data)')


# How diagnose's own files begin: others of those names (a user's notes) are never written over unasked,
# nor is another experiment's diagnosis (its title names it).
OWN_START = {'diagnosis.md': re.compile(r'# (\S+): what the queries do \('),
             'diagnosis.csv': re.compile(r'arm,seed,ap50,')}


def check_ours(out: Path, experiment: str) -> None:
    """Raise where ``out`` holds a diagnosis.csv / .md that diagnose did not write, or wrote for another
    experiment (their first lines say so); ``--force`` skips this check."""
    for name, start in OWN_START.items():
        path = out / name
        if not path.is_file():
            continue
        match = start.match(head(path)[0])
        if not match:
            raise HarnessError(f'{path}: not written by diagnose; move it away, choose another --out, or pass '
                               '--force to replace it')
        if match.groups() and match.group(1) != experiment:
            raise HarnessError(f'{path}: the diagnosis of experiment {match.group(1)!r}, not of {experiment!r}; '
                               f'choose another --out (e.g. {out / experiment}) or pass --force to replace it')


def recorded(folder: Path) -> dict[str, float] | None:
    """The diagnosis a run's metrics.json keeps (native runs since it was added), NaN for null; None if absent.

    Raises:
        HarnessError: present but not a mapping with a number (or null) for each of :data:`COLUMNS`.
    """
    kept = (load_metrics(folder) or {}).get('diagnosis')
    if kept is None:
        return None
    path = folder / 'metrics.json'
    fix = 'pass --data <prepared data root> to diagnose from the checkpoint instead'
    if not isinstance(kept, dict):
        raise HarnessError(f'{path}: diagnosis is {type(kept).__name__}, not a mapping; {fix}')
    for key in ('gts', *COLUMNS):
        if key not in kept:
            raise HarnessError(f'{path}: diagnosis has no {key}; {fix}')
        value = kept[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise HarnessError(f'{path}: diagnosis.{key} is {value!r}, not a number; {fix}')
    return {k: float('nan') if v is None else v for k, v in kept.items() if k in ('gts', *COLUMNS)}


def _opt(value: float, fmt: str = '.2f') -> str:
    """A rate, or '–' where it is undefined (no GT fitted: no best query to rate; no anchored query)."""
    return '–' if pd.isna(value) else f'{value:{fmt}}'


def markdown(experiment: str, table: pd.DataFrame, unfinished: Sequence[str] = (), ablation_runs: int = 0) -> str:
    """Per arm: mean over seeds of every column (test area, last checkpoint, before top-k / NMS);
    ``unfinished``: run ids of the study still under way (an interim look, said at the top);
    ``ablation_runs``: counted runs with ablation values, left out (said under the table)."""
    means = table.groupby('arm', sort=False)[['ap50', *COLUMNS]].mean()
    seeds = table.groupby('arm', sort=False).seed.nunique()
    over = f'{seeds.iloc[0]} seeds' if seeds.nunique() == 1 else "each arm's seeds"   # a staged study: they differ
    lines = [f'# {experiment}: what the queries do (mean over {over})', '']
    lines += interim_banner(unfinished)
    lines += ['| arm | seeds | AP50 | GTs some query fits (IoU >= 0.5) | mean best IoU | best query right class | '
              'best query ranked first | further queries on a fitted GT | no-object queries | active queries | '
              'GTs with an anchor | anchored GTs fitted |',
              '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for arm, m in means.iterrows():
        lines.append(f'| {arm} | {seeds[arm]} | {100 * m.ap50:.1f} | {m.oracle_recall50:.2f} | '
                     f'{m.mean_best_iou:.2f} | {_opt(m.right_class)} | {_opt(m.ranked_first)} | '
                     f'{_opt(m.duplicates, ".1f")} | '
                     f'{m.no_object_queries:.2f} | {m.active_queries:.2f} | {_opt(m.gts_anchored)} | '
                     f'{_opt(m.fit_if_anchored)} |')
    lines += ['', 'Over the test rooms\' GT instances of >= 100 points (those AP counts), from each run\'s evaluated checkpoint, masks binarised '
              'as inference does (sp_score_thr), before top-k, NMS and thresholds. "fits": some query\'s mask '
              'has IoU >= 0.5 with the GT (the best AP50 recall any ranking could give); "right class": the '
              'best-IoU query\'s most likely object class is the GT\'s; "ranked first": among the queries '
              'that fit the GT, the best-IoU one has the highest inference score (class probability x '
              'objectness); "further queries": duplicates that also fit. Rates over fitted GTs. Anchored queries '
              'only: "GTs with an anchor": some query is anchored in the GT (in eval mode, anchors are fixed); '
              '"anchored GTs fitted": the share of those some query fits.'
              + (f' The {ablation_runs} run(s) with ablation values are left out, as in compare\'s headline.'
                 if ablation_runs else ''), '']
    return '\n'.join(lines)
