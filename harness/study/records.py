"""Run records: ``<runs>/<run_id>[.attemptN]/run.json`` (+ config.json, metrics.json, curves.csv).

Every backend's runs are written here by the runner, and compare and plots
read nothing else. A run id is stable for (experiment, arm, seed, ablation).
Attempt 1 lives in ``<run_id>/``; ``--force`` adds ``<run_id>.attemptN/``
and never touches an earlier attempt. Which attempt counts in the tables is
a rule of compare (docs/run-records.md), not "the latest".
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from harness.core import env
from harness.core.errors import HarnessError
from harness.core.io import atomic_write, now
from harness.core.tree import canonical_hash

SCHEMA_VERSION = 2
STATUSES = ('running', 'finished', 'failed')
REQUIRED = ('schema_version', 'run_id', 'attempt', 'experiment', 'arm', 'seed', 'ablation',
            'backend', 'status', 'started_at')
LOCK = '.lock'


def run_id(experiment: str, arm: str, seed: int, ablation: dict | None = None) -> str:
    """``<experiment>__<arm>__s<seed>``, plus ``__<8 hex>`` of the ablation values if any."""
    rid = f'{experiment}__{arm}__s{seed}'
    if ablation:
        digest = hashlib.sha256(json.dumps(ablation, sort_keys=True).encode()).hexdigest()[:8]
        rid += f'__{digest}'
    return rid


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def folder_of(runs_dir: Path, rid: str, attempt: int = 1) -> Path:
    """The folder of one attempt, proven to lie directly inside ``runs_dir``."""
    name = rid if attempt == 1 else f'{rid}.attempt{attempt}'
    folder = Path(runs_dir) / name
    if folder.resolve().parent != Path(runs_dir).resolve():
        raise HarnessError(f'run id {rid!r} would write outside {runs_dir}; rename the experiment or arm')
    return folder


def attempts(runs_dir: Path, rid: str) -> list[Path]:
    """Folders of every attempt of a run id that has a run.json, in attempt order."""
    out, n = [], 1
    while (folder := folder_of(runs_dir, rid, n)).exists():
        out.append(folder)
        n += 1
    return out


class RunRecord:
    """One run's ``run.json`` in memory: the runner holds it from start to finish.

    Every change is merged into :attr:`fields` and saved at once (atomically);
    nothing re-reads what was just written.

    Attributes:
        folder: the attempt's folder; fields: the record (keys in docs/run-records.md).
    """

    def __init__(self, folder: Path, fields: dict[str, Any]) -> None:
        self.folder, self.fields = Path(folder), fields

    @classmethod
    def load(cls, folder: Path) -> 'RunRecord':
        """The record of an attempt folder (validated; see :func:`load_record`)."""
        return cls(folder, load_record(Path(folder) / 'run.json'))

    @classmethod
    def create(cls, runs_dir: Path, rid: str, **fields: Any) -> 'RunRecord':
        """The next attempt's folder and record (status running, no session yet), written at once."""
        attempt = len(attempts(runs_dir, rid)) + 1
        folder = folder_of(runs_dir, rid, attempt)
        record = cls(folder, {'schema_version': SCHEMA_VERSION, 'run_id': rid, 'attempt': attempt, **fields,
                              'status': 'running', 'error': None, 'started_at': now(), 'env': env.capture(),
                              'sessions': [], 'checkpoint': {'evaluated': 'last'}})
        _write(folder, record.fields, overwrite=False)
        return record

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def update(self, **fields: Any) -> None:
        """Merge ``fields`` and save."""
        self.fields.update(fields)
        _write(self.folder, self.fields, overwrite=True)

    def begin_session(self, session: dict[str, Any] | None = None, **fields: Any) -> None:
        """Status running and a new session (a process working on the run) with its start time.

        Args:
            session: extra fields of the session entry (e.g. where it executes).
            fields: record fields to set in the same write.
        """
        sessions = self.fields.get('sessions', []) + [{'started_at': now(), 'started_unix': time.time(),
                                                       'host': socket.gethostname(), 'pid': os.getpid(),
                                                       **(session or {})}]
        self.update(status='running', error=None, sessions=sessions, **fields)

    def finish(self, status: str = 'finished', error: str | None = None, **fields: Any) -> None:
        """Close the run: status, end time, and wall seconds summed over its sessions (downtime excluded)."""
        if status not in ('finished', 'failed'):
            raise ValueError(f'finish status must be finished or failed, got {status!r}')
        sessions = list(self.fields.get('sessions', []))
        if sessions and 'seconds' not in sessions[-1]:
            sessions[-1] = {**sessions[-1], 'ended_at': now(),
                            'seconds': round(time.time() - sessions[-1]['started_unix'], 3)}
        wall = round(sum(s.get('seconds', 0.0) for s in sessions), 3)
        self.update(status=status, error=error, ended_at=now(), wall_s=wall, sessions=sessions, **fields)


def new_attempt(runs_dir: Path, rid: str, **fields: Any) -> Path:
    """Create the next attempt's folder and record (status running, no session yet); returns the folder."""
    return RunRecord.create(runs_dir, rid, **fields).folder


def begin_session(folder: Path, **fields: Any) -> dict:
    """One-shot :meth:`RunRecord.begin_session` on a record read from disk; returns the record."""
    record = RunRecord.load(folder)
    record.begin_session(session=fields)
    return record.fields


def update_record(folder: Path, **fields: Any) -> dict:
    """One-shot :meth:`RunRecord.update` on a record read from disk; returns the record."""
    record = RunRecord.load(folder)
    record.update(**fields)
    return record.fields


def finish_run(folder: Path, status: str = 'finished', error: str | None = None, **fields: Any) -> dict:
    """One-shot :meth:`RunRecord.finish` on a record read from disk; returns the record."""
    record = RunRecord.load(folder)
    record.finish(status, error, **fields)
    return record.fields


def _write(folder: Path, record: dict, overwrite: bool) -> None:
    atomic_write(folder / 'run.json', json.dumps(record, indent=1, sort_keys=False) + '\n',
                 overwrite=overwrite)


def load_record(path: Path) -> dict:
    """Read and validate one run.json.

    Raises:
        HarnessError: unreadable, not a JSON object, another schema version,
            missing keys or unknown status; the message names the file and the fix.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise HarnessError(f'{path}: unreadable run record ({err}); restore it or move the run folder away') from err
    if not isinstance(record, dict):
        raise HarnessError(f'{path}: not a run record (a JSON {type(record).__name__}, expected an object); '
                           'restore it or move the run folder away')
    if record.get('schema_version') != SCHEMA_VERSION:
        raise HarnessError(f'{path}: run record schema {record.get("schema_version")!r}, this harness reads '
                           f'{SCHEMA_VERSION}; re-run into a new --runs folder (or read it with the harness '
                           'version that wrote it)')
    missing = [k for k in REQUIRED if k not in record]
    if missing or record['status'] not in STATUSES:
        raise HarnessError(f'{path}: corrupt run record (missing {missing}, status {record.get("status")!r}); '
                           'restore it or move the run folder away')
    return record


def load_runs(runs_dir: Path) -> list[dict]:
    """Every record under ``runs_dir`` (one folder each), with ``_dir`` set to its folder."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise HarnessError(f'{runs_dir}: no such runs folder; pass --runs pointing at results/runs')
    records = []
    for path in sorted(runs_dir.glob('*/run.json')):
        record = load_record(path)
        record['_dir'] = str(path.parent)
        records.append(record)
    return records


def write_config(folder: Path, config: dict) -> dict:
    """``config.json`` (the resolved run config) and its record entry ``{path, sha256}``.

    The sha256 is of the canonical JSON, so equal configs hash equally whatever
    their key order.
    """
    atomic_write(Path(folder) / 'config.json', json.dumps(config, indent=1) + '\n', overwrite=True)
    return {'path': 'config.json', 'sha256': canonical_hash(config)}


def read_config(folder: Path) -> dict | None:
    """A run's config.json, or None if it has none."""
    return _read_json(Path(folder) / 'config.json', 'restore it or pass --force for a new attempt')


def write_metrics(folder: Path, metrics: dict) -> Path:
    """metrics.json of a run (the evaluator's record, see harness.evaluation.folder)."""
    return atomic_write(Path(folder) / 'metrics.json', json.dumps(metrics, indent=1) + '\n', overwrite=True)


METRIC_KEYS = ('ap', 'ap50', 'ap25', 'ap75', 'per_class')


def load_metrics(folder: Path) -> dict | None:
    """A run's metrics.json, or None if it has none.

    Raises:
        HarnessError: not JSON, or without a key the tables need (named, with the fix).
    """
    path = Path(folder) / 'metrics.json'
    metrics = _read_json(path, 're-run the evaluation of this run')
    if metrics is None:
        return None
    missing = [k for k in METRIC_KEYS if not isinstance(metrics, dict) or k not in metrics]
    if missing:
        raise HarnessError(f'{path}: no {", ".join(missing)}; re-evaluate the run '
                           f'(python -m harness evaluate <work_dir>/predictions --out {path} --force)')
    return metrics


def _read_json(path: Path, fix: str) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise HarnessError(f'{path}: not JSON ({err}); {fix}') from err


@contextlib.contextmanager
def lock(folder: Path, owner: dict | None = None) -> Iterator[None]:
    """Hold ``<folder>/.lock`` while a process trains the run: a second one is refused.

    A lock left by a process that no longer runs (same host) is stale: it is
    reported and taken over.

    Raises:
        HarnessError: another live process holds the lock (names it).
    """
    path = Path(folder) / LOCK
    mine = {'host': socket.gethostname(), 'pid': os.getpid(), 'since': now(),
            'slurm_job_id': os.environ.get('SLURM_JOB_ID'), **(owner or {})}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            holder = _holder(path)
            if holder is None and time.time() - _mtime(path) < 5:
                time.sleep(0.2)   # its writer may still be writing it
                continue
            if holder is not None and not _stale(holder):
                raise HarnessError(f'{folder.name}: being trained by pid {holder.get("pid")} on '
                                   f'{holder.get("host")} since {holder.get("since")}; wait for it or stop it; '
                                   f'if nothing trains it any more, remove {path}') from None
            print(f'note: {folder.name}: stale lock of pid {(holder or {}).get("pid")} on '
                  f'{(holder or {}).get("host")} (not running) taken over')
            path.unlink(missing_ok=True)
    with os.fdopen(fd, 'w') as f:
        json.dump(mine, f)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def lock_holder(folder: Path) -> dict | None:
    """Who holds a run's lock and whether it is still alive: the holder's fields + ``alive``; None if unlocked."""
    path = Path(folder) / LOCK
    if not path.exists():
        return None
    holder = _holder(path) or {}
    return {**holder, 'alive': bool(holder) and not _stale(holder)}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None   # torn lock file: its writer died before finishing it


def _stale(holder: dict) -> bool:
    """A holder whose process is gone: on this host by its pid; a Slurm job by its job id.

    A Slurm job's lock is stale when the job is this very job (requeued after a
    time limit or preemption) or when Slurm no longer runs it.
    """
    job = holder.get('slurm_job_id')
    if job:
        if job == os.environ.get('SLURM_JOB_ID'):
            return True
        if env.squeue_state(job) not in ('RUNNING', 'COMPLETING', 'CONFIGURING', 'SUSPENDED', 'STOPPED'):
            return holder.get('host') != socket.gethostname() or _pid_gone(holder)
        return False
    if holder.get('host') != socket.gethostname():
        return False
    return _pid_gone(holder)


def _pid_gone(holder: dict) -> bool:
    """The holder's pid no longer exists on this host."""
    try:
        os.kill(int(holder['pid']), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False
    return False
