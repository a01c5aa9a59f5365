"""docker/Dockerfile.cpu built by buildah (docker/image_oci.py, make image-oci).

Always: the mirror-less derivation replaces exactly its three commands and refuses a
Dockerfile it was not taught; a failed build names its step and line; the torch wheel
is relabelled consistently; the mounted configs point pip and git at 127.0.0.1; the
Make targets are one line. With IMAGE_OCI_REQUIRED=1 (`make test-image-oci`, which CI
runs after `make image-oci`; root, buildah, the stand-in base and the wheel folder): a
broken apt package name, a wrong COPY path and a removed pin each fail the real build,
which names the step that broke.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'docker'))
import image_oci  # noqa: E402
import oci_sources  # noqa: E402

DOCKERFILE = REPO / 'docker' / 'Dockerfile.cpu'


def test_mirrorless_replaces_exactly_three_commands():
    text = DOCKERFILE.read_text()
    derived, notes = oci_sources.derive_mirrorless(text)
    before, after = image_oci.instructions(text), image_oci.instructions(derived)
    assert len(before) == len(after) and len(notes) == 3   # buildah's STEP n is the same instruction in both
    changed = [b for (_, b), (_, a) in zip(before, after) if a != b]
    assert len(changed) == 3
    assert 'git+https://github.com/open-mmlab/mmdetection3d.git' in changed[0]
    assert changed[1].startswith('RUN git clone') and changed[2] == 'RUN python -m harness doctor'
    pip_step, clone_step, doctor_step = [a for (_, b), (_, a) in zip(before, after) if a != b]
    assert pip_step.endswith('python -m pip install --no-deps mmdet3d==1.1.1')
    assert pip_step.count('pip install') == changed[0].count('pip install')  # every other install kept
    assert ' '.join(clone_step.split()) == ('RUN true && git config --system --add safe.directory /opt/oneformer3d '
                          '&& git config --system --add safe.directory /workspace')
    assert doctor_step == 'RUN python -m harness doctor --skip-upstream'


@pytest.mark.parametrize('edit', [('open-mmlab/mmdetection3d.git', 'open-mmlab/mmdet3d.git'),
                                  ('RUN python -m harness doctor\n', 'RUN python -m harness doctor --verbose\n')])
def test_mirrorless_refuses_a_dockerfile_it_was_not_taught(edit):
    text = DOCKERFILE.read_text()
    assert edit[0] in text
    with pytest.raises(SystemExit, match='0 matches .* teach docker/oci_sources.py MIRRORLESS'):
        oci_sources.derive_mirrorless(text.replace(*edit))


def test_instructions_carry_their_line_numbers():
    text = DOCKERFILE.read_text()
    lines = text.splitlines()
    found = image_oci.instructions(text)
    assert found[0] == (1 + next(i for i, x in enumerate(lines) if x.startswith('FROM')), found[0][1])
    for number, instruction in found:
        assert lines[number - 1].strip().startswith(instruction.split()[0]), (number, instruction)
    assert found[-1][1].startswith('CMD')


class FakeBuildah:
    """buildah replaced by a shell script that prints buildah's STEP lines and fails at one."""

    def __init__(self, script: str):
        self.base = ['sh', '-c', script, 'buildah']


def test_a_failed_build_names_its_step_and_line():
    text = DOCKERFILE.read_text()
    steps = image_oci.instructions(text)
    apt = next(i for i, (_, s) in enumerate(steps) if 'apt-get install' in s)
    script = ''.join(f'echo "STEP {i + 1}/{len(steps)}: {s[:20]}"; ' for i, (_, s) in enumerate(steps[:apt + 1]))
    with pytest.raises(SystemExit) as err:
        image_oci.bud(FakeBuildah(script + 'exit 1'), DOCKERFILE, REPO, {}, 'tag', steps, False)
    assert f'failed at STEP {apt + 1}/{len(steps)} (line {steps[apt][0]}): RUN apt-get update' in str(err.value.code)
    image_oci.bud(FakeBuildah(script + 'exit 0'), DOCKERFILE, REPO, {}, 'tag', steps, False)  # passes through


def tool(name: str) -> str:
    if not shutil.which(name):
        if os.environ.get('CI'):
            pytest.fail(f'{name} is not installed; .ci/run installs it')
        pytest.skip(f'{name} not installed (apt-get install {name})')
    return shutil.which(name)


def test_relabel_changes_version_metadata_and_record_only(tmp_path):
    tool('zip')
    wheel = tmp_path / 'demo-1.0-py3-none-any.whl'
    meta = 'Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: numpy\n'
    with zipfile.ZipFile(wheel, 'w', zipfile.ZIP_DEFLATED) as zf:
        zf.writestr('demo/__init__.py', 'x = 1\n' * 1000)
        zf.writestr('demo-1.0.dist-info/METADATA', meta)
        zf.writestr('demo-1.0.dist-info/RECORD', 'demo/__init__.py,sha256=abc,6000\n'
                    'demo-1.0.dist-info/METADATA,sha256=old,10\ndemo-1.0.dist-info/RECORD,,\n')
    out = oci_sources.relabel(wheel, '+cpu', tmp_path / 'relabelled')
    assert out.name == 'demo-1.0+cpu-py3-none-any.whl' and out.parent.name == 'relabelled' and wheel.exists()
    assert oci_sources.relabel(wheel, '+cpu', tmp_path / 'relabelled') == out  # made once
    with zipfile.ZipFile(out) as zf:
        new_meta = zf.read('demo-1.0.dist-info/METADATA')
        record = zf.read('demo-1.0.dist-info/RECORD').decode()
        assert zf.read('demo/__init__.py') == b'x = 1\n' * 1000
        assert sorted(zf.namelist()) == ['demo-1.0.dist-info/METADATA', 'demo-1.0.dist-info/RECORD',
                                         'demo/__init__.py']
    assert new_meta.decode() == meta.replace('Version: 1.0\n', 'Version: 1.0+cpu\n')
    digest = base64.urlsafe_b64encode(hashlib.sha256(new_meta).digest()).rstrip(b'=').decode()
    assert f'demo-1.0.dist-info/METADATA,sha256={digest},{len(new_meta)}' in record
    assert 'demo/__init__.py,sha256=abc,6000' in record


def test_mounted_configs_point_pip_and_git_at_localhost(tmp_path):
    served = {url: f'git/{name}.git' for url, (name, _) in oci_sources.MIRRORS.items()}
    files = oci_sources.write_configs(4321, served, tmp_path)
    assert files['/etc/pip.conf'].read_text() == ('[global]\nno-index = true\n'
                                                  'find-links = http://127.0.0.1:4321/wheels/\n')
    git = files['/root/.gitconfig'].read_text()
    for url, path in served.items():
        assert f'[url "http://127.0.0.1:4321/{path}"]\n\tinsteadOf = {url}\n' in git
    assert '/root/.gitconfig' not in oci_sources.write_configs(4321, {}, tmp_path / 'none')


def test_mirrors_need_both_variables(monkeypatch):
    monkeypatch.delenv('ONEFORMER3D_ROOT', raising=False)
    monkeypatch.delenv('MMDET3D_ROOT', raising=False)
    assert oci_sources.mirror_sources() is None
    monkeypatch.setenv('ONEFORMER3D_ROOT', '/somewhere')
    with pytest.raises(SystemExit, match='set MMDET3D_ROOT too'):
        oci_sources.mirror_sources()


def test_make_targets_are_one_line_and_jobs_come_from_the_makefile():
    out = subprocess.run(['make', '-n', '-C', str(REPO), 'image-oci'], capture_output=True, text=True, check=True)
    assert [x for x in out.stdout.splitlines() if 'image_oci' in x] == ['python3 docker/image_oci.py build']
    assert image_oci.job_commands('ci-upstream') == [
        'python -m harness run --spec baselines/ci-upstream-cpu.yaml --runs results/ci-upstream/runs'.split(),
        ('python -m harness compare --runs results/ci-upstream/runs --experiment ci-upstream-cpu '
         '--out results/ci-upstream').split()]
    assert [c[:4] for c in image_oci.job_commands('smoke')] == [['python', '-m', 'harness', 'run'],
                                                                ['python', '-m', 'harness', 'compare']]


def test_planned_runs_count_arms_times_seeds(tmp_path):
    ci = yaml.safe_load((REPO / 'baselines' / 'ci-upstream-cpu.yaml').read_text())
    assert image_oci.planned_runs(REPO / 'baselines' / 'ci-upstream-cpu.yaml') == len(ci['arms']) * len(ci['seeds'])
    spec = tmp_path / 'spec.yaml'
    spec.write_text('arms: [a, b]\nseeds: [0, 1, 2]\n')
    assert image_oci.planned_runs(spec) == 6
    spec.write_text('arms:\n  - a\nseeds: [0]\n')
    with pytest.raises(SystemExit, match='flow lists'):
        image_oci.planned_runs(spec)


# --- the planted breaks: real builds -------------------------------------------------------------

def tracked_copy(dest: Path) -> Path:
    """The checkout's tracked files (what a clean clone holds), as a build context."""
    files = subprocess.run(['git', '-C', str(REPO), 'ls-files', '-z'], capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split('\0')):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


# (file, text, planted text, the failing instruction as it begins): each breaks a different kind of step
BREAKS = {
    'apt package name': ('docker/Dockerfile.cpu', ' libglib2.0-0', ' libglib2.0-0-no-such-package',
                         'RUN apt-get update', r'Unable to locate package libglib2\.0-0-no-such-package'),
    'COPY path': ('docker/Dockerfile.cpu', 'COPY docker/requirements/ ', 'COPY docker/requirement/ ',
                  'COPY docker/requirement/', r'no such file or directory|no items matching'),
    'removed pin': ('docker/requirements/common.txt', 'scikit-learn==1.2.2\n', '',
                    'RUN python -m harness doctor', r"FAIL\s+import mmdet3d\.evaluation.*No module named 'sklearn'"),
}


@pytest.mark.parametrize('name', list(BREAKS))
def test_a_planted_break_fails_the_build_naming_the_step(name, tmp_path):
    if not os.environ.get('IMAGE_OCI_REQUIRED'):
        pytest.skip('real builds run in `make test-image-oci` (after make image-oci)')
    path, old, new, instruction, evidence = BREAKS[name]
    context = tracked_copy(tmp_path / 'context')
    text = (context / path).read_text()
    assert text.count(old) == 1, f'{path}: the planted break no longer applies'
    (context / path).write_text(text.replace(old, new))
    line = next(n for n, s in image_oci.instructions((context / 'docker' / 'Dockerfile.cpu').read_text())
                if s.startswith(instruction))
    out = subprocess.run([sys.executable, str(REPO / 'docker' / 'image_oci.py'), 'build', '--context', str(context)],
                         capture_output=True, text=True, timeout=1500)
    log = out.stdout + out.stderr
    assert out.returncode == 1, log[-3000:]
    named = re.search(r'image-oci: buildah bud docker/Dockerfile\.cpu: failed at '
                      r'STEP \d+/\d+ \(line (\d+)\): (.*)', out.stderr)
    assert named and int(named.group(1)) == line and named.group(2).startswith(instruction[:60]), out.stderr[-2000:]
    assert re.search(evidence, log), log[-3000:]
    assert '"status": "failed"' in out.stdout.splitlines()[-1]
