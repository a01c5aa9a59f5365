"""Run records: ``<runs>/<run_id>[.attemptN]/run.json`` (+ config.json, metrics.json, curves.csv).

Every backend's runs are written here by the runner, and compare and plots
read nothing else. A run id is stable for (experiment, arm, seed, ablation).
Attempt 1 lives in ``<run_id>/``; ``--force`` adds ``<run_id>.attemptN/``
and never touches an earlier attempt. Which attempt counts in the tables is
a rule of compare (docs/run-records.md), not "the latest".
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from harness.core import env
from harness.core.errors import HarnessError
from harness.core.io import atomic_write, now
from harness.core.tree import canonical_hash
from harness.study.locks import LOCK
from harness.study.record_checks import RecordError, field_problems, metric_problems

SCHEMA_VERSION = 2
STATUSES = ('running', 'finished', 'failed')
REQUIRED = ('schema_version', 'run_id', 'attempt', 'experiment', 'arm', 'seed', 'ablation',
            'backend', 'status', 'started_at')


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
    """Folders of every attempt of a run id that has a run.json, in attempt order.

    A folder without run.json (a full disk or a kill between making the folder and
    writing the record) is no attempt: :func:`next_folder` reuses it.
    """
    out, n = [], 1
    while (folder := folder_of(runs_dir, rid, n)).is_dir() and (folder / 'run.json').exists():
        out.append(folder)
        n += 1
    return out


def next_folder(runs_dir: Path, rid: str) -> Path:
    """The folder of the run's next attempt; one left empty by an interrupted start is reused.

    Raises:
        HarnessError: that folder exists holding files but no run.json (not ours to reuse).
    """
    folder = folder_of(runs_dir, rid, len(attempts(runs_dir, rid)) + 1)
    if folder.exists():
        leftovers = [p.name for p in folder.iterdir() if not _ours(p.name)] if folder.is_dir() else [folder.name]
        if leftovers:
            raise HarnessError(f'{folder}: holds {sorted(leftovers)[:5]} but no run.json, so it is no attempt of '
                               f'{rid}; move it away, then run again')
    return folder


def _ours(name: str) -> bool:
    """Files an interrupted start can leave: the lock and atomic_write's temporary files."""
    return name == LOCK or (name.startswith('.') and name.endswith('.tmp'))


def unstarted(record: dict) -> bool:
    """A record written by a start that never finished (no config entry, no session): not a changed spec.

    The runner writes run.json, then config.json, then the record's ``config`` entry; a crash
    between these leaves a record that nothing ever trained from.
    """
    return 'config' not in record and not record.get('sessions')


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
    def create(cls, runs_dir: Path, rid: str, folder: Path | None = None, outputs: tuple[Path, ...] = (),
               **fields: Any) -> 'RunRecord':
        """An attempt's record (status running, no session yet), written at once.

        Args:
            folder: the attempt's folder (from :func:`next_folder`, under the run's lock), or None: the next one.
                Its run.json may exist only as an :func:`unstarted` record, which is replaced.
            outputs: folders this invocation writes (runs, work dirs, data): not a dirty tree.
        """
        folder = Path(folder) if folder is not None else next_folder(runs_dir, rid)
        attempt = 1 if folder.name == rid else int(folder.name.rsplit('.attempt', 1)[1])
        previous = folder / 'run.json'
        if previous.exists() and not unstarted(load_record(previous)):
            raise HarnessError(f'{previous}: exists; an attempt is never written over (run again: it is resumed)')
        record = cls(folder, {'schema_version': SCHEMA_VERSION, 'run_id': rid, 'attempt': attempt, **fields,
                              'status': 'running', 'error': None, 'started_at': now(),
                              'env': env.capture(outputs), 'sessions': [], 'checkpoint': {'evaluated': 'last'}})
        _write(folder, record.fields, overwrite=previous.exists())
        return record

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def update(self, **fields: Any) -> None:
        """Merge ``fields`` and save."""
        self.fields.update(fields)
        _write(self.folder, self.fields, overwrite=True)

    def begin_session(self, session: dict[str, Any] | None = None, last_activity: float | None = None,
                      **fields: Any) -> None:
        """Status running and a new session (a process working on the run) with its start time.

        A previous session that never recorded its end (killed) is closed first as interrupted,
        its seconds counted up to ``last_activity``, so wall time includes the work it did.

        Args:
            session: extra fields of the session entry (e.g. where it executes).
            last_activity: Unix time of the run's last written file (None: unknown, counted as 0 s).
            fields: record fields to set in the same write.
        """
        sessions = [_closed(s, last_activity) for s in self.fields.get('sessions', [])]
        sessions += [{'started_at': now(), 'started_unix': time.time(), 'host': socket.gethostname(),
                      'pid': os.getpid(), **(session or {})}]
        self.update(status='running', error=None, sessions=sessions, **fields)

    def interrupt(self) -> None:
        """Close the open session as interrupted (Ctrl-C); the run stays ``running`` and resumes next time."""
        sessions = list(self.fields.get('sessions', []))
        if sessions and 'seconds' not in sessions[-1]:
            sessions[-1] = {**sessions[-1], 'ended_at': now(), 'interrupted': True,
                            'seconds': round(time.time() - sessions[-1]['started_unix'], 3)}
            self.update(sessions=sessions)

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


def _closed(session: dict, last_activity: float | None) -> dict:
    """A session entry with its seconds: as recorded, else up to ``last_activity`` (marked interrupted)."""
    if 'seconds' in session:
        return session
    start = session.get('started_unix')
    seconds = max(0.0, last_activity - start) if isinstance(start, (int, float)) and last_activity else 0.0
    return {**session, 'interrupted': True, 'seconds': round(seconds, 3),
            'seconds_from': 'the last file the session wrote (it was killed before recording its end)'}


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
    except (OSError, ValueError) as err:   # ValueError: not JSON, or not UTF-8
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
        raise RecordError(f'{path}: corrupt run record (missing {missing}, status {record.get("status")!r}); '
                          'restore it or move the run folder away', record)
    for key, problem in field_problems(record):
        raise RecordError(f'{path}: corrupt run record: {key} {record.get(key)!r} {problem}; restore it or move '
                          'the run folder away', record)
    return record


def load_runs(runs_dir: Path, skipped: list[tuple[Any, str]] | None = None) -> list[dict]:
    """Every record under ``runs_dir`` (one folder each), with ``_dir`` set to its folder.

    Args:
        skipped: where given, a record with wrong fields (:class:`RecordError`) is left out and
            listed here as (its experiment field, the reason) instead of stopping everything.

    Raises:
        HarnessError: no such folder, or a record that is no run record at all (names the file).
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise HarnessError(f'{runs_dir}: no such runs folder; pass --runs pointing at results/runs')
    records = []
    for path in sorted(runs_dir.glob('*/run.json')):
        try:
            record = load_record(path)
        except RecordError as err:
            if skipped is None:
                raise
            skipped.append((err.record.get('experiment'), str(err)))
            continue
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
    fix = f're-evaluate the run (python -m harness evaluate <work_dir>/predictions --out {path} --force)'
    if missing:
        raise HarnessError(f'{path}: no {", ".join(missing)}; {fix}')
    for key, problem in metric_problems(metrics):
        raise HarnessError(f'{path}: {key} {problem}; {fix}')
    return metrics


def _read_json(path: Path, fix: str) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:   # ValueError: not JSON, or not UTF-8
        raise HarnessError(f'{path}: not JSON ({err}); {fix}') from err
