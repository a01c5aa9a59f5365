"""``python -m harness status``: one table of a run matrix, for local and Slurm runs alike."""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.io import result_line
from harness.execution.status import table

HELP = ('state of every run: pending / submitted / to run / running (iteration, ETA) / interrupted / finished / '
        'failed / refused')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the status verb."""
    parser.add_argument('--runs', type=Path, default=Path('results/runs'), help='folder of run records')
    parser.add_argument('--spec', type=Path, default=None,
                        help="the experiment's spec: list its whole matrix (runs never started too) and "
                             'mark runs whose config changed as refused; give the backend flags the runs were '
                             'started with too (e.g. --epochs 8)')
    # with --spec, the backend's flags the runs were started with (--epochs, --iters, --cache, ...) may follow;
    # they are parsed once the spec names the backend (declaring every backend's here would import torch)
    parser.set_defaults(backend_argv=[])


def refused_runs(spec_path: Path, runs: Path, backend_argv: list[str]) -> tuple[list, set[str]]:
    """The spec's matrix and the run ids the runner would refuse (derived here, nothing trains).

    Args:
        backend_argv: the backend's own flags, as ``run`` was given them (a run started with
            ``--epochs 8`` and checked without it would show as refused).

    Raises:
        HarnessError: a flag of another backend; SystemExit(2) (argparse): a flag no backend has.
    """
    from harness import backends
    from harness.study.backend import RunOptions
    from harness.study.matrix import run_matrix
    from harness.study.planning import classify
    from harness.study.setup import data_root
    from harness.verbs.options import add_backend_arguments, refuse_other_backends
    spec, backend = backends.load(spec_path)
    matrix = run_matrix(spec)
    flags = argparse.ArgumentParser(prog='python -m harness status --spec SPEC', add_help=False)
    add_backend_arguments(flags)
    cli = vars(flags.parse_args(backend_argv))
    refuse_other_backends(cli, backend.name, spec_path)
    options = RunOptions(runs=runs, backend=type(backend).options(cli))
    try:
        prepared = backend.prepare(spec, options)
        root = data_root(spec)
        refused = {p.run_id for p in matrix
                   if classify(p, backend.derive(spec, prepared, p, root), options).action == 'refused'}
    except Exception as err:  # noqa: BLE001 - status still shows the matrix; say why refusals are unknown
        print(f'note: refusals not checked ({err})')
        refused = set()
    return matrix, refused


def run(args: argparse.Namespace) -> int:
    """Print the table and the counts."""
    if args.spec is None and not args.runs.is_dir():   # with --spec, a study not started yet is all "to run"
        raise HarnessError(f'{args.runs}: no such runs folder; pass --runs pointing at the run records '
                           '(or --spec to list a study not started yet)')
    if args.backend_argv and args.spec is None:
        raise HarnessError(f'{args.backend_argv[0]}: not a status option; backend flags (--epochs, --cache, ...) '
                           'are read only with --spec')
    matrix, refused = refused_runs(args.spec, args.runs, args.backend_argv) if args.spec else (None, set())
    rows = table(args.runs, matrix, refused)
    width = max([len(r['run_id']) for r in rows] + [6])
    print(f'{"run id":<{width}}  {"state":<12} {"job":<10} {"att.":>4}  detail')
    for r in rows:
        print(f'{r["run_id"]:<{width}}  {r["state"]:<12} {str(r["job"] or "-"):<10} {r["attempts"]:>4}  {r["detail"]}')
    counts = Counter(r['state'] for r in rows)
    print('\n' + ', '.join(f'{n} {s}' for s, n in sorted(counts.items())) if rows else 'no runs')
    print(result_line('status', 'ok', runs=str(args.runs), states=dict(counts)))
    return 0
