"""One run lifecycle for every backend.

``plan``: derive every run's config first (cheap) and classify it against its
record: new, resume, done, complete (metrics written, record not closed) or
refused (the recorded config differs from what the spec derives now). Any
refusal stops the invocation before anything trains.

``execute``: per run, under the run's lock: open the record (or a new
attempt), train (the backend resumes from its own checkpoint), predict,
evaluate with the one evaluator, write curves, then metrics, then close the
record. A failure is recorded with its first line; the next run goes on.
"""
from __future__ import annotations

import contextlib
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from harness.core import env
from harness.core.errors import HarnessError
from harness.core.io import atomic_write
from harness.core.tree import canonical_hash, config_diff, diff_keys, without
from harness.evaluation.folder import evaluate_folder
from harness.study import records
from harness.study.arms import arm_keys
from harness.study.backend import Backend, Derived, RunContext, RunOptions, Trained
from harness.study.curves import write_curves
from harness.study.matrix import RunPoint
from harness.study.setup import data_root, ensure_data

@dataclass
class Planned:
    """One run as planned: what to do with it, and where (None: a new attempt folder)."""

    point: RunPoint
    derived: Derived
    action: str
    folder: Path | None = None
    reason: str = ''
    shared: dict = field(default_factory=dict)   # record fields of every run (backend.prepare)


def classify(point: RunPoint, derived: Derived, options: RunOptions) -> Planned:
    """What to do with one run, from its latest attempt's record and config."""
    folders = records.attempts(options.runs, point.run_id)
    if not folders or options.force:
        return Planned(point, derived, 'new')
    latest = folders[-1]
    record = records.load_record(latest / 'run.json')
    old = records.read_config(latest)
    # places (data root, checkpoint paths) are not settings: the data's identity is checked by its manifest
    places = record.get('location_keys', [])
    if old is None or canonical_hash(without(old, places)) != canonical_hash(without(derived.config, places)):
        keys = diff_keys(config_diff(without(old or {}, places), without(derived.config, places)))
        shown = ', '.join(keys[:6]) + (f' and {len(keys) - 6} more' if len(keys) > 6 else '')
        return Planned(point, derived, 'refused', latest,
                       f'{latest}: its config differs from what the spec derives now in {shown or "(no config.json)"};'
                       ' restore the spec, give the experiment a new name, or pass --force for a new attempt '
                       '(the old one is kept)')
    if record['status'] == 'finished':
        return Planned(point, derived, 'done', latest)
    if records.load_metrics(latest) is not None:
        return Planned(point, derived, 'complete', latest)
    return Planned(point, derived, 'resume', latest)


def plan(spec: dict, backend: Backend, points: list[RunPoint], options: RunOptions,
         data_root: Path) -> list[Planned]:
    """Derive and classify every run; raise before any training if one is refused."""
    plans = [classify(p, backend.derive(spec, p, options, data_root), options) for p in points]
    refused = [p for p in plans if p.action == 'refused']
    for p in refused:
        print(f'refused: {p.reason}', file=sys.stderr)
    if refused:
        raise HarnessError(f'{len(refused)} of {len(plans)} runs refused: their recorded config differs from '
                           'what the spec derives now (listed above); nothing was trained')
    return plans


def same_data(plans: list[Planned], root: Path) -> None:
    """Runs to resume or keep must have used this very data (its manifest hash); else refuse them all."""
    current = _data_identity(root)['manifest_sha256']
    wrong = []
    for p in plans:
        if p.folder is None or p.action == 'new':
            continue
        recorded = (records.load_record(p.folder / 'run.json').get('data') or {}).get('manifest_sha256')
        if recorded and recorded != current:
            wrong.append(p)
            print(f'refused: {p.folder}: trained on other data (MANIFEST.json sha256 {recorded[:12]}, now '
                  f'{current[:12] if current else None}); point --data at that data, or give the experiment '
                  'a new name', file=sys.stderr)
    if wrong:
        raise HarnessError(f'{len(wrong)} of {len(plans)} runs refused: their data differs (listed above); '
                           'nothing was trained')


def prepare_runs(spec: dict, backend: Backend, points: list[RunPoint], options: RunOptions) -> list[Planned]:
    """Everything before training: backend checks, derive + classify (refusals), data, data identity."""
    shared = backend.prepare(spec, options)
    root = data_root(spec, options.data)
    plans = plan(spec, backend, points, options, root)
    ensure_data(spec, options.data)
    same_data(plans, root)
    for p in plans:
        p.shared = shared
    return plans


def run_all(spec: dict, backend: Backend, points: list[RunPoint], options: RunOptions) -> dict[str, str]:
    """Plan (refusals first), then make the data, then execute every run; returns run id -> final status."""
    plans = prepare_runs(spec, backend, points, options)
    root = data_root(spec, options.data)
    status, t0 = {}, time.perf_counter()
    for i, p in enumerate(plans, 1):
        print(f'[{i}/{len(plans)}] {p.point.run_id}: {p.action}', flush=True)
        status[p.point.run_id] = execute(spec, backend, p, options, root, p.shared)
        print(f'[{time.perf_counter() - t0:7.1f} s] {p.point.run_id}: {status[p.point.run_id]}', flush=True)
    return status


def execute(spec: dict, backend: Backend, planned: Planned, options: RunOptions, data_root: Path,
            shared: dict) -> str:
    """One run, start to finish; returns its status (``done (already finished)`` when nothing was to do)."""
    if planned.action == 'done':
        return 'done (already finished)'
    folder = planned.folder or _open_new(spec, backend, planned, options, data_root, shared)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(records.lock(folder))
        except HarnessError as err:   # another process trains it: leave it alone, go on with the others
            print(f'refused: {err}', file=sys.stderr)
            return 'refused (being trained elsewhere)'
        return _locked(spec, backend, planned, options, data_root, folder)


def _locked(spec: dict, backend: Backend, planned: Planned, options: RunOptions, data_root: Path,
            folder: Path) -> str:
    """The run under its lock: a session, training and evaluation, the record closed either way."""
    resumed = bool(records.load_record(folder / 'run.json').get('sessions'))
    where = env.executor()
    records.begin_session(folder, executor=where)
    work_dir = (Path(options.work_dirs) / folder.name).resolve()
    records.update_record(folder, executor=where, work_dir=str(work_dir))
    ctx = RunContext(spec, planned.point, planned.derived, options, folder, work_dir, data_root, resumed)
    try:
        if planned.action != 'complete':
            _train_and_evaluate(backend, ctx)
        records.finish_run(folder)
        return 'finished'
    except Exception as err:  # noqa: BLE001 - recorded, then the next run goes on
        text = str(err) if isinstance(err, HarnessError) else f'{type(err).__name__}: {err}'
        message = (text.splitlines() or [type(err).__name__])[0]
        records.finish_run(folder, status='failed', error=message)
        if not isinstance(err, HarnessError):
            traceback.print_exc()
        print(f'error: {planned.point.run_id}: {message}', file=sys.stderr)
        return 'failed'


def _open_new(spec: dict, backend: Backend, planned: Planned, options: RunOptions, data_root: Path,
              shared: dict) -> Path:
    """A new attempt's record, its config.json and the files the backend trains from."""
    point = planned.point
    folder = records.new_attempt(options.runs, point.run_id, experiment=point.experiment, arm=point.arm,
                                 seed=point.seed, ablation=point.ablation_dict, backend=backend.name,
                                 arm_keys=arm_keys(point.arm), location_keys=list(backend.location_keys),
                                 **shared)
    config = records.write_config(folder, planned.derived.config)
    for name, text in planned.derived.files.items():
        atomic_write(folder / 'configs' / name, text, overwrite=True)
    records.update_record(folder, config=config, config_diff=planned.derived.diff,
                          iterations=planned.derived.iterations, data=_data_identity(data_root),
                          threads=spec.get('threads'))
    return folder


def _data_identity(root: Path) -> dict:
    """Where the data is and which data it is (its MANIFEST.json's sha256)."""
    manifest = Path(root) / 'MANIFEST.json'
    return {'root': str(root), 'manifest_sha256': records.sha256_file(manifest) if manifest.exists() else None}


def _train_and_evaluate(backend: Backend, ctx: RunContext) -> None:
    """Train, predict, evaluate; curves before metrics, metrics before the record is closed."""
    for name, text in ctx.derived.files.items():
        atomic_write(ctx.work_dir / 'configs' / name, text, overwrite=True)
    trained = backend.train(ctx)
    _record_timing(ctx.record_dir, trained)
    records.update_record(ctx.record_dir, checkpoint={'evaluated': 'last', 'path': str(trained.checkpoint)
                                                       if trained.checkpoint else None})
    predictions = backend.predict(ctx, trained)
    _, metrics = evaluate_folder(predictions, ctx.data_root, ctx.spec['data']['test_area'])
    metrics.update(backend.check_metrics(ctx, metrics))
    if trained.scalars is not None:
        write_curves(trained.scalars, ctx.record_dir)
    records.write_metrics(ctx.record_dir, metrics)


def _record_timing(folder: Path, trained: Trained) -> None:
    """Training seconds and iterations of this session, and s/iteration over every session."""
    record = records.load_record(folder / 'run.json')
    sessions = record['sessions']
    sessions[-1] = {**sessions[-1], 'train_s': round(trained.seconds, 3), 'iters': trained.iters_this_session}
    train_s = sum(s.get('train_s', 0.0) for s in sessions)
    iters = sum(s.get('iters', 0) for s in sessions)
    records.update_record(folder, sessions=sessions, iterations_done=trained.iterations,
                          timing={'train_s': round(train_s, 3), 'iters_trained': iters,
                                  's_per_iter': round(train_s / iters, 6) if iters else None})
