"""The state of a run matrix, from records, Slurm submissions and the runs' own logs.

States: ``pending`` (submitted, no record yet, and Slurm still queues that
very job), ``to run`` (in the spec's matrix, never started; a submitted job
Slurm no longer queues, or whose id now names another submission's job, e.g.
after the cluster was set up again, says so), ``submitted`` (no Slurm
answers here, so whether its job is queued is unknown), ``running`` (a live
process holds its lock: iteration and ETA from its logs), ``interrupted`` (record open, nobody holds
it: ``run`` resumes it), ``finished``, ``failed`` (with the error's first
line), ``refused`` (its recorded config differs from what the spec derives
now; only with ``--spec``).
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from harness.core.env import Queued, squeue_all
from harness.core.errors import HarnessError
from harness.study import locks, records

if TYPE_CHECKING:   # the matrix module imports the criteria (torch): a status without --spec needs neither
    from harness.study.matrix import RunPoint

SUBMISSIONS = '.submissions'   # harness.execution.slurm writes them there


def submitted(runs: Path, strict: bool = False) -> dict[str, dict]:
    """run id -> its latest submission entry (job id, command, and its submission's ``experiment`` and
    ``submitted_at`` as Unix seconds) across ``<runs>/.submissions/*``.

    Args:
        strict: a torn or unreadable submission.json raises instead of being passed over (status
            shows what it can; the blinding of a study under way must not miss queued runs).

    Raises:
        HarnessError: with ``strict``, a submission.json that is no submission; names it.
    """
    out: dict[str, dict] = {}
    for path in sorted((Path(runs) / SUBMISSIONS).glob('*/submission.json')):
        try:
            submission = json.loads(path.read_text())
            entries = submission['runs']
            if not isinstance(entries, list):
                raise TypeError(f'runs is a {type(entries).__name__}, not a list')
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
            if strict:
                raise HarnessError(f'{path}: unreadable Slurm submission ({type(err).__name__}: {err}); restore it, '
                                   'or move its folder out of .submissions if that submission never ran') from err
            continue   # a torn submission file says nothing reliable
        when = unix_seconds(submission.get('submitted_at'))
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get('run_id'), str):   # an edited entry says nothing
                out[entry['run_id']] = {**entry, 'experiment': submission.get('experiment'), 'submitted_at': when}
    return out


def unix_seconds(stamp: object) -> float | None:
    """An ISO time with its offset (``records.now()``) as Unix seconds; None if it is not one."""
    try:
        return datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else None
    except ValueError:
        return None


# A job is the submission's own when Slurm's submit time is this close to the submission's
# (submission.json is written right after the array is submitted; minutes cover a slow submit)
SAME_SUBMISSION_S = 600


def queued(entry: dict, queue: dict[str, Queued] | None) -> tuple[str, str]:
    """(state, detail) of a submitted run with no record yet, from what Slurm says of its job now.

    ``queue`` is ``squeue_all()``'s answer (None: no Slurm answers here). Job ids restart when a
    cluster is set up again (a fresh machine, its state lost), so a job id Slurm knows is the
    submission's own only if Slurm's submit time is the submission's.
    """
    job = entry.get('job_id')
    answer = None if not job or queue is None else queue.get(str(job), Queued(None))
    if answer is None:
        return 'submitted', 'no Slurm answers here: queued or not is unknown'
    ours = answer.state and (answer.submitted is None or entry.get('submitted_at') is None
                             or abs(answer.submitted - entry['submitted_at']) < SAME_SUBMISSION_S)
    if ours:
        return 'pending', answer.state + (f' ({answer.reason})' if answer.reason else '')
    why = ('now names a job of another submission (the cluster was set up again)' if answer.state
           else 'is no longer queued and never started this run')
    return 'to run', f'job {job} {why}: run again'


def _json_or_none(line: str):
    """A JSON line, or None where it does not parse (the last line of a log the run is appending to)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def progress(record: dict) -> tuple[int | None, float | None]:
    """(last logged training iteration, seconds per iteration over the last 20) from the run's work dir."""
    work = Path(record.get('work_dir') or '')
    logs = sorted(work.glob('**/vis_data/scalars.json'), key=lambda p: p.stat().st_mtime) if work.is_dir() else []
    if not logs:
        return None, None
    rows = [row for line in logs[-1].read_text().splitlines()[-200:] if '"loss"' in line
            and isinstance(row := _json_or_none(line), dict)]
    if not rows:
        return None, None
    times = [r['time'] for r in rows[-20:] if isinstance(r.get('time'), (int, float))]
    return int(rows[-1].get('step', 0)), (sum(times) / len(times) if times else None)


def row(rid: str, folders: list[Path], submission: dict | None, queue: dict[str, Queued] | None) -> dict:
    """One line of the table for one run id; ``queue`` is ``squeue_all()``'s answer."""
    out = {'run_id': rid, 'attempts': len(folders), 'job': (submission or {}).get('job_id'), 'detail': ''}
    if not folders:
        state, detail = queued(submission, queue) if submission else ('to run', '')
        return {**out, 'state': state, 'detail': detail}
    record = records.load_record(folders[-1] / 'run.json')
    where = record.get('executor') or {}
    if where.get('array_job_id'):
        out['job'] = f"{where['array_job_id']}_{where['array_task_id']}"
    elif where.get('job_id'):
        out['job'] = where['job_id']
    if record['status'] != 'running':
        detail = record.get('error') or ''
        return {**out, 'state': record['status'], 'detail': detail.splitlines()[0][:100] if detail else ''}
    holder = locks.lock_holder(folders[-1])
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
    folders = {rid: records.attempts(runs, rid) for rid in ids} if Path(runs).is_dir() else {rid: [] for rid in ids}
    # one squeue call for the whole table rather than one per job, and only if a submitted run
    # has no record yet (a run with a record says its own state)
    queue = squeue_all() if any(rid in subs and not folders[rid] for rid in ids) else None
    rows = []
    for rid in ids:
        r = row(rid, folders[rid], subs.get(rid), queue)
        if rid in refused:
            r = {**r, 'state': 'refused', 'detail': 'its config differs from what the spec derives now'}
        rows.append(r)
    return rows
