"""``python -m harness run``: every run of an experiment spec (arms x seeds x ablation points), as run records."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness import backends
from harness.core.io import result_line
from harness.study.matrix import run_matrix
from harness.study.runner import Batch, prepare_runs, run_all
from harness.study.setup import set_threads
from harness.study.spec import SlurmResources, Spec
from harness.verbs.options import RunRequest, add_backend_arguments, add_selection_arguments, run_options

HELP = 'train + evaluate every run of an experiment spec (native or upstream backend), writing run records'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the run verb."""
    parser.add_argument('--spec', type=Path, required=True, help='experiment spec, e.g. baselines/smoke-native.yaml')
    parser.add_argument('--runs', type=Path, default=Path('results/runs'), help='where run records go')
    parser.add_argument('--work-dirs', type=Path, default=Path('work_dirs'),
                        help='mmengine logs, checkpoints and predictions (not committed)')
    add_selection_arguments(parser)
    parser.add_argument('--force', action='store_true', help='new attempts of finished runs (old ones kept)')
    parser.add_argument('--data', type=Path, default=None,
                        help="prepared data root instead of the spec's (must exist: never generated)")
    parser.add_argument('--only', nargs='+', default=None, metavar='RUN_ID',
                        help='only these run ids of the matrix (what each Slurm job runs)')
    add_backend_arguments(parser)
    ex = parser.add_argument_group('where runs execute')
    ex.add_argument('--executor', choices=('local', 'slurm'), default='local',
                    help='local: one after another in this process; slurm: one job per run (a job array)')
    ex.add_argument('--wait', action='store_true', help='slurm: wait with a progress bar; exit 1 if a run failed')
    ex.add_argument('--container', default=None,
                    help="slurm: run each job in the image, e.g. apptainer:/path/influencerformer.sif "
                         "(default: the spec's container)")
    for name, kind, what in (('partition', str, 'partition'), ('account', str, 'account'), ('qos', str, 'QOS'),
                             ('time-min', int, 'time limit per job, minutes'),
                             ('gpus-per-job', int, 'GPUs per job'), ('cpus-per-task', int, 'CPUs per job'),
                             ('mem-gb', int, 'memory per job, GB'), ('constraint', str, 'node constraint'),
                             ('array-parallelism', int, 'jobs of the array running at once')):
        ex.add_argument(f'--slurm-{name}', type=kind, default=None,
                        help=f"slurm: {what} (default: the spec's slurm block, else harness.study.spec.SlurmResources)")


def run(args: argparse.Namespace) -> int:
    """Every run; a failed run is recorded as failed and the others go on (exit 1 if any failed)."""
    request = RunRequest.from_args(args)
    return run_requested(request)


def run_requested(request: RunRequest) -> int:
    """Every run ``request`` selects, here or as Slurm jobs (the body of ``run``, past the command line)."""
    t0 = time.perf_counter()
    spec, backend = backends.load(request.spec)
    points = run_matrix(spec, request.selection)
    options = run_options(request, backend)
    print(f'{spec.experiment}: {len(points)} runs ({spec.backend} backend, {request.executor})')
    if request.executor == 'slurm':
        from harness.execution import container, slurm
        slurm.check_available()
        image = container.parse(request.container or spec.container)
        resources = spec.slurm.with_flags(request.slurm_flags)   # a bad flag is refused before data is prepared
        return submit_to_slurm(prepare_runs(spec, backend, points, options), resources, image, request.wait, t0)
    set_threads(spec)
    return finish(spec, run_all(prepare_runs(spec, backend, points, options)), t0)


def finish(spec: Spec, status: dict[str, str], t0: float, **extra) -> int:
    """The RESULT line; exit 1 if any run failed or was refused."""
    failed = sorted(k for k, v in status.items() if v.startswith(('failed', 'refused')))
    for rid in failed:
        print(f'{status[rid]}: {rid}', file=sys.stderr)
    print(result_line('run', 'ok' if not failed else 'failed', experiment=spec.experiment, runs=status,
                      failed=failed, minutes=round((time.perf_counter() - t0) / 60, 2), **extra))
    return 1 if failed else 0


def submit_to_slurm(batch: Batch, resources: SlurmResources, image: Path | None, wait: bool, t0: float) -> int:
    """Submit the planned runs still to do (refusals and data came first); with ``wait``, wait for them."""
    from harness.execution import slurm
    jobs, folder = slurm.submit(batch, resources, image)
    for rid, job in jobs:
        print(f'submitted {rid}: job {job.job_id}')
    done = {p.point.run_id: 'done (already finished)' for p in batch.plans if p.action == 'done'}
    if not wait:
        print(result_line('run', 'submitted', experiment=batch.spec.experiment,
                          jobs={r: j.job_id for r, j in jobs}, done=sorted(done), submission=str(folder)))
        return 0
    return finish(batch.spec, {**done, **slurm.wait(jobs)}, t0, submission=str(folder))
