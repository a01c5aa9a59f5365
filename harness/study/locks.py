"""One process per run: ``<run folder>/.lock`` names its holder (host, pid and the pid's start time).

A lock whose process is gone (same host; a reused pid counts as gone) or whose Slurm
job no longer runs is stale: reported and taken over. A lock from another host is
never taken over automatically (its process cannot be checked from here).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

from harness.core import env
from harness.core.errors import HarnessError
from harness.core.io import now

LOCK = '.lock'


@contextlib.contextmanager
def lock(folder: Path, owner: dict | None = None) -> Iterator[None]:
    """Hold ``<folder>/.lock`` while a process trains the run: a second one is refused.

    A lock left by a process that no longer runs (same host) is stale: it is
    reported and taken over.

    Raises:
        HarnessError: another live process holds the lock (names it).
    """
    path = Path(folder) / LOCK
    mine = {'host': socket.gethostname(), 'pid': os.getpid(), 'pid_started': process_started(os.getpid()),
            'since': now(),
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
            why = 'now another process' if holder and _pid_reused(holder) else 'not running'
            print(f'note: {folder.name}: stale lock of pid {(holder or {}).get("pid")} on '
                  f'{(holder or {}).get("host")} ({why}) taken over')
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
    except (OSError, ValueError):
        return None   # torn lock file: its writer died before finishing it


def _stale(holder: dict) -> bool:
    """A holder whose process is gone: on this host by its pid; a Slurm job by its job id.

    A Slurm job's lock is stale when the job is this very job (requeued after a
    time limit or preemption) or when Slurm no longer runs it. Job ids restart when
    a cluster is set up again: a running job submitted after the lock was taken is
    another job, so it does not keep the lock alive.
    """
    job = holder.get('slurm_job_id')
    if job:
        if job == os.environ.get('SLURM_JOB_ID'):
            return True
        answer = env.squeue_job(job)
        live = (answer is not None and answer.state in ('RUNNING', 'COMPLETING', 'CONFIGURING', 'SUSPENDED',
                                                         'STOPPED') and not _submitted_after(answer, holder))
        if not live:
            return holder.get('host') != socket.gethostname() or _pid_gone(holder)
        return False
    if holder.get('host') != socket.gethostname():
        return False
    return _pid_gone(holder)


# Clocks of the submitting host and the lock's node may differ by this much
CLOCK_SKEW_S = 120


def _submitted_after(answer: env.Queued, holder: dict) -> bool:
    """Slurm's job of the holder's id was submitted after the lock was taken (so it is not the holder)."""
    try:
        since = datetime.fromisoformat(holder['since']).timestamp()
    except (KeyError, TypeError, ValueError):
        return False   # a lock without a readable time: the job id alone decides, as before
    return answer.submitted is not None and answer.submitted > since + CLOCK_SKEW_S


def _pid_gone(holder: dict) -> bool:
    """The holder's process no longer exists on this host: its pid is gone, or now names a later process."""
    try:
        os.kill(int(holder['pid']), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError, OverflowError):
        return False
    return _pid_reused(holder)


def _pid_reused(holder: dict) -> bool:
    """The pid runs, but not the process that took the lock (its start time differs): pids are reused."""
    recorded = holder.get('pid_started')
    if recorded is None:   # a lock from before start times were recorded: the pid alone decides
        return False
    try:
        current = process_started(int(holder['pid']))
    except (KeyError, ValueError, TypeError):
        return False
    return current is not None and current != recorded


def process_started(pid: int) -> str | None:
    """When a process started, as the kernel counts it (``/proc/<pid>/stat`` field 22, plus the boot id).

    Together with the pid this names one process: a reused pid has a later start. None where
    /proc is not readable (then only the pid is checked).
    """
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
        boot = Path('/proc/sys/kernel/random/boot_id').read_text().strip()
    except OSError:
        return None
    fields = stat[stat.rindex(')') + 2:].split()   # after "pid (comm) ": field 3 onwards
    return f'{boot}:{fields[19]}' if len(fields) > 19 else None
