"""``python -m harness run``: every (arm, seed) of an experiment spec, as run records."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
import traceback
from pathlib import Path

import torch

from harness.study.curves import write_curves
from harness.study.arms import assert_only_criterion_differs, derive
from harness.verbs.derive import add_upstream_arguments
from harness.core.errors import HarnessError
from harness.verbs.evaluate import evaluate_folder
from harness.core.io import atomic_write, result_line
from harness.study.records import finish_run, sha256_file, start_run, update_record, write_metrics
from harness.study.spec import load_spec, run_matrix

HELP = 'train + evaluate every arm x seed of an experiment spec (native or upstream backend), writing run records'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the run verb."""
    parser.add_argument('--spec', type=Path, required=True, help='experiment spec, e.g. baselines/smoke-native.yaml')
    parser.add_argument('--runs', type=Path, default=Path('results/runs'), help='where run records go')
    parser.add_argument('--work-dirs', type=Path, default=Path('work_dirs'),
                        help='mmengine logs, checkpoints and predictions (not committed)')
    parser.add_argument('--arms', nargs='+', default=None, help='subset of the spec\'s arms')
    parser.add_argument('--seeds', type=int, nargs='+', default=None, help='override the spec\'s seeds')
    parser.add_argument('--force', action='store_true', help='new attempts of finished runs (old ones kept)')
    up = parser.add_argument_group('upstream backend')
    add_upstream_arguments(up)
    up.add_argument('--iters', type=int, default=None, help='iteration schedule instead of epochs (smoke runs)')
    up.add_argument('--gpus', type=int, default=1,
                    help='GPUs per run: > 1 launches upstream\'s train.py with torchrun (--launcher pytorch)')
    up.add_argument('--allow-other-commit', action='store_true',
                    help='run an upstream checkout that is not at the spec\'s commit (recorded)')


def ensure_data(spec: dict) -> Path:
    """The spec's prepared data root; generated with synth (and cached) when the spec says how."""
    from harness.cli import main
    root = Path(spec['data']['root'])
    if (root / 'MANIFEST.json').exists():
        return root
    synth = spec['data'].get('synth')
    if synth is None:
        raise HarnessError(f'{root}: no prepared dataset; run prepare-data (real S3DIS) or give the spec data.synth')
    args = ['synth', '--out', str(root), '--seed', str(synth['seed']), '--rooms-per-area', str(synth['rooms_per_area']),
            '--points-per-room', str(synth['points_per_room'])]
    with contextlib.redirect_stdout(io.StringIO()):
        if main(args) != 0:
            raise HarnessError(f'synth into {root} failed; see the message above')
    return root


def env_defaults(args: argparse.Namespace) -> None:
    """$SEEDS ("0 1 2") and $EPOCHS fill --seeds/--epochs when not given (compose.yaml passes them)."""
    import os
    if args.seeds is None and os.environ.get('SEEDS', '').strip():
        args.seeds = [int(s) for s in os.environ['SEEDS'].split()]
    if args.epochs is None and os.environ.get('EPOCHS', '').strip():
        args.epochs = int(os.environ['EPOCHS'])


def run(args: argparse.Namespace) -> int:
    """All runs; a failed run is recorded as failed and the others go on."""
    spec = load_spec(args.spec)
    env_defaults(args)
    if args.data is not None:
        spec['data']['root'] = str(args.data)
    t0 = time.perf_counter()
    ensure_data(spec)
    print(f'[{time.perf_counter() - t0:6.1f} s] data ready: {spec["data"]["root"]}')
    matrix = run_matrix(spec, args.arms, args.seeds)
    if spec.get('threads'):
        # one thread: spconv on CPU is bitwise reproducible only single-threaded (specs/environment.md)
        torch.set_num_threads(spec['threads'])
    if spec['backend'] == 'upstream':
        from harness.backends.upstream.backend import run_all
        status = run_all(spec, args.spec, args, matrix)
    else:
        status = {}
        for arm, seed in matrix:
            status[f'{arm}/s{seed}'] = one_run(spec, arm, seed, args)
            print(f'[{time.perf_counter() - t0:6.1f} s] {arm} seed {seed}: {status[f"{arm}/s{seed}"]}')
    failed = [k for k, v in status.items() if v == 'failed']
    print(result_line('run', 'ok' if not failed else 'failed', experiment=spec['experiment'], runs=status,
                      minutes=round((time.perf_counter() - t0) / 60, 2)))
    return 1 if failed else 0


def one_run(spec: dict, arm: str, seed: int, args: argparse.Namespace) -> str:
    """Train, predict, evaluate one (arm, seed); returns its final status."""
    cfg = derive(spec, arm, seed)
    diff = assert_only_criterion_differs(derive(spec, 'hungarian', seed), cfg)
    folder, action = start_run(args.runs, spec['experiment'], arm, seed, backend='native', force=args.force,
                               config_diff=diff, threads=torch.get_num_threads(),
                               deterministic_mode='single-thread CPU' if torch.get_num_threads() == 1 else 'none')
    if action == 'done':
        return 'done (already finished)'
    config_path = atomic_write(folder / 'config.json', json.dumps(cfg, indent=1) + '\n', overwrite=True)
    update_record(folder, config={'path': str(config_path), 'sha256': sha256_file(config_path)})
    try:
        from mmengine.config import Config
        from harness.backends.native.train import train_and_predict
        out = train_and_predict(Config(cfg), Path(args.work_dirs) / folder.name)
        _, metrics = evaluate_folder(out['predictions'], Path(spec['data']['root']), spec['data']['test_area'])
        write_metrics(folder, metrics)
        write_curves(out['scalars'], folder)
        finish_run(folder, iterations=out['iterations'], timing={'s_per_iter': out['s_per_iter']},
                   resumed_from_checkpoint=out['resumed'])
        return 'finished'
    except Exception as err:  # noqa: BLE001 - recorded, then the next run goes on
        finish_run(folder, status='failed', error=f'{type(err).__name__}: {err}')
        traceback.print_exc()
        return 'failed'
