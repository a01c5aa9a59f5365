"""The run matrix as a Slurm job array through submitit: one job per run, each the same runner.

The submitting process plans first (derive, classify: refusals stop everything
before a job is submitted), makes the data, then submits the runs still to
do. Each job runs ``python -m harness run --spec <the staged copy> --only
<run id>`` (inside the image when a container is configured), so records,
resume and refusals are exactly those of a local run. A job that hits its
time limit or is preempted is requeued by submitit and resumes from its last
checkpoint; the run's lock keeps two jobs off one run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import submitit
from submitit.core.utils import FailedJobError
from submitit.helpers import Checkpointable, DelayedSubmission
from tqdm import tqdm

from harness.core.errors import HarnessError
from harness.core.io import atomic_write, now
from harness.execution import container
from harness.execution.status import SUBMISSIONS
from harness.study.backend import RunOptions
from harness.study.runner import Batch
from harness.study.spec import SlurmResources, Spec


def parameters(resources: SlurmResources, name: str) -> dict[str, Any]:
    """submitit's AutoExecutor parameters for these resources."""
    r = resources
    extra = {k: v for k, v in (('slurm_partition', r.partition), ('slurm_account', r.account),
                               ('slurm_qos', r.qos), ('slurm_constraint', r.constraint)) if v}
    gpus = {'gpus_per_node': r.gpus_per_job} if r.gpus_per_job else {}
    return {'name': name, 'timeout_min': r.time_min, 'cpus_per_task': r.cpus_per_task,
            'mem_gb': r.mem_gb, 'slurm_array_parallelism': r.array_parallelism, **gpus, **extra}


class RunJob(Checkpointable):
    """The callable each array element runs: the run's command, in the job's working directory.

    submitit requeues a Checkpointable callable after a time-limit or
    preemption signal (``checkpoint``); the runner then resumes from the run's
    last checkpoint.
    """

    def __call__(self, command: list[str], cwd: str) -> str:
        code = subprocess.run(command, cwd=cwd).returncode
        if code != 0:
            raise RuntimeError(f'{" ".join(command[-2:])}: exited with {code}; the record says why')
        return 'ok'

    def checkpoint(self, command: list[str], cwd: str) -> DelayedSubmission:
        """The same command again: the requeued job resumes the run."""
        return DelayedSubmission(self, command, cwd)


def job_command(spec_copy: Path, run_id: str, options: RunOptions, image: Path | None, gpus: int) -> list[str]:
    """``python -m harness run ... --only <run id>`` for one job (wrapped for the container if any)."""
    cmd = [sys.executable, '-m', 'harness', 'run', '--spec', str(spec_copy.resolve()), '--runs',
           str(Path(options.runs).resolve()), '--work-dirs', str(Path(options.work_dirs).resolve()),
           '--only', run_id]
    paths = {5, 7, 9}
    if options.data is not None:
        cmd += ['--data', str(Path(options.data).resolve())]
        paths.add(len(cmd) - 1)
    extra = options.backend.argv()
    paths |= {len(cmd) + i + 1 for i, flag in enumerate(extra) if flag in getattr(options.backend, 'PATH_FLAGS', ())}
    cmd += extra
    return container.wrap(cmd, paths, image, Path.cwd(), gpus) if image else cmd


def stage(spec: Spec, runs: Path) -> Path:
    """A copy of the spec for the jobs (they read it, not the file the user may edit meanwhile)."""
    folder = Path(runs) / SUBMISSIONS / f'{spec.experiment}-{time.strftime("%Y%m%d-%H%M%S")}-{os.getpid()}'
    folder.mkdir(parents=True, exist_ok=False)
    shutil.copyfile(spec.path, folder / 'spec.yaml')
    return folder


def submit(batch: Batch, resources: SlurmResources, image: Path | None) -> tuple[list, Path]:
    """One array job for every planned run that is not done; writes ``submission.json`` beside the spec copy."""
    spec, options = batch.spec, batch.options
    todo = [p for p in batch.plans if p.action != 'done']
    folder = stage(spec, options.runs)
    commands = [job_command(folder / 'spec.yaml', p.point.run_id, options, image, resources.gpus_per_job)
                for p in todo]
    executor = submitit.AutoExecutor(folder=folder / 'slurm', cluster='slurm')
    executor.update_parameters(**parameters(resources, f'harness-{spec.experiment}'))
    jobs = _map_array(executor, commands, folder, spec) if todo else []
    atomic_write(folder / 'submission.json', json.dumps({
        'experiment': spec.experiment, 'submitted_at': now(), 'spec': str(spec.path),
        'resources': dataclasses.asdict(resources), 'container': str(image) if image else None,
        'runs': [{'run_id': p.point.run_id, 'action': p.action, 'job_id': j.job_id, 'command': c}
                 for p, j, c in zip(todo, jobs, commands)]}, indent=1) + '\n')
    return list(zip([p.point.run_id for p in todo], jobs)), folder


def _map_array(executor: submitit.AutoExecutor, commands: list[list[str]], folder: Path, spec: Spec) -> list:
    """The array job, one element per command; when sbatch refuses it, nothing was queued: the staged
    ``folder`` (and ``.submissions/`` when nothing else is in it) is removed and sbatch's message
    becomes one error line.

    Raises:
        HarnessError: ``<spec>: sbatch refused the job array: <sbatch's message>; ...``.
    """
    said = io.StringIO()   # submitit prints sbatch's stderr itself when sbatch fails: quoted below instead
    try:
        with contextlib.redirect_stderr(said):
            jobs = executor.map_array(RunJob(), commands, [str(Path.cwd())] * len(commands))
    except FailedJobError as err:   # sbatch exited non-zero (FailedSubmissionError: it may have queued)
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):   # .submissions/ too when this made it: other submissions keep it
            folder.parent.rmdir()
        message = ' '.join(str(err).split()) or ' '.join(said.getvalue().split()) or 'no message'
        raise HarnessError(f'{spec.path}: sbatch refused the job array: {message}; nothing was submitted; fix '
                           "the --slurm-* flags or the spec's slurm: block (or the cluster) and run again") from err
    except BaseException:
        sys.stderr.write(said.getvalue())
        raise
    sys.stderr.write(said.getvalue())
    return jobs


class _QuietSacct(logging.Filter):
    """submitit warns on every poll when the cluster keeps no accounting (sacct disabled): once is enough."""

    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if 'Bypassing sacct error' in record.getMessage():
            first, _QuietSacct.seen = not _QuietSacct.seen, True
            return first
        return True


def wait(jobs: list[tuple[str, Any]], poll_s: float = 3.0) -> dict[str, str]:
    """A progress bar over the jobs until every one ended; returns run id -> 'finished' | 'failed: ...'."""
    logging.getLogger('submitit').addFilter(_QuietSacct())
    status: dict[str, str] = {}
    with tqdm(total=len(jobs), desc='slurm', unit='run') as bar:
        while len(status) < len(jobs):
            for rid, job in jobs:
                if rid not in status and job.done():
                    error = job.exception()
                    status[rid] = 'finished' if error is None else f'failed ({_first_line(error)})'
                    bar.update()
                    bar.set_postfix(failed=sum(v != 'finished' for v in status.values()))
            if len(status) < len(jobs):
                time.sleep(poll_s)
    return status


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(error).__name__


def check_available() -> None:
    """sbatch is here; else one line with the fix."""
    if shutil.which('sbatch') is None:
        raise HarnessError('--executor slurm: no sbatch on PATH; run on a Slurm login node (or use --executor local)')
