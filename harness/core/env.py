"""What a run record says about the machine and the software (no heavy imports)."""
from __future__ import annotations

import functools
import os
import platform
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from harness.core import cpu

# Distributions whose versions every record carries (None when absent).
PACKAGES = ('torch', 'numpy', 'spconv', 'spconv-cu118', 'cumm', 'mmengine', 'mmcv', 'mmcv-lite',
            'mmdet', 'mmdet3d', 'influencerformer')


def package_versions() -> dict[str, str | None]:
    """Installed versions of PACKAGES, read from metadata (nothing imported)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# What the harness writes inside its own checkout: run records and tables go to results/
# by default, so they must not make the code that wrote them look modified (data/ and
# work_dirs/ are git-ignored). Anything else uncommitted, untracked files included, is.
OUTPUT_DIRS = ('results',)
# Untracked files under a folder of these names, at any depth, are the harness's own outputs
# (the default --runs / --out / --work-dirs, relative to wherever a command was run from).
OUTPUT_NAMES = ('results', 'work_dirs')


def git(path: Path, *args: str) -> str | None:
    """stdout of ``git -C path args``; None where git, the checkout or the object is missing."""
    try:
        return subprocess.run(['git', '-C', str(path), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def git_state(path: Path, outputs: tuple[str, ...] = (), extra: tuple[Path, ...] = ()) -> dict[str, str | bool | None]:
    """SHA and dirty flag of the git checkout holding ``path``; both None where git or a checkout is missing.

    ``dirty`` is None (unknown, never "clean") when the commit is unknown.

    Args:
        outputs: folders (from the checkout's root) whose changes do not count as dirty.
        extra: this invocation's output folders (runs, work dirs, data), anywhere: inside the
            checkout their files do not count as dirty either.
    """
    sha = (git(path, 'rev-parse', 'HEAD') or '').strip() or None
    top = (git(path, 'rev-parse', '--show-toplevel') or '').strip() if sha else ''
    skip = [*outputs, *_inside(Path(top), extra)] if top else list(outputs)
    pathspec = [':/', *(f':(top,exclude){d}' for d in skip)]
    # every untracked file, not its folder: an output folder among new code must not hide the code
    status = git(path, 'status', '--porcelain', '--untracked-files=all', '--', *pathspec) if sha else None
    if status is None:
        return {'sha': sha, 'dirty': None}
    changes = [line for line in status.splitlines() if line.strip() and not _own_output(line)]
    return {'sha': sha, 'dirty': bool(changes)}


def checkout_commit(root: Path) -> str | None:
    """HEAD of the git checkout whose top folder is ``root``; None where ``root`` is not one (a plain
    copy, even inside another checkout, whose HEAD is not this folder's commit)."""
    top = (git(root, 'rev-parse', '--show-toplevel') or '').strip()
    if not top or Path(top).resolve() != Path(root).resolve():
        return None
    return (git(root, 'rev-parse', 'HEAD') or '').strip() or None


# The code a run's numbers depend on, beyond what its config hash and upstream commit already fix:
# the criteria, the backends (models, training, derivation), the data layer, the evaluator, the CPU
# pin and config trees. Not the verbs, reporting, bench, study bookkeeping, record metadata (this
# module) or docs: a commit that changes only those trains and scores the same runs, so a study
# spanning sessions is not split by it.
# The run's own backend, ``harness/backends/<name>``, is added per run (:func:`result_paths`).
RESULT_CODE = ('influencerformer', 'harness/data', 'harness/evaluation', 'harness/core/cpu.py', 'harness/core/tree.py')


def result_paths(backend: str | None) -> tuple[str, ...] | None:
    """RESULT_CODE plus the backend's own package; None for a backend name that is not a plain name."""
    if not backend or not re.fullmatch(r'[a-z0-9_]+', backend):
        return None
    return (*RESULT_CODE, f'harness/backends/{backend}')


def code_identity(sha: str | None, paths: tuple[str, ...],
                  checkout: Path = Path(__file__).resolve().parent) -> str | None:
    """Git's object ids of ``paths`` at commit ``sha`` in the checkout holding ``checkout``, joined.

    Equal content gives equal ids (git hashes trees by content), so two commits that differ
    only outside ``paths`` give the same identity. None where git, the checkout or the
    commit is not available here (then only the commit itself can say two runs are alike).
    """
    if not sha or not re.fullmatch(r'[0-9a-f]{7,40}', sha):   # a record is data: never an option to git
        return None
    out = (git(checkout, 'rev-parse', *(f'{sha}:{p}' for p in paths)) or '').split()
    return ' '.join(f'{p}={oid}' for p, oid in zip(paths, out)) if len(out) == len(paths) else None


@functools.lru_cache(maxsize=None)
def result_code(sha: str | None, backend: str | None) -> str | None:
    """A run's result code: :func:`code_identity` of ``result_paths(backend)`` at ``sha``, or the
    commit itself where git cannot read that here (then only an equal commit is the same code).

    compare's one-setting rule and the runner's check before training both use this, so what
    the runner refuses is exactly what compare would leave out.
    """
    paths = result_paths(backend)
    return (code_identity(sha, paths) if paths else None) or sha


def harness_sha() -> str | None:
    """The commit of the checkout this harness runs from (None without git or a checkout)."""
    return (git(Path(__file__).resolve().parent, 'rev-parse', 'HEAD') or '').strip() or None


def _inside(top: Path, folders: tuple[Path, ...]) -> list[str]:
    """Those of ``folders`` inside the checkout at ``top``, relative to it (POSIX paths)."""
    out = []
    for folder in folders:
        try:
            rel = Path(folder).resolve().relative_to(top.resolve())
        except (ValueError, OSError):
            continue
        if rel.parts:
            out.append(rel.as_posix())
    return out


def _own_output(line: str) -> bool:
    """An untracked entry of ``git status --porcelain`` under a results/ or work_dirs/ folder."""
    return line.startswith('?? ') and any(part in OUTPUT_NAMES for part in Path(line[3:].strip('"')).parts)


def hardware() -> dict:
    """CPU model and count, RAM, and GPUs (through torch only if it is imported anyway)."""
    cpu = platform.processor() or None
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        kib = int(Path('/proc/meminfo').read_text().split('\n')[0].split()[1])
        ram_gib = round(kib / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    gpus: list[str] = []
    cuda = cudnn = None
    try:
        import torch
        cuda, cudnn = torch.version.cuda, torch.backends.cudnn.version()
        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        pass
    return {'cpu': cpu, 'cpu_count': os.cpu_count(), 'ram_gib': ram_gib, 'gpus': gpus,
            'gpu_count': len(gpus), 'cuda': cuda, 'cudnn': cudnn}


def capture(outputs: tuple[Path, ...] = ()) -> dict:
    """Everything a run record needs to say where and with what it ran.

    Args:
        outputs: the invocation's output folders (runs, work dirs, data): not a dirty tree.
    """
    return {
        'host': socket.gethostname(),
        'python': platform.python_version(),
        'platform': platform.platform(),
        'versions': package_versions(),
        'hardware': hardware(),
        'harness_git': git_state(Path(__file__).resolve().parent, OUTPUT_DIRS, tuple(outputs)),
        # which CPU kernels torch / MKL / oneDNN ran (pinned to AVX2 by `python -m harness`)
        'cpu_kernels': cpu.state(),
        # Set by our Docker images (docker/); absent outside a container.
        'image': {'tag': os.environ.get('HARNESS_IMAGE'), 'digest': os.environ.get('HARNESS_IMAGE_DIGEST')},
    }


def executor() -> dict:
    """Where this process runs: ``local`` (host) or ``slurm`` (job id, array index, node, partition, GPUs)."""
    env = os.environ
    gpus = env.get('CUDA_VISIBLE_DEVICES')
    if 'SLURM_JOB_ID' not in env:
        return {'kind': 'local', 'host': socket.gethostname(), 'cuda_visible_devices': gpus}
    return {'kind': 'slurm', 'job_id': env['SLURM_JOB_ID'], 'array_job_id': env.get('SLURM_ARRAY_JOB_ID'),
            'array_task_id': env.get('SLURM_ARRAY_TASK_ID'), 'node': env.get('SLURMD_NODENAME'),
            'partition': env.get('SLURM_JOB_PARTITION'), 'restarts': env.get('SLURM_RESTART_COUNT'),
            'cuda_visible_devices': gpus, 'host': socket.gethostname()}


@dataclass(frozen=True)
class Queued:
    """What Slurm says of one job id.

    Attributes:
        state: RUNNING, PENDING, ...; None where Slurm does not know the job (ended long enough
            ago, or never submitted to this cluster).
        submitted: when this cluster's job of that id was submitted (Unix seconds; None if unknown).
        reason: why it waits (Slurm's reason: Priority, JobHeldUser, ...); '' when it does not.
    """

    state: str | None
    submitted: float | None = None
    reason: str = ''


def squeue_job(job_id: str) -> Queued | None:
    """Slurm's state and submit time of a job; None where no Slurm answers here (no squeue, no controller)."""
    try:
        out = subprocess.run(['squeue', '-h', '-j', str(job_id), '-o', '%T|%V|%r'], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return Queued(None) if 'Invalid job id' in out.stderr else None
    lines = out.stdout.strip().splitlines()
    return _queued(*(lines[0].split('|') + ['', ''])[:3]) if lines else Queued(None)


def squeue_all() -> dict[str, Queued] | None:
    """Every job Slurm queues or runs now, by job id (array tasks one by one, as ``<array>_<task>``),
    from one squeue call; None where no Slurm answers here. A job id missing from it is not queued."""
    try:
        # -r: one line per array task, so a pending task is found under its own id, not "1_[2-57%2]"
        out = subprocess.run(['squeue', '-h', '-r', '-o', '%i|%T|%V|%r'], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    jobs = {}
    for line in out.stdout.strip().splitlines():
        job, state, when, reason = (line.split('|') + ['', '', ''])[:4]
        jobs[job.strip()] = _queued(state, when, reason)
    return jobs


def _queued(state: str, when: str, reason: str) -> Queued:
    """A Queued from squeue's ``%T|%V|%r`` fields."""
    try:
        submitted = time.mktime(time.strptime(when.strip(), '%Y-%m-%dT%H:%M:%S'))   # squeue prints local time
    except ValueError:
        submitted = None
    return Queued(state.strip() or None, submitted, '' if reason.strip() == 'None' else reason.strip())
