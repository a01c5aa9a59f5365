"""Run records: ``results/runs/<run_id>/run.json`` (+ metrics.json, curves.csv).

Every backend writes them; compare and plots read nothing else. A run id is
stable for (experiment, arm, seed, ablation values): a finished run is not
redone, an unfinished one resumes, and ``force`` starts a new attempt in
``<run_id>.attempt<N>/`` without touching the old one.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.core import env
from harness.core.errors import HarnessError
from harness.core.io import atomic_write

SCHEMA_VERSION = 1
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


def now() -> str:
    """UTC timestamp, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec='seconds')


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def start_run(runs_dir: Path, experiment: str, arm: str, seed: int, backend: str,
              ablation: dict | None = None, force: bool = False, **fields: Any) -> tuple[Path, str]:
    """Create, resume or skip a run record.

    Args:
        runs_dir: e.g. ``results/runs``.
        fields: extra record fields (config, config_diff, upstream_commit, ...).

    Returns:
        (run folder, action): ``'new'`` (record written, status running),
        ``'resume'`` (an unfinished record exists; status set back to running)
        or ``'done'`` (already finished; nothing written).
    """
    rid = run_id(experiment, arm, seed, ablation)
    folder, attempt = Path(runs_dir) / rid, 1
    if folder.exists():
        record = load_record(folder / 'run.json')
        if not force:
            if record['status'] == 'finished':
                return folder, 'done'
            update_record(folder, status='running', error=None, resumed_at=now())
            return folder, 'resume'
        while folder.exists():
            attempt += 1
            folder = Path(runs_dir) / f'{rid}.attempt{attempt}'
    record = {'schema_version': SCHEMA_VERSION, 'run_id': rid, 'attempt': attempt,
              'experiment': experiment, 'arm': arm, 'seed': seed, 'ablation': ablation or {},
              'backend': backend, 'status': 'running', 'error': None, 'started_at': now(),
              'started_unix': time.time(), 'env': env.capture(),
              'checkpoint': {'evaluated': 'last', 'best': None}, **fields}
    _write(folder, record, overwrite=False)
    return folder, 'new'


def update_record(folder: Path, **fields: Any) -> dict:
    """Merge ``fields`` into the record and write it atomically."""
    record = load_record(Path(folder) / 'run.json')
    record.update(fields)
    _write(Path(folder), record, overwrite=True)
    return record


def finish_run(folder: Path, status: str = 'finished', error: str | None = None, **fields: Any) -> dict:
    """Close a run: status, end time and wall seconds (plus any fields, e.g. iterations)."""
    if status not in ('finished', 'failed'):
        raise ValueError(f'finish_run status must be finished or failed, got {status!r}')
    record = load_record(Path(folder) / 'run.json')
    wall = round(time.time() - record.get('started_unix', time.time()), 3)
    return update_record(folder, status=status, error=error, ended_at=now(), wall_s=wall, **fields)


def _write(folder: Path, record: dict, overwrite: bool) -> None:
    atomic_write(folder / 'run.json', json.dumps(record, indent=1, sort_keys=False) + '\n',
                 overwrite=overwrite)


def load_record(path: Path) -> dict:
    """Read and validate one run.json.

    Raises:
        HarnessError: unreadable, not JSON, unknown schema version, missing
            keys or unknown status; the message names the file.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise HarnessError(f'{path}: unreadable run record ({err}); restore it or move the run folder away') from err
    if not isinstance(record, dict) or record.get('schema_version') != SCHEMA_VERSION:
        version = record.get('schema_version') if isinstance(record, dict) else None
        raise HarnessError(f'{path}: run record schema {version!r}, this harness reads {SCHEMA_VERSION}; '
                           'use the harness version that wrote it')
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


def write_metrics(folder: Path, metrics: dict) -> Path:
    """metrics.json of a run (the evaluator's record, see evaluate_cmd.metrics_record)."""
    return atomic_write(Path(folder) / 'metrics.json', json.dumps(metrics, indent=1) + '\n')


def load_metrics(folder: Path) -> dict | None:
    """A run's metrics.json, or None if it has none."""
    path = Path(folder) / 'metrics.json'
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HarnessError(f'{path}: not JSON ({err}); re-run the evaluation of this run') from err
