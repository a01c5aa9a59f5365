"""The Slurm executor against a real single-node Slurm (tests/slurm_cluster.py), plus its pure parts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import slurm_cluster
from harness.core.errors import HarnessError
from harness.core.io import now
from harness.execution import container, slurm
from harness.study import locks, records
from harness.backends.upstream.backend import UpstreamOptions
from harness.study.backend import RunOptions
from harness.study.spec import SlurmResources

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp('slurm')
    env, pids = slurm_cluster.start(root)
    old = os.environ.get('SLURM_CONF')
    os.environ['SLURM_CONF'] = env['SLURM_CONF']
    yield env
    if old is None:
        os.environ.pop('SLURM_CONF', None)
    else:
        os.environ['SLURM_CONF'] = old
    subprocess.run(['scancel', '--user', 'root'], env=env, capture_output=True)
    slurm_cluster.stop(pids)


def harness(env, *args, timeout=600):
    return subprocess.run([sys.executable, '-m', 'harness', *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def tiny_spec(tmp: Path, iters: int, experiment: str = 'smoke-native') -> Path:
    spec = yaml.safe_load((REPO / 'baselines' / 'smoke-native.yaml').read_text())
    spec.update(experiment=experiment, arms=['hungarian', 'influencer'])
    spec['data'].update(root=str(tmp / 'data'), synth={'rooms_per_area': 1, 'points_per_room': 1500, 'seed': 0},
                        num_points=1500)
    spec['config']['train'].update(iters=iters, val_interval=iters)
    path = tmp / f'{experiment}.yaml'
    path.write_text(yaml.safe_dump(spec))
    return path


def test_the_smoke_study_runs_through_slurm_and_records_name_their_jobs(cluster, tmp_path):
    runs = tmp_path / 'runs'
    # the command, on the embedded default spec (its data generated once into data/smoke-native)
    out = harness(cluster, 'run', '--spec', 'baselines/smoke-native.yaml', '--runs', runs, '--work-dirs',
                  tmp_path / 'work', '--executor', 'slurm', '--wait')
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    finished = records.load_runs(runs)
    assert len(finished) == 3 and all(r['status'] == 'finished' for r in finished)
    for r in finished:
        assert r['executor']['kind'] == 'slurm' and r['executor']['job_id'] and r['executor']['array_job_id']
    status = harness(cluster, 'status', '--runs', runs)
    assert status.returncode == 0 and f'{len(finished)} finished' in status.stdout
    compare = harness(cluster, 'compare', '--runs', runs, '--out', tmp_path / 'out')
    assert compare.returncode == 0, compare.stderr


def _wait_for(predicate, timeout=240, step=0.5):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


def test_a_cancelled_job_resubmitted_resumes_instead_of_restarting(cluster, tmp_path):
    spec = tiny_spec(tmp_path, iters=120, experiment='cancel')
    runs, work = tmp_path / 'runs', tmp_path / 'work'
    first = harness(cluster, 'run', '--spec', spec, '--runs', runs, '--work-dirs', work, '--arms', 'hungarian',
                    '--executor', 'slurm')
    assert first.returncode == 0 and 'submitted cancel__hungarian__s0: job' in first.stdout, first.stderr
    job = first.stdout.split('submitted cancel__hungarian__s0: job ')[1].split()[0]
    folder = runs / 'cancel__hungarian__s0'
    # mid-run: a checkpoint written (every 12 iterations), the lock held by the job
    assert _wait_for(lambda: list((work / folder.name / 'work_dir').glob('iter_*.pth')))
    during = harness(cluster, 'status', '--runs', runs, '--spec', spec)
    assert 'running' in during.stdout and 'iteration' in during.stdout, during.stdout
    subprocess.run(['scancel', job], env=cluster, check=True)
    assert _wait_for(lambda: slurm_state(cluster, job) is None, timeout=60)
    after_cancel = harness(cluster, 'status', '--runs', runs)
    assert 'interrupted' in after_cancel.stdout, after_cancel.stdout
    trained_before = max(int(p.stem.split('_')[1]) for p in (work / folder.name / 'work_dir').glob('iter_*.pth'))

    again = harness(cluster, 'run', '--spec', spec, '--runs', runs, '--work-dirs', work, '--arms', 'hungarian',
                    '--executor', 'slurm', '--wait')
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    record = records.load_record(folder / 'run.json')
    assert record['status'] == 'finished' and len(record['sessions']) == 2
    second = record['sessions'][1]
    assert second['iters'] == 120 - trained_before < 120   # resumed at the checkpoint, not from 0
    assert record['sessions'][0]['executor']['job_id'] != second['executor']['job_id']
    assert harness(cluster, 'status', '--runs', runs).stdout.count('finished') >= 1


def slurm_state(env, job: str) -> str | None:
    out = subprocess.run(['squeue', '-h', '-j', job, '-o', '%T'], env=env, capture_output=True, text=True)
    return out.stdout.strip() or None


def test_status_says_pending_only_for_a_job_slurm_still_queues_for_that_submission(cluster, tmp_path):
    """A study resumed on a fresh machine: its old submission's job ids may be unknown to the new
    cluster, or name another submission's job there; neither is 'pending'. A held job says so. Without
    Slurm: unknown."""
    held, array = (subprocess.run(['sbatch', '--hold', '--parsable', *extra, '--wrap', 'true'], env=cluster,
                                  capture_output=True, text=True, check=True).stdout.strip().split(';')[0]
                   for extra in ([], ['--array=0-2%1']))
    try:
        runs = tmp_path / 'runs'
        for name, job, when in (('now', held, now()), ('old', held, '2020-01-01T00:00:00+00:00'),
                                ('gone', '99999', now()), ('task', f'{array}_2', now())):
            folder = runs / '.submissions' / name
            folder.mkdir(parents=True)
            (folder / 'submission.json').write_text(json.dumps({'submitted_at': when, 'runs': [
                {'run_id': f'x__hungarian__s{name}', 'job_id': job, 'command': []}]}))
        out = harness(cluster, 'status', '--runs', runs)
        assert out.returncode == 0, out.stderr
        lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith('x__')}
        assert lines['x__hungarian__snow'].split()[1:3] == ['pending', held] and 'PENDING (JobHeld' in lines['x__hungarian__snow']
        assert lines['x__hungarian__sold'].split()[1:3] == ['to', 'run'] and 'another submission' in lines['x__hungarian__sold']
        assert 'job 99999 is no longer queued' in lines['x__hungarian__sgone']
        # a pending task of an array (squeue folds those into "<array>_[0-2%1]" unless asked per task)
        assert lines['x__hungarian__stask'].split()[1:3] == ['pending', f'{array}_2'], lines['x__hungarian__stask']
        without = harness({**cluster, 'SLURM_CONF': str(tmp_path / 'none.conf')}, 'status', '--runs', runs)
        assert without.returncode == 0 and without.stdout.count('no Slurm answers here') == 4, without.stdout
    finally:
        subprocess.run(['scancel', held, array], env=cluster, capture_output=True)


def test_a_job_for_a_run_another_live_job_trains_is_refused(tmp_path, monkeypatch):
    from harness.core.env import Queued
    folder = tmp_path / 'run'
    folder.mkdir()
    (folder / '.lock').write_text(json.dumps({'host': 'node7', 'pid': 1, 'since': 'x', 'slurm_job_id': '41'}))
    monkeypatch.setattr('harness.core.env.squeue_job', lambda job: Queued('RUNNING'))
    with pytest.raises(HarnessError, match='being trained by pid 1 on node7'):
        with locks.lock(folder):
            pass
    monkeypatch.setattr('harness.core.env.squeue_job', lambda job: Queued(None))   # the job is gone: stale
    with locks.lock(folder):
        pass
    # a cluster set up again: job 41 runs, but it was submitted an hour after the lock was taken
    since = now()
    (folder / '.lock').write_text(json.dumps({'host': 'node7', 'pid': 1, 'since': since, 'slurm_job_id': '41'}))
    monkeypatch.setattr('harness.core.env.squeue_job', lambda job: Queued('RUNNING', time.time() + 3600))
    with locks.lock(folder):
        pass
    (folder / '.lock').write_text(json.dumps({'host': 'node7', 'pid': 1, 'since': since, 'slurm_job_id': '41'}))
    monkeypatch.setattr('harness.core.env.squeue_job', lambda job: Queued('RUNNING', time.time() - 60))
    with pytest.raises(HarnessError, match='being trained by pid 1 on node7'):   # submitted before: the holder
        with locks.lock(folder):
            pass
    monkeypatch.setenv('SLURM_JOB_ID', '41')   # our own job, requeued: its old lock is ours to take
    monkeypatch.setattr('harness.core.env.squeue_job', lambda job: Queued('RUNNING'))
    (folder / '.lock').write_text(json.dumps({'host': 'node7', 'pid': 1, 'since': 'x', 'slurm_job_id': '41'}))
    with locks.lock(folder):
        pass


def test_a_requeued_job_runs_the_same_command():
    job = slurm.RunJob()
    delayed = job.checkpoint(['python', '-m', 'harness', 'run', '--only', 'x'], '/work')
    assert delayed.function is job and delayed.args == (['python', '-m', 'harness', 'run', '--only', 'x'], '/work')


def test_resources_come_from_flags_then_the_spec_then_defaults():
    spec_block = SlurmResources(partition='gpu', time_min=60, gpus_per_job=2)
    res = spec_block.with_flags({'time_min': 30, 'account': None})
    assert (res.partition, res.time_min, res.gpus_per_job, res.cpus_per_task) == ('gpu', 30, 2, 8)
    params = slurm.parameters(res, 'harness-x')
    assert params['slurm_partition'] == 'gpu' and params['gpus_per_node'] == 2 and params['timeout_min'] == 30
    assert 'gpus_per_node' not in slurm.parameters(SlurmResources(gpus_per_job=0), 'x')


def test_job_commands_and_their_apptainer_wrapping(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ('data', 'work_dirs', 'results'):
        (tmp_path / name).mkdir()
    options = RunOptions(runs=tmp_path / 'results' / 'runs', work_dirs=tmp_path / 'work_dirs',
                         backend=UpstreamOptions(epochs=64))
    spec_copy = tmp_path / 'results' / 'runs' / '.submissions' / 's' / 'spec.yaml'
    plain = slurm.job_command(spec_copy, 'exp__hungarian__s0', options, None, 1)
    assert plain[:4] == [sys.executable, '-m', 'harness', 'run'] and plain[-2:] == ['--epochs', '64']
    assert plain[plain.index('--only') + 1] == 'exp__hungarian__s0'
    wrapped = slurm.job_command(spec_copy, 'exp__hungarian__s0', options, Path('/images/if.sif'), 1)
    bind = ','.join(f'{tmp_path / n}:/workspace/{n}' for n in ('data', 'work_dirs', 'results'))
    assert wrapped[:8] == ['apptainer', 'exec', '--nv', '--bind', bind, '--pwd', '/workspace', '/images/if.sif']
    assert wrapped[8:12] == ['python', '-m', 'harness', 'run']
    assert wrapped[wrapped.index('--spec') + 1] == '/workspace/results/runs/.submissions/s/spec.yaml'
    assert wrapped[wrapped.index('--runs') + 1] == '/workspace/results/runs'
    assert wrapped[wrapped.index('--work-dirs') + 1] == '/workspace/work_dirs'
    cpu = slurm.job_command(spec_copy, 'x', options, Path('/i.sif'), 0)
    assert '--nv' not in cpu
    outside = RunOptions(runs=Path('/elsewhere/runs'), work_dirs=tmp_path / 'work_dirs')
    with pytest.raises(HarnessError, match='not under'):
        slurm.job_command(spec_copy, 'x', outside, Path('/i.sif'), 1)
    with pytest.raises(HarnessError, match='use apptainer:/path/to/image.sif'):
        container.parse('docker:influencerformer')


def test_without_sbatch_the_slurm_executor_says_so(monkeypatch):
    monkeypatch.setenv('PATH', '/nonexistent')
    with pytest.raises(HarnessError, match='no sbatch on PATH'):
        slurm.check_available()


def test_slurm_flags_are_checked_as_the_spec_block_is_and_name_the_flag():
    spec_block = SlurmResources(time_min=60)
    for flags, text in (({'time_min': -5}, '--slurm-time-min: -5 must be an integer > 0'),
                        ({'gpus_per_job': -1}, '--slurm-gpus-per-job: -1 must be an integer >= 0'),
                        ({'mem_gb': 0}, '--slurm-mem-gb: 0 must be an integer > 0'),
                        ({'array_parallelism': 0, 'time_min': 5}, '--slurm-array-parallelism: 0'),
                        ({'partition': ''}, "--slurm-partition: '' must be a non-empty string")):
        with pytest.raises(HarnessError, match=text):
            spec_block.with_flags(flags)
    assert spec_block.with_flags({'time_min': 5, 'gpus_per_job': 0, 'qos': None}) == \
        SlurmResources(time_min=5, gpus_per_job=0)


def fake_sbatch(tmp: Path, message: str = 'sbatch: error: Batch job submission failed: Invalid account') -> dict:
    """An environment whose ``sbatch`` prints ``message`` and exits 1, noting each call in tmp/sbatch.calls:
    never the machine's real sbatch, and no SLURM_CONF of any cluster."""
    bin_dir = tmp / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'sbatch').write_text(f'#!/bin/sh\necho call >> {tmp / "sbatch.calls"}\necho "{message}" >&2\nexit 1\n')
    (bin_dir / 'sbatch').chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != 'SLURM_CONF'}
    return {**env, 'PATH': f'{bin_dir}{os.pathsep}{env.get("PATH", "")}'}


def test_a_bad_slurm_flag_is_refused_before_anything_is_staged_or_submitted(tmp_path):
    env, runs = fake_sbatch(tmp_path), tmp_path / 'runs'
    out = harness(env, 'run', '--spec', tiny_spec(tmp_path, iters=2), '--runs', runs, '--work-dirs',
                  tmp_path / 'work', '--executor', 'slurm', '--slurm-time-min', '-5', timeout=300)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert 'error: --slurm-time-min: -5 must be an integer > 0' in out.stderr and 'Traceback' not in out.stderr
    assert not (tmp_path / 'sbatch.calls').exists() and not (runs / '.submissions').exists()


def test_sbatch_refusing_the_array_is_one_error_line_and_leaves_no_staged_submission(tmp_path):
    env, runs = fake_sbatch(tmp_path), tmp_path / 'runs'
    out = harness(env, 'run', '--spec', tiny_spec(tmp_path, iters=2), '--runs', runs, '--work-dirs',
                  tmp_path / 'work', '--executor', 'slurm', timeout=300)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert (tmp_path / 'sbatch.calls').exists()   # the fake sbatch was asked, and refused
    said = [line for line in out.stderr.splitlines() if 'Invalid account' in line]   # submitit's own echo too
    assert len(said) == 1 and said[0].startswith('error: '), out.stderr
    assert 'sbatch refused the job array: sbatch: error: Batch job submission failed: Invalid account' in said[0]
    assert 'Traceback' not in out.stdout + out.stderr
    assert not (runs / '.submissions').exists()   # no spec.yaml, slurm/, submission.json or empty folder left


def test_a_pretrained_cache_given_on_the_login_node_reaches_every_job(tmp_path, monkeypatch):
    """--cache was left out of the jobs' command: each job looked in work_dirs/pretrained instead
    (a second download, or a failure on compute nodes without internet)."""
    monkeypatch.chdir(tmp_path)
    for name in ('data', 'work_dirs', 'results'):
        (tmp_path / name).mkdir()
    spec_copy = tmp_path / 'results' / 'runs' / '.submissions' / 's' / 'spec.yaml'

    def command(cache: Path, image: Path | None) -> list[str]:
        options = RunOptions(runs=tmp_path / 'results' / 'runs', work_dirs=tmp_path / 'work_dirs',
                             backend=UpstreamOptions(cache=cache))
        return slurm.job_command(spec_copy, 'x', options, image, 1)

    plain = command(Path('work_dirs/shared-cache'), None)
    assert plain[plain.index('--cache') + 1] == str(tmp_path / 'work_dirs' / 'shared-cache')
    wrapped = command(Path('work_dirs/shared-cache'), Path('/i.sif'))
    assert wrapped[wrapped.index('--cache') + 1] == '/workspace/work_dirs/shared-cache'
    assert '--cache' not in command(Path('work_dirs/pretrained'), None)   # the default: the jobs' default too
    with pytest.raises(HarnessError, match='not under'):
        command(Path('/scratch/pretrained'), Path('/i.sif'))
