"""One run lifecycle for every backend.

``prepare_runs``: the backend's checks, then every run's config derived first
(cheap) and classified against its record (:mod:`harness.study.planning`); any
refusal stops the invocation before anything trains. Then the data is made (if
the spec says how) and checked.

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
from dataclasses import dataclass, replace
from pathlib import Path

from harness.core import env
from harness.core.errors import HarnessError, os_error_message
from harness.core.io import atomic_write
from harness.evaluation.folder import evaluate_folder
from harness.study import locks, records
from harness.study.arms import arm_keys
from harness.study.backend import Backend, Prepared, RunContext, RunOptions, Trained
from harness.study.curves import write_curves
from harness.study.matrix import RunPoint
from harness.study.planning import Planned, classify, data_identity, plan, same_code, same_data
from harness.study.records import RunRecord
from harness.study.setup import data_root, ensure_data
from harness.study.spec import Spec


@dataclass(frozen=True)
class Batch:
    """Everything one invocation planned: the runs, and what they share."""

    spec: Spec
    backend: Backend
    options: RunOptions
    prepared: Prepared
    data_root: Path
    plans: list[Planned]


def prepare_runs(spec: Spec, backend: Backend, points: list[RunPoint], options: RunOptions) -> Batch:
    """Everything before training: backend checks, derive + classify (refusals), code, data, data identity."""
    prepared = backend.prepare(spec, options)
    root = data_root(spec, options.data)
    plans = plan(spec, backend, prepared, points, options, root)
    same_code(plans, options, spec.experiment, backend.name)
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
    """One run, start to finish; returns its status (``done (already finished)`` when nothing was to do).

    The run's lock is taken before anything of a new attempt is written, and what to do is
    decided again under it: two invocations of one spec never train one run twice.
    """
    if planned.action == 'done':
        return 'done (already finished)'
    rid = planned.point.run_id
    folder = planned.folder or records.next_folder(batch.options.runs, rid)
    folder.mkdir(parents=True, exist_ok=True)   # only to hold the lock; an empty one is reused later
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(locks.lock(folder))
        except HarnessError as err:   # another process trains it: leave it alone, go on with the others
            print(f'refused: {err}', file=sys.stderr)
            return 'refused (being trained elsewhere)'
        planned = _recheck(batch, planned, folder)
        if planned.action == 'done':
            return 'done (already finished)'
        if planned.action == 'refused':
            print(f'refused: {planned.reason}', file=sys.stderr)
            return 'refused (changed meanwhile)'
        record = RunRecord.load(folder) if planned.action != 'new' else _open_new(batch, planned, folder)
        return _locked(batch, planned, record)


def _recheck(batch: Batch, planned: Planned, folder: Path) -> Planned:
    """What to do with the run, decided again under its lock (another process may have got there first)."""
    if planned.action == 'new' and not (folder / 'run.json').exists():
        return planned
    if planned.action == 'new' and not records.unstarted(records.load_record(folder / 'run.json')):
        return replace(planned, action='refused', reason=f'{folder}: started by another process meanwhile; '
                       'run again to resume or see it (python -m harness status)')
    again = classify(planned.point, planned.derived, replace(batch.options, force=False))
    if again.action != 'new' and again.folder != folder:
        return replace(again, action='refused', reason=f'{again.folder}: a later attempt was started meanwhile; '
                       'run again')
    return replace(again, folder=folder) if again.action == 'new' else again


def _locked(batch: Batch, planned: Planned, record: RunRecord) -> str:
    """The run under its lock: a session, training and evaluation, the record closed either way."""
    resumed = bool(record.get('sessions'))
    where = env.executor()
    work_dir = (Path(batch.options.work_dirs) / record.folder.name).resolve()
    record.begin_session(session={'executor': where}, last_activity=last_activity(work_dir, record.folder),
                         executor=where, work_dir=str(work_dir))
    ctx = RunContext(batch.spec, planned.point, planned.derived, batch.options, batch.prepared, record.folder,
                     work_dir, batch.data_root, resumed)
    try:
        if planned.action != 'complete':
            _train_and_evaluate(batch.backend, ctx, record)
        record.finish()
        return 'finished'
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):   # a full disk must not hide the Ctrl-C
            record.interrupt()   # the session's time is kept; the run stays open and resumes next time
        raise
    except Exception as err:  # noqa: BLE001 - recorded, then the next run goes on
        message = _failure(err, work_dir)
        record.finish(status='failed', error=message)
        print(f'error: {planned.point.run_id}: {message}', file=sys.stderr)
        return 'failed'


def _failure(err: Exception, work_dir: Path) -> str:
    """The first line of a run's failure; a traceback only for a bug (not a user error, not the disk)."""
    if isinstance(err, HarnessError):
        text = str(err)
    elif isinstance(err, OSError):   # a full disk, a read-only folder: the cause and the path, one line
        text = os_error_message(err, work_dir)
    else:
        text = f'{type(err).__name__}: {err}'
        traceback.print_exc()
    return (text.splitlines() or [type(err).__name__])[0]


def last_activity(*folders: Path) -> float | None:
    """The newest modification time (Unix seconds) of any file under ``folders`` (None: no file).

    A session killed outright (``kill -9``, a lost node) never records its end; the files it
    last wrote (logs, checkpoints, its record) say when it stopped working.
    """
    times = [p.stat().st_mtime for folder in folders if Path(folder).is_dir()
             for p in Path(folder).rglob('*') if p.is_file() and p.name != locks.LOCK]
    return max(times, default=None)


def _open_new(batch: Batch, planned: Planned, folder: Path) -> RunRecord:
    """A new attempt's record in ``folder`` (locked), its config.json and the files the backend trains from."""
    point, derived = planned.point, planned.derived
    outputs = (batch.options.runs, batch.options.work_dirs, batch.data_root)
    record = RunRecord.create(batch.options.runs, point.run_id, folder, outputs, experiment=point.experiment,
                              arm=point.arm, seed=point.seed, ablation=point.ablation_dict, backend=batch.backend.name,
                              arm_keys=arm_keys(point.arm), location_keys=list(batch.backend.location_keys),
                              **batch.prepared.record)
    config = records.write_config(record.folder, derived.config)
    for name, text in derived.files.items():
        atomic_write(record.folder / 'configs' / name, text, overwrite=True)
    question = batch.spec.question.as_record() if batch.spec.question else None
    record.update(config=config, config_diff=derived.diff, iterations=derived.iterations,
                  data=data_identity(batch.data_root), threads=batch.spec.threads, question=question)
    return record


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
