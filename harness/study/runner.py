"""One run lifecycle for every backend.

``prepare_runs``: the backend's checks, then every run's config derived first
(cheap) and classified against its record: new, resume, done, complete
(metrics written, record not closed) or refused (the recorded config differs
from what the spec derives now). Any refusal stops the invocation before
anything trains. Then the data is made (if the spec says how) and checked.

``execute``: per run, under the run's lock: open the record (or a new
attempt), train (the backend resumes from its own checkpoint), predict,
evaluate with the one evaluator, write curves, then metrics, then close the
record. The runner holds the record in memory (:class:`RunRecord`) and saves
it at each stage. A failure is recorded with its first line; the next run
goes on.
"""
from __future__ import annotations

import contextlib
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from harness.core import env
from harness.core.errors import HarnessError
from harness.core.io import atomic_write
from harness.core.tree import canonical_hash, config_diff, diff_keys, without
from harness.evaluation.folder import evaluate_folder
from harness.study import records
from harness.study.arms import arm_keys
from harness.study.backend import Backend, Derived, Prepared, RunContext, RunOptions, Trained
from harness.study.curves import write_curves
from harness.study.matrix import RunPoint
from harness.study.records import RunRecord
from harness.study.setup import data_root, ensure_data
from harness.study.spec import Spec


@dataclass(frozen=True)
class Planned:
    """One run as planned: what to do with it, and where.

    Attributes:
        action: new / resume / done / complete / refused.
        folder: the latest attempt's folder (None: a new attempt is made).
        record: that attempt's record as read when classifying (None for a new one).
    """

    point: RunPoint
    derived: Derived
    action: str
    folder: Path | None = None
    reason: str = ''
    record: dict | None = None


@dataclass(frozen=True)
class Batch:
    """Everything one invocation planned: the runs, and what they share."""

    spec: Spec
    backend: Backend
    options: RunOptions
    prepared: Prepared
    data_root: Path
    plans: list[Planned]


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
                       '(the old one is kept)', record)
    if record['status'] == 'finished':
        return Planned(point, derived, 'done', latest, record=record)
    if records.load_metrics(latest) is not None:
        return Planned(point, derived, 'complete', latest, record=record)
    return Planned(point, derived, 'resume', latest, record=record)


def plan(spec: Spec, backend: Backend, prepared: Prepared, points: list[RunPoint], options: RunOptions,
         root: Path) -> list[Planned]:
    """Derive and classify every run; raise before any training if one is refused."""
    plans = [classify(p, backend.derive(spec, prepared, p, root), options) for p in points]
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
        if p.record is None:
            continue
        recorded = (p.record.get('data') or {}).get('manifest_sha256')
        if recorded and recorded != current:
            wrong.append(p)
            print(f'refused: {p.folder}: trained on other data (MANIFEST.json sha256 {recorded[:12]}, now '
                  f'{current[:12] if current else None}); point --data at that data, or give the experiment '
                  'a new name', file=sys.stderr)
    if wrong:
        raise HarnessError(f'{len(wrong)} of {len(plans)} runs refused: their data differs (listed above); '
                           'nothing was trained')


def prepare_runs(spec: Spec, backend: Backend, points: list[RunPoint], options: RunOptions) -> Batch:
    """Everything before training: backend checks, derive + classify (refusals), data, data identity."""
    prepared = backend.prepare(spec, options)
    root = data_root(spec, options.data)
    plans = plan(spec, backend, prepared, points, options, root)
    ensure_data(spec, options.data)
    same_data(plans, root)
    return Batch(spec, backend, options, prepared, root, plans)


def run_all(batch: Batch) -> dict[str, str]:
    """Execute every planned run in order; returns run id -> final status."""
    status, t0 = {}, time.perf_counter()
    for i, p in enumerate(batch.plans, 1):
        print(f'[{i}/{len(batch.plans)}] {p.point.run_id}: {p.action}', flush=True)
        status[p.point.run_id] = execute(batch, p)
        print(f'[{time.perf_counter() - t0:7.1f} s] {p.point.run_id}: {status[p.point.run_id]}', flush=True)
    return status


def execute(batch: Batch, planned: Planned) -> str:
    """One run, start to finish; returns its status (``done (already finished)`` when nothing was to do)."""
    if planned.action == 'done':
        return 'done (already finished)'
    record = RunRecord.load(planned.folder) if planned.folder else _open_new(batch, planned)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(records.lock(record.folder))
        except HarnessError as err:   # another process trains it: leave it alone, go on with the others
            print(f'refused: {err}', file=sys.stderr)
            return 'refused (being trained elsewhere)'
        return _locked(batch, planned, record)


def _locked(batch: Batch, planned: Planned, record: RunRecord) -> str:
    """The run under its lock: a session, training and evaluation, the record closed either way."""
    resumed = bool(record.get('sessions'))
    where = env.executor()
    work_dir = (Path(batch.options.work_dirs) / record.folder.name).resolve()
    record.begin_session(session={'executor': where}, executor=where, work_dir=str(work_dir))
    ctx = RunContext(batch.spec, planned.point, planned.derived, batch.options, batch.prepared, record.folder,
                     work_dir, batch.data_root, resumed)
    try:
        if planned.action != 'complete':
            _train_and_evaluate(batch.backend, ctx, record)
        record.finish()
        return 'finished'
    except Exception as err:  # noqa: BLE001 - recorded, then the next run goes on
        text = str(err) if isinstance(err, HarnessError) else f'{type(err).__name__}: {err}'
        message = (text.splitlines() or [type(err).__name__])[0]
        record.finish(status='failed', error=message)
        if not isinstance(err, HarnessError):
            traceback.print_exc()
        print(f'error: {planned.point.run_id}: {message}', file=sys.stderr)
        return 'failed'


def _open_new(batch: Batch, planned: Planned) -> RunRecord:
    """A new attempt's record, its config.json and the files the backend trains from."""
    point, derived = planned.point, planned.derived
    record = RunRecord.create(batch.options.runs, point.run_id, experiment=point.experiment, arm=point.arm,
                              seed=point.seed, ablation=point.ablation_dict, backend=batch.backend.name,
                              arm_keys=arm_keys(point.arm), location_keys=list(batch.backend.location_keys),
                              **batch.prepared.record)
    config = records.write_config(record.folder, derived.config)
    for name, text in derived.files.items():
        atomic_write(record.folder / 'configs' / name, text, overwrite=True)
    question = batch.spec.question.as_record() if batch.spec.question else None
    record.update(config=config, config_diff=derived.diff, iterations=derived.iterations,
                  data=_data_identity(batch.data_root), threads=batch.spec.threads, question=question)
    return record


def _data_identity(root: Path) -> dict:
    """Where the data is and which data it is (its MANIFEST.json's sha256)."""
    manifest = Path(root) / 'MANIFEST.json'
    return {'root': str(root), 'manifest_sha256': records.sha256_file(manifest) if manifest.exists() else None}


def _train_and_evaluate(backend: Backend, ctx: RunContext, record: RunRecord) -> None:
    """Train, predict, evaluate; curves before metrics, metrics before the record is closed."""
    for name, text in ctx.derived.files.items():
        atomic_write(ctx.work_dir / 'configs' / name, text, overwrite=True)
    trained = backend.train(ctx)
    record.update(**_timing(record, trained),
                  checkpoint={'evaluated': 'last', 'path': str(trained.checkpoint) if trained.checkpoint else None})
    predicted = backend.predict(ctx, trained)
    _, metrics = evaluate_folder(predicted.folder, ctx.data_root, ctx.spec.data.test_area)
    metrics.update(backend.check_metrics(ctx, metrics, predicted))
    if trained.scalars is not None:
        write_curves(trained.scalars, ctx.record_dir)
    records.write_metrics(ctx.record_dir, metrics)


def _timing(record: RunRecord, trained: Trained) -> dict:
    """Record fields: this session's training seconds and iterations, and s/iteration over every session."""
    sessions = list(record['sessions'])
    sessions[-1] = {**sessions[-1], 'train_s': round(trained.seconds, 3), 'iters': trained.iters_this_session}
    train_s = sum(s.get('train_s', 0.0) for s in sessions)
    iters = sum(s.get('iters', 0) for s in sessions)
    return {'sessions': sessions, 'iterations_done': trained.iterations,
            'timing': {'train_s': round(train_s, 3), 'iters_trained': iters,
                       's_per_iter': round(train_s / iters, 6) if iters else None}}
