"""``python -m harness run``: every run of an experiment spec (arms x seeds x ablation points), as run records."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness import backends
from harness.core.io import result_line
from harness.study.matrix import run_matrix
from harness.study.runner import run_all
from harness.study.setup import set_threads
from harness.verbs.options import add_upstream_arguments, options

HELP = 'train + evaluate every run of an experiment spec (native or upstream backend), writing run records'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the run verb."""
    parser.add_argument('--spec', type=Path, required=True, help='experiment spec, e.g. baselines/smoke-native.yaml')
    parser.add_argument('--runs', type=Path, default=Path('results/runs'), help='where run records go')
    parser.add_argument('--work-dirs', type=Path, default=Path('work_dirs'),
                        help='mmengine logs, checkpoints and predictions (not committed)')
    parser.add_argument('--arms', nargs='+', default=None, help='subset of the spec\'s arms')
    parser.add_argument('--seeds', type=int, nargs='+', default=None, help='subset of the spec\'s seeds')
    parser.add_argument('--force', action='store_true', help='new attempts of finished runs (old ones kept)')
    parser.add_argument('--data', type=Path, default=None,
                        help="prepared data root instead of the spec's (must exist: never generated)")
    add_upstream_arguments(parser.add_argument_group('upstream backend'))


def run(args: argparse.Namespace) -> int:
    """Every run; a failed run is recorded as failed and the others go on (exit 1 if any failed)."""
    t0 = time.perf_counter()
    spec, backend = backends.load(args.spec)
    points = run_matrix(spec, args.arms, args.seeds)
    print(f'{spec["experiment"]}: {len(points)} runs ({spec["backend"]} backend)')
    set_threads(spec)
    status = run_all(spec, backend, points, options(args))
    failed = sorted(k for k, v in status.items() if v == 'failed' or v.startswith('refused'))
    print(result_line('run', 'ok' if not failed else 'failed', experiment=spec['experiment'], runs=status,
                      failed=failed, minutes=round((time.perf_counter() - t0) / 60, 2)))
    return 1 if failed else 0
