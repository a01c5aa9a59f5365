"""What stands in, during ``make image-oci``, for the sources a build here cannot reach.

The Dockerfile is built as written; only where it reaches out do local sources answer,
through files mounted for the build's RUN steps, never through an edited Dockerfile:

  /etc/pip.conf     no-index + find-links to a wheel folder served on 127.0.0.1: pip then
                    ignores the index / find-links lines of the requirement files (unreachable)
  /root/.gitconfig  url.<mirror>.insteadOf for the two GitHub clones: local mirrors, served
                    on the same 127.0.0.1 port (git's dumb HTTP), that hold the pinned commits

Without mirrors (CI: no upstream code may be fetched or committed) nothing can hold the
pinned commits, so ``derive_mirrorless`` writes a derived Dockerfile in which exactly the
three commands that need them are replaced (MIRRORLESS), each named in the summary.
Stdlib only.
"""
from __future__ import annotations

import base64
import ctypes
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from image_stack import CACHE, find_python, pypi_wheels, wheelhouse
from stack_plan import FROM_SDIST, NEAREST_RELEASE, REPO, read_requirements

OCI = CACHE / 'oci'
SERVE = OCI / 'serve'                  # the server's root: wheels/ and git/
WHEELS = SERVE / 'wheels'
REQ = REPO / 'docker' / 'requirements'
# PyPI's torch 2.0.1 is the CUDA 11.7 build; PyTorch's +cpu wheels are out of reach. Its METADATA
# is relabelled so that the requirement torch==2.0.1+cpu resolves (torch.__version__ stays +cu117).
TORCH_PYPI, TORCH_LABEL = 'torch==2.0.1', '+cpu'
# pip's build isolation (mmdetection3d's setup.py, the stand-in, our package) takes these from
# the folder: unpinned, as a real build takes PyPI's newest.
BUILD_BACKEND = ['setuptools', 'wheel']
MIRRORS = {  # GitHub URL as the Dockerfile writes it -> (mirror name, env var naming a git repo that holds it)
    'https://github.com/filaPro/oneformer3d.git': ('oneformer3d', 'ONEFORMER3D_ROOT'),
    'https://github.com/open-mmlab/mmdetection3d.git': ('mmdetection3d', 'MMDET3D_ROOT'),
}


def must(cmd: list[str], **kw) -> None:
    print('+ ' + ' '.join(str(c) for c in cmd), flush=True)
    if subprocess.run(cmd, **kw).returncode != 0:
        raise SystemExit(f'image-oci: failed: {" ".join(str(c) for c in cmd)}')


def dockerfile_args(text: str) -> dict[str, str]:
    return dict(re.findall(r'^ARG (\w+)=(\S+)', text, re.M))


# --- the wheel folder -----------------------------------------------------------------------------

def wheel_inputs() -> str:
    digest = hashlib.sha256(f'{TORCH_PYPI} {BUILD_BACKEND} '.encode())
    for path in sorted(REQ.glob('cpu-*.txt')) + [REQ / 'common.txt', Path(__file__)]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def ensure_wheels() -> Path:
    """WHEELS: every wheel docker/Dockerfile.cpu installs, as links to the files the replica keeps.

    PyPI's wheels from the folder the replica downloads them to (image_stack.pypi_wheels: pip download
    fetches only what it lacks there, i.e. setuptools + wheel for pip's build isolation, and mmdet3d's
    nearest release when the replica used the commit), mmcv and torch-scatter from the replica's
    wheelhouse (built from sdists), and torch relabelled: the one copy, made once.
    """
    stamp = WHEELS / '.stamp'
    inputs = wheel_inputs()
    if stamp.exists() and stamp.read_text() == inputs:
        print(f'{WHEELS}: current', flush=True)
        return WHEELS
    pypi = pypi_wheels()
    pip = [find_python(), '-m', 'pip', 'download', '--quiet', '--disable-pip-version-check', '--dest', str(pypi)]
    must([*pip, TORCH_PYPI])
    must([*pip, '--no-deps', '-r', str(REQ / 'common.txt'), '-r', str(REQ / 'cpu-spconv.txt'), *BUILD_BACKEND])
    commit = dockerfile_args((REPO / 'docker' / 'Dockerfile.cpu').read_text())['MMDET3D_COMMIT']
    must([*pip, '--no-deps', f'mmdet3d=={NEAREST_RELEASE[commit]}'])
    files = [p for p in pypi.iterdir() if p.is_file() and not p.name.startswith(f'{TORCH_PYPI.replace("==", "-")}-')]
    for name in FROM_SDIST:
        pattern = f'torch-2.0.1-cp310-linux_x86_64/{name.replace("-", "_")}-*.whl'
        if not list(wheelhouse().glob(pattern)):  # the cpu replica builds them (once, ~10 min)
            must([sys.executable, str(REPO / 'docker' / 'image_stack.py'), 'install', '--service', 'cpu'])
        files.append(sorted(wheelhouse().glob(pattern))[-1])
    for plain in pypi.glob(f'{TORCH_PYPI.replace("==", "-")}-*.whl'):
        files.append(relabel(plain, TORCH_LABEL, OCI / 'relabelled'))
    fresh = WHEELS.with_name('wheels.new')
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    for path in files:
        (fresh / path.name).symlink_to(path)  # http.server follows links: nothing is copied
    (fresh / '.stamp').write_text(inputs)
    shutil.rmtree(WHEELS, ignore_errors=True)
    os.replace(fresh, WHEELS)
    return WHEELS


def relabel(wheel: Path, label: str, dest: Path) -> Path:
    """A copy of ``wheel`` in ``dest`` under version ``<v><label>``: file name, METADATA's Version, its RECORD line.

    ``zip`` replaces the two members in place (the 600 MB of others are copied, not recompressed);
    the copy appears atomically, once: an existing one is reused.
    """
    name, version, rest = wheel.name.split('-', 2)
    target = dest / f'{name}-{version}{label}-{rest}'
    if target.exists():
        return target
    info = f'{name}-{version}.dist-info'
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read(f'{info}/METADATA').decode()
        record = zf.read(f'{info}/RECORD').decode()
    meta = re.sub(r'^Version: .*$', f'Version: {version}{label}', meta, count=1, flags=re.M)
    digest = base64.urlsafe_b64encode(hashlib.sha256(meta.encode()).digest()).rstrip(b'=').decode()
    record = re.sub(rf'^{re.escape(info)}/METADATA,.*$', f'{info}/METADATA,sha256={digest},{len(meta.encode())}',
                    record, count=1, flags=re.M)
    if not shutil.which('zip'):
        raise SystemExit('image-oci: `zip` is needed to relabel the torch wheel: apt-get install zip')
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        (Path(tmp) / info).mkdir()
        (Path(tmp) / info / 'METADATA').write_text(meta)
        (Path(tmp) / info / 'RECORD').write_text(record)
        work = Path(tmp) / wheel.name
        shutil.copy2(wheel, work)
        must(['zip', '-q', str(work), f'{info}/METADATA', f'{info}/RECORD'], cwd=tmp)
        os.replace(work, target)
    return target


# --- git mirrors ----------------------------------------------------------------------------------

def mirror_sources() -> dict[str, Path] | None:
    """{GitHub URL: git repository holding its pinned commit} from ONEFORMER3D_ROOT / MMDET3D_ROOT; None if unset."""
    given = {url: os.environ.get(var) for url, (_, var) in MIRRORS.items()}
    if not any(given.values()):
        return None
    missing = [MIRRORS[url][1] for url, path in given.items() if not path]
    if missing:
        raise SystemExit(f'image-oci: set {" and ".join(missing)} too (a git repository holding the pinned commit), '
                         'or unset both for the mirror-less build')
    return {url: Path(path).resolve() for url, path in given.items()}


def ensure_mirrors(sources: dict[str, Path], commits: dict[str, str]) -> dict[str, str]:
    """Bare mirrors in SERVE/git, each with its pinned commit on a branch; {GitHub URL: path under SERVE}."""
    served = {}
    for url, src in sources.items():
        name, var = MIRRORS[url]
        commit = commits[url]
        if subprocess.run(['git', '-C', str(src), 'cat-file', '-e', f'{commit}^{{commit}}'],
                          capture_output=True).returncode != 0:
            raise SystemExit(f'image-oci: {var}={src} holds no commit {commit[:12]} (git -C {src} fetch)')
        dest = SERVE / 'git' / f'{name}.git'
        if subprocess.run(['git', '-C', str(dest), 'cat-file', '-e', f'{commit}^{{commit}}'],
                          capture_output=True).returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            must(['git', 'clone', '--quiet', '--bare', '--no-local', str(src), str(dest)])
            # a detached checkout's commit is on no branch: give it one, so that a clone carries it
            must(['git', '-C', str(dest), 'fetch', '--quiet', str(src), f'{commit}:refs/heads/pinned-{commit[:12]}'])
        must(['git', '-C', str(dest), 'update-server-info'])  # dumb HTTP: info/refs + objects/info/packs
        served[url] = f'git/{name}.git'
    return served


def write_configs(port: int, served: dict[str, str], where: Path) -> dict[str, Path]:
    """The two files mounted into the build: pip.conf always, a gitconfig with mirrors."""
    where.mkdir(parents=True, exist_ok=True)
    files = {'/etc/pip.conf': where / 'pip.conf'}
    files['/etc/pip.conf'].write_text(f'[global]\nno-index = true\nfind-links = http://127.0.0.1:{port}/wheels/\n')
    if served:
        files['/root/.gitconfig'] = where / 'gitconfig'
        files['/root/.gitconfig'].write_text(''.join(
            f'[url "http://127.0.0.1:{port}/{path}"]\n\tinsteadOf = {url}\n' for url, path in served.items()))
    return files


# --- the server -----------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the server's child process: SIGTERM when the build process dies, however it dies (Linux prctl)."""
    with_libc = ctypes.CDLL(None, use_errno=True)
    with_libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_server(log: Path) -> tuple[subprocess.Popen, int]:
    """SERVE on 127.0.0.1 at a free port (RUN steps share the host's network)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, '-u', '-m', 'http.server', '0', '--bind', '127.0.0.1',
                             '--directory', str(SERVE)], stdout=subprocess.PIPE, stderr=log.open('w'),
                            text=True, preexec_fn=_die_with_parent)
    first = proc.stdout.readline()
    found = re.search(r'port (\d+)', first)
    if not found:
        stop_server(proc)
        raise SystemExit(f'image-oci: the wheel server did not start ({first.strip() or "no output"}; see {log})')
    print(f'serving {SERVE} on 127.0.0.1:{found.group(1)} (pid {proc.pid})', flush=True)
    return proc, int(found.group(1))


def stop_server(proc: subprocess.Popen) -> None:
    """By its pid: TERM, then KILL after 10 s."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f'wheel server (pid {proc.pid}) stopped', flush=True)


# --- without mirrors: the derived Dockerfile ------------------------------------------------------

# (what is replaced, by what, why): each must match exactly once, or the Dockerfile changed and
# this list must be taught; nothing else of the Dockerfile is touched.
MIRRORLESS = [
    (r'"git\+https://github\.com/open-mmlab/mmdetection3d\.git@\$\{MMDET3D_COMMIT\}"', 'mmdet3d=={release}',
     'mmdetection3d: PyPI mmdet3d {release} (the replica\'s nearest release), not git {commit7}'),
    (r'RUN git clone [^\n]*(?:\\\n[^\n]*)*?(?=\n    && git config --system)', 'RUN true \\',
     'OneFormer3D: not cloned; its commit and clean-tree assertions not run (/opt/oneformer3d absent)'),
    (r'^RUN python -m harness doctor$', 'RUN python -m harness doctor --skip-upstream',
     'build-time doctor: --skip-upstream (no checkout to check)'),
]


def derive_mirrorless(text: str) -> tuple[str, list[str]]:
    """(derived Dockerfile, what each substitution did) for a build without upstream mirrors."""
    args = dockerfile_args(text)
    commit = args['MMDET3D_COMMIT']
    fill = {'release': NEAREST_RELEASE[commit], 'commit7': commit[:7]}
    notes = []
    for pattern, replacement, note in MIRRORLESS:
        found = re.findall(pattern, text, flags=re.M)
        if len(found) != 1:
            raise SystemExit(f'image-oci: docker/Dockerfile.cpu: {len(found)} matches of {pattern!r} (expected 1); '
                             'teach docker/oci_sources.py MIRRORLESS the changed Dockerfile')
        text = re.sub(pattern, lambda _: replacement.format(**fill), text, flags=re.M)
        notes.append(note.format(**fill))
    return text, notes


def requirement_sources() -> dict[str, list[str]]:
    """The index / find-links lines of the cpu requirement files: what pip.conf's no-index stands in for."""
    return {p.name: read_requirements(p)[0] for p in sorted(REQ.glob('cpu-*.txt')) if read_requirements(p)[0]}
