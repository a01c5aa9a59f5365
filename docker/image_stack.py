"""Offline replica of an image's Python stack: ``make image-stack SERVICE=gpu|cpu``.

Replays the service's Dockerfile ``pip install`` steps, in order and with the
same flags, into a Python 3.10 virtualenv
(~/.cache/influencerformer/replica/<service>/venv; the substitutions where a
source is out of reach are listed in docker/stack_plan.py),
then runs the image's last build step (``python -m harness doctor``) and imports
every module the images' own steps load (docker/upstream-imports.txt,
derived by ``make upstream-imports``). Stdlib only; runs under any Python >= 3.10.

  python docker/image_stack.py build --service gpu         # install (if changed) + check
  python docker/image_stack.py install --service gpu       # install only (if changed)
  python docker/image_stack.py check --service cpu --hide scikit-learn
  python docker/image_stack.py plan --service gpu          # Dockerfile line -> replica step
  python docker/image_stack.py derive-imports              # needs ONEFORMER3D_ROOT and MMDET3D_ROOT
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from stack_plan import DOCKERFILES, FROM_SDIST, REPO, plan

PROBE = REPO / 'docker' / 'stack_probe.py'
IMPORTS_LIST = REPO / 'docker' / 'upstream-imports.txt'
CACHE = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'influencerformer'
# The venvs live outside the checkout, so that a fresh clone (CI) finds them current; one checkout at a
# time: each build points the venv's editable install of our package at the checkout that runs it.
REPLICA = Path(os.environ.get('IMAGE_STACK_DIR', CACHE / 'replica'))
BUILD_TOOLS = ['ninja==1.11.1.1', 'psutil==5.9.8', 'wheel==0.43.0']  # for sdist builds; kept out of the venv


def find_python() -> str:
    """The images' Python: $IMAGE_STACK_PYTHON, else pyenv's newest 3.10, else python3.10 on PATH."""
    if os.environ.get('IMAGE_STACK_PYTHON'):
        return os.environ['IMAGE_STACK_PYTHON']
    pyenv = shutil.which('pyenv')
    if pyenv:
        root = Path(subprocess.run([pyenv, 'root'], capture_output=True, text=True).stdout.strip())
        found = sorted(root.glob('versions/3.10.*/bin/python'), key=lambda p: [int(x) for x in
                       re.findall(r'\d+', p.parts[-3])])
        if found:
            return str(found[-1])
    if shutil.which('python3.10'):
        return shutil.which('python3.10')
    raise SystemExit('image-stack: no Python 3.10 (the images\' Python) found: install one (pyenv install 3.10) '
                     'or set IMAGE_STACK_PYTHON=/path/to/python3.10')


def wheelhouse() -> Path:
    """Wheels built here from sdists, per torch release: survive a fresh clone, so rebuilds are instant."""
    return Path(os.environ.get('IMAGE_STACK_WHEELS', CACHE / 'wheels'))


def pypi_wheels() -> Path:
    """PyPI's wheels as the replicas download them, installed from here; `make image-oci` serves the same files.

    pip's HTTP cache stays empty on this workplace's machines (nothing under ~/.cache/pip/http after a replica
    build), so a folder is what keeps a wheel from being fetched twice: pip download skips files it holds.
    """
    return wheelhouse() / 'pypi-cp310'


def run(cmd: list[str], env: dict | None = None, cwd: Path = REPO) -> int:
    print('+ ' + shlex.join(str(c) for c in cmd), flush=True)
    return subprocess.run(cmd, env=env, cwd=cwd).returncode


def must(cmd: list[str], env: dict | None = None) -> None:
    if run(cmd, env) != 0:
        raise SystemExit(f'image-stack: failed: {shlex.join(str(c) for c in cmd)}')


def venv_env(venv: Path, **extra: str) -> dict:
    """The host's environment less what would leak into the replica (PYTHONPATH, an active venv)."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME', 'VIRTUAL_ENV')}
    env['PATH'] = f'{venv / "bin"}{os.pathsep}{env.get("PATH", "")}'
    env.update(extra)
    return env


def torch_version(py: str) -> str:
    out = subprocess.run([py, '-c', 'from importlib.metadata import version; print(version("torch"))'],
                         capture_output=True, text=True)
    return out.stdout.strip() or 'none'


def sdist_wheel(py: str, venv: Path, req: str) -> Path:
    """The wheel of ``req`` built against the venv's torch: from the wheelhouse, else built once into it."""
    name, _, ver = req.partition('==')
    house = wheelhouse() / f'torch-{torch_version(py)}-cp310-linux_x86_64'
    pattern = f'{name.replace("-", "_")}-{ver}-*.whl'
    if not list(house.glob(pattern)):
        tools = wheelhouse() / 'buildtools-cp310'
        if not (tools / 'ninja').is_dir():
            must([py, '-m', 'pip', 'install', '--quiet', '--target', str(tools), *BUILD_TOOLS])
        print(f'building {req} from PyPI\'s sdist against torch {torch_version(py)} '
              f'(mmcv: 10-20 min on 2 cores; once: kept in {house})', flush=True)
        # CFLAGS=-g0: no debug info (Python's own CFLAGS carry -g), the same code at -O3 in about half the time
        env = venv_env(venv, PYTHONPATH=str(tools), PATH=f'{tools / "bin"}{os.pathsep}{venv_env(venv)["PATH"]}',
                       MAX_JOBS=os.environ.get('MAX_JOBS', '2'), CFLAGS='-g0', **FROM_SDIST[name])
        must([py, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-w', str(house), req], env)
    return sorted(house.glob(pattern))[-1]


def unpack_commit(spec: str, dest: Path) -> Path:
    """``ROOT@COMMIT`` -> a directory holding exactly that commit's tree (git archive; the checkout is untouched)."""
    root, _, commit = spec.rpartition('@')
    if subprocess.run(['git', '-C', root, 'cat-file', '-e', f'{commit}^{{commit}}']).returncode != 0:
        raise SystemExit(f'image-stack: MMDET3D_ROOT={root} has no commit {commit} (git -C {root} fetch)')
    out = dest / f'mmdetection3d-{commit[:7]}'
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    archive = subprocess.Popen(['git', '-C', root, 'archive', '--format=tar', commit], stdout=subprocess.PIPE)
    with tarfile.open(fileobj=archive.stdout, mode='r|') as tar:
        tar.extractall(out)
    if archive.wait() != 0:
        raise SystemExit(f'image-stack: git archive {commit} failed in {root}')
    return out


def install(service: str, py: str, venv: Path, mmdet3d_root: Path | None, only_ours: bool = False) -> None:
    """Replay the Dockerfile's installs (``only_ours``: just our editable package); print each step."""
    pip = [py, '-m', 'pip', 'install', '--quiet']
    start = time.monotonic()
    for step, actions in plan(service, mmdet3d_root):
        if only_ours and step.kind != 'editable':
            continue
        print(f'\n== [{time.monotonic() - start:5.0f} s] {DOCKERFILES[service].name}: {step.line}', flush=True)
        for how, args in actions:
            if how == 'sdist':
                args = [*args[:-1], str(sdist_wheel(py, venv, args[-1]))]
            elif how == 'commit':
                args = [*args[:-1], str(unpack_commit(args[-1], venv.parent / 'src'))]
            elif how == 'release':
                print(f'   mmdetection3d: PyPI {args[-1]}, the nearest release that contains the pinned '
                      'commit, NOT the commit itself (set MMDET3D_ROOT for the exact commit)', flush=True)
            if how in ('pypi', 'release') or (how == 'same' and '-r' in args):  # from PyPI: through the folder
                must([py, '-m', 'pip', 'download', '--quiet', '--dest', str(pypi_wheels()), *args], venv_env(venv))
                args = ['--no-index', '--find-links', str(pypi_wheels()), *args]
            must([*pip, *args], venv_env(venv))
    print(f'== [{time.monotonic() - start:5.0f} s] installed', flush=True)


def stamp_of(service: str, py: str, mmdet3d_root: Path | None) -> dict:
    """What the venv was built from: a changed Dockerfile, pin, shim or rule rebuilds it."""
    digest = hashlib.sha256()
    files = [DOCKERFILES[service], REPO / 'docker' / 'stack_plan.py', *sorted((REPO / 'docker' / 'requirements').glob('*.txt')),
             *sorted(p for p in (REPO / 'docker' / 'shims').rglob('*') if p.is_file() and 'build' not in p.parts
                     and '.egg-info' not in str(p))]
    for path in files:
        digest.update(path.relative_to(REPO).as_posix().encode() + path.read_bytes())
    source = f'commit from {mmdet3d_root}' if mmdet3d_root else 'nearest release (PyPI)'
    return {'service': service, 'python': py, 'inputs': digest.hexdigest(), 'mmdet3d': source}


def build(service: str, mmdet3d_root: Path | None, force: bool) -> Path:
    """Create REPLICA/<service>/venv unless its stamp is current; either way install our package from REPO."""
    py = find_python()
    version = subprocess.run([py, '-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])'],
                             capture_output=True, text=True).stdout.strip()
    if not version.startswith('3.10.'):
        raise SystemExit(f'image-stack: {py} is Python {version}; the images run 3.10')
    home = REPLICA / service
    venv, stamp_file = home / 'venv', home / 'stamp.json'
    stamp = stamp_of(service, py, mmdet3d_root)
    if not force and stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        print(f'{venv}: up to date with {DOCKERFILES[service].name} and docker/requirements (Python {version}); '
              f'our package from {REPO}')
        install(service, str(venv / 'bin' / 'python'), venv, mmdet3d_root, only_ours=True)
        return venv
    shutil.rmtree(home, ignore_errors=True)
    must([py, '-m', 'venv', str(venv)])
    install(service, str(venv / 'bin' / 'python'), venv, mmdet3d_root)
    stamp_file.write_text(json.dumps(stamp, indent=1))
    return venv


def image_tag(service: str) -> str:
    return re.search(r'^ARG IMAGE_TAG=(\S+)', DOCKERFILES[service].read_text(), re.M).group(1)


def can_convolve(py: str, service: str) -> bool:
    """spconv-cu118 (gpu) needs a visible GPU; the CPU build (cpu) runs anywhere."""
    if service == 'cpu':
        return True
    return subprocess.run([py, '-c', 'import torch, sys; sys.exit(not torch.cuda.is_available())']).returncode == 0


def check(service: str, hide: list[str], upstream: Path | None) -> int:
    """The image's last build step (doctor), every import upstream loads, and with a checkout the CI spec."""
    venv = REPLICA / service / 'venv'
    stamp_file = REPLICA / service / 'stamp.json'
    if not stamp_file.exists():
        raise SystemExit(f'image-stack: no replica of {service} here; make image-stack SERVICE={service}')
    stamp, py = json.loads(stamp_file.read_text()), str(venv / 'bin' / 'python')
    print(f'\n== replica of {image_tag(service)}: {venv}, mmdetection3d: {stamp["mmdet3d"]}', flush=True)
    hidden = [arg for dist in hide for arg in ('--hide', dist)]
    env = venv_env(venv, HARNESS_IMAGE=f'replica-of-{image_tag(service)}',
                   **({'PYTHONPATH': str(upstream), 'ONEFORMER3D_ROOT': str(upstream)} if upstream else {}))
    where = ['--upstream-root', str(upstream)] if upstream else ['--skip-upstream']
    results = {'doctor': run([py, str(PROBE), 'exec', *hidden, '-m', 'harness', 'doctor', *where], env),
               'imports': run([py, str(PROBE), 'imports', str(IMPORTS_LIST), *hidden,
                               *(['--module', 'oneformer3d'] if upstream else [])], env)}
    e2e = 'skipped: no ONEFORMER3D_ROOT' if not upstream else None
    if upstream and not can_convolve(py, service):
        e2e = 'skipped: spconv-cu118 needs a GPU'
    if e2e is None:
        results['ci-upstream-cpu'] = ci_upstream(py, env, REPLICA / service / 'ci-upstream')
    status = {name: 'ok' if rc == 0 else 'FAIL' for name, rc in results.items()}
    failed = [name for name, s in status.items() if s == 'FAIL']
    print('RESULT ' + json.dumps({'verb': 'image-stack', 'status': 'failed' if failed else 'ok', 'service': service,
                                  'mmdet3d': stamp['mmdet3d'], **status, **({'e2e': e2e} if e2e else {}),
                                  'hidden': hide, 'failed': failed}))
    return 1 if failed else 0


def ci_upstream(py: str, env: dict, out: Path) -> int:
    """baselines/ci-upstream-cpu.yaml end to end on this stack (both arms, our AP checked against upstream's)."""
    shutil.rmtree(out, ignore_errors=True)
    rc = run([py, '-m', 'harness', 'run', '--spec', 'baselines/ci-upstream-cpu.yaml', '--runs', str(out / 'runs'),
              '--work-dirs', str(out / 'work_dirs')], env)
    return rc or run([py, '-m', 'harness', 'compare', '--runs', str(out / 'runs'), '--experiment',
                      'ci-upstream-cpu', '--out', str(out)], env)


def derive_imports(upstream: Path) -> int:
    """Trace doctor, `import oneformer3d` and the CI spec in the cpu replica; write upstream-imports.txt."""
    stamp = json.loads((REPLICA / 'cpu' / 'stamp.json').read_text()) if (REPLICA / 'cpu' / 'stamp.json').exists() \
        else {}
    if not stamp.get('mmdet3d', '').startswith('commit'):
        raise SystemExit('image-stack: derive in a cpu replica with mmdetection3d at the pinned commit: '
                         'MMDET3D_ROOT=... make image-stack SERVICE=cpu')
    venv = REPLICA / 'cpu' / 'venv'
    py, traces = str(venv / 'bin' / 'python'), REPLICA / 'cpu' / 'traces'
    shutil.rmtree(traces, ignore_errors=True)
    (traces / 'site').mkdir(parents=True)
    (traces / 'site' / 'sitecustomize.py').write_text(
        'import os, stack_probe\nstack_probe.start_trace(os.environ["IMAGE_STACK_TRACE"])\n')
    env = venv_env(venv, IMAGE_STACK_TRACE=str(traces), ONEFORMER3D_ROOT=str(upstream),
                   PYTHONPATH=os.pathsep.join([str(traces / 'site'), str(PROBE.parent), str(upstream)]))
    steps = [[py, '-m', 'harness', 'doctor', '--upstream-root', str(upstream)], [py, '-c', 'import oneformer3d']]
    rc = max(run(cmd, env) for cmd in steps) or ci_upstream(py, env, REPLICA / 'cpu' / 'ci-upstream')
    if rc:
        raise SystemExit('image-stack: a traced step failed; nothing written')
    return run([py, str(PROBE), 'merge-traces', str(traces), str(IMPORTS_LIST)], venv_env(venv))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='docker/image_stack.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('command', choices=['build', 'install', 'check', 'plan', 'derive-imports'],
                        help='build: install (if changed) + check; install: only that')
    parser.add_argument('--service', choices=sorted(DOCKERFILES), default='gpu', help='compose service (image)')
    parser.add_argument('--hide', action='append', default=[], metavar='DIST',
                        help='check as if DIST were not pinned (its modules made unimportable)')
    parser.add_argument('--force', action='store_true', help='rebuild the venv even if its stamp is current')
    args = parser.parse_args(argv)
    mmdet3d = Path(os.environ['MMDET3D_ROOT']).resolve() if os.environ.get('MMDET3D_ROOT') else None
    upstream = Path(os.environ['ONEFORMER3D_ROOT']).resolve() if os.environ.get('ONEFORMER3D_ROOT') else None
    if args.command == 'plan':
        for step, actions in plan(args.service, mmdet3d):
            print(f'{step.line}\n    -> ' + '\n    -> '.join(f'[{how}] pip install {shlex.join(a)}'
                                                         for how, a in actions))
        return 0
    if args.command == 'derive-imports':
        if not upstream:
            raise SystemExit('image-stack: derive-imports needs ONEFORMER3D_ROOT (a checkout at the pinned commit)')
        return derive_imports(upstream)
    if args.command in ('build', 'install'):
        build(args.service, mmdet3d, args.force)
    if args.command == 'install':
        return 0
    return check(args.service, args.hide, upstream)


if __name__ == '__main__':
    sys.exit(main())
