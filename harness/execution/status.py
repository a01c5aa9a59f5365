"""The state of a run matrix, from records, Slurm submissions and the runs' own logs.

States: ``pending`` (submitted, no record yet), ``to run`` (in the spec's
matrix, never started), ``running`` (a live process holds its lock:
iteration and ETA from its logs), ``interrupted`` (record open, nobody holds
it: ``run`` resumes it), ``finished``, ``failed`` (with the error's first
line), ``refused`` (its recorded config differs from what the spec derives
now; only with ``--spec``).
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.core.env import squeue_state
from harness.study import records
from harness.study.matrix import RunPoint

SUBMISSIONS = '.submissions'   # harness.execution.slurm writes them there


def submitted(runs: Path) -> dict[str, dict]:
    """run id -> its latest submission entry (job id, command) across ``<runs>/.submissions/*``."""
    out: dict[str, dict] = {}
    for path in sorted((Path(runs) / SUBMISSIONS).glob('*/submission.json')):
        try:
            entries = json.loads(path.read_text())['runs']
        except (OSError, json.JSONDecodeError, KeyError):
            continue   # a torn submission file says nothing reliable
        for entry in entries:
            out[entry['run_id']] = entry
    return out


def progress(record: dict) -> tuple[int | None, float | None]:
    """(last logged training iteration, seconds per iteration over the last 20) from the run's work dir."""
    work = Path(record.get('work_dir') or '')
    logs = sorted(work.glob('**/vis_data/scalars.json'), key=lambda p: p.stat().st_mtime) if work.is_dir() else []
    if not logs:
        return None, None
    rows = [json.loads(line) for line in logs[-1].read_text().splitlines()[-200:] if '"loss"' in line]
    if not rows:
        return None, None
    times = [r['time'] for r in rows[-20:] if isinstance(r.get('time'), (int, float))]
    return int(rows[-1].get('step', 0)), (sum(times) / len(times) if times else None)


def row(rid: str, folders: list[Path], submission: dict | None) -> dict:
    """One line of the table for one run id."""
    out = {'run_id': rid, 'attempts': len(folders), 'job': (submission or {}).get('job_id'), 'detail': ''}
    if not folders:
        state = squeue_state(out['job']) if out['job'] else None
        return {**out, 'state': 'pending' if submission else 'to run', 'detail': state or ''}
    record = records.load_record(folders[-1] / 'run.json')
    where = record.get('executor') or {}
    if where.get('array_job_id'):
        out['job'] = f"{where['array_job_id']}_{where['array_task_id']}"
    elif where.get('job_id'):
        out['job'] = where['job_id']
    if record['status'] != 'running':
        detail = record.get('error') or ''
        return {**out, 'state': record['status'], 'detail': detail.splitlines()[0][:100] if detail else ''}
    holder = records.lock_holder(folders[-1])
    if not holder or not holder['alive']:
        return {**out, 'state': 'interrupted', 'detail': 'run again to resume'}
    step, spi = progress(record)
    total = record.get('iterations')
    eta = f', ETA {(total - step) * spi / 60:.0f} min' if step is not None and spi and total else ''
    where = holder.get('slurm_job_id') or holder.get('host')
    return {**out, 'state': 'running', 'detail': f'iteration {step}/{total or "?"}{eta} ({where})'}


def table(runs: Path, matrix: list[RunPoint] | None = None, refused: set[str] = frozenset()) -> list[dict]:
    """Rows for every run of ``matrix`` (or every run id with a record or a submission)."""
    subs = submitted(runs)
    ids = [p.run_id for p in matrix] if matrix is not None else sorted(
        {r['run_id'] for r in records.load_runs(runs)} | set(subs)) if Path(runs).is_dir() else []
    rows = []
    for rid in ids:
        folders = records.attempts(runs, rid) if Path(runs).is_dir() else []
        r = row(rid, folders, subs.get(rid))
        if rid in refused:
            r = {**r, 'state': 'refused', 'detail': 'its config differs from what the spec derives now'}
        rows.append(r)
    return rows
