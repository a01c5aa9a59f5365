"""docker/Dockerfile.cpu built for real, without a Docker engine: ``make image-oci``.

Debian's buildah builds the Dockerfile daemon-less (``bud --isolation chroot --format docker
--pull=never``: the docker format, or SHELL is ignored; chroot isolation, as the oci runtime
fails on cgroups here), on a stand-in for its base image (docker/oci_base.py), with the
sources it cannot reach answered locally (docker/oci_sources.py). Then, as the image's user,
it runs the image's CMD, ``harness doctor`` and the cpu service's own job (``make ci-upstream``:
upstream's S3DIS config a few iterations per arm on synthetic rooms in a mounted data folder,
results in a mounted folder, checked here). Without upstream mirrors (CI) the Dockerfile is
derived (three commands replaced, each printed), doctor skips the upstream checkout and the
job is ``make smoke`` (native backend). Ends with what stood in for what and a RESULT line;
exit 1 naming the failed step. Stdlib only; needs root (chroot builds), buildah, debootstrap.

  python docker/image_oci.py build [--no-cache] [--context DIR]   # ONEFORMER3D_ROOT, MMDET3D_ROOT: mirrors
  python docker/image_oci.py plan                             # what would stand in for what
  python docker/image_oci.py clean                            # this tool's buildah storage, base included
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import oci_sources as src
from oci_base import BASE_TAG, Buildah, ensure_base
from stack_plan import REPO

STORAGE = src.OCI / 'storage'
RUNROOT = Path('/run/influencerformer-oci')  # buildah's locks and mount state: tmpfs, cleared at boot
DRIVER = os.environ.get('IMAGE_OCI_STORAGE_DRIVER', 'overlay')  # vfs works too (slower, a full copy per layer)
DOCKERFILE = Path('docker/Dockerfile.cpu')
CACHE_GB = int(os.environ.get('IMAGE_OCI_CACHE_GB', '30'))  # the image and the planted breaks' chains: ~12 GB
PEAK_GB = 20  # measured: a build with a new pip layer ran out of disk with 18 GB free
JOBS = {False: ('ci-upstream', 'results/ci-upstream/runs', 'results/ci-upstream/comparison.md'),
        True: ('smoke', 'work_dirs/smoke/runs', 'results/smoke/comparison.md')}  # mirror-less -> Make target


class Failed(SystemExit):
    """A named step failed; the message says which."""


@contextlib.contextmanager
def step(name: str, start: float, failed: list[str]):
    print(f'\n== [{time.monotonic() - start:5.0f} s] {name}', flush=True)
    try:
        yield
    except SystemExit as err:
        failed.append(name)
        raise Failed(f'image-oci: {name}: {err.code}' if not str(err.code).startswith('image-oci') else err.code)


def instructions(text: str) -> list[tuple[int, str]]:
    """(line number, instruction) of each Dockerfile instruction: buildah's STEP n is the n-th."""
    out, start, buf = [], 0, ''
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith('#')):
            continue
        start = start if buf else number
        if line.endswith('\\'):
            buf += line[:-1] + ' '
            continue
        out.append((start, buf + line))
        buf = ''
    return out


def bud(b: Buildah, dockerfile: Path, context: Path, mounts: dict[str, Path], tag: str, lines: list,
        no_cache: bool) -> None:
    """buildah bud, its output streamed; a failure names the step and its line in docker/Dockerfile.cpu."""
    cmd = [*b.base, 'bud', '--isolation', 'chroot', '--format', 'docker', '--pull=never', '--layers',
           *(['--no-cache'] if no_cache else []), '--force-rm', '-f', str(dockerfile), '-t', tag,
           '--build-arg', f'IMAGE_TAG={tag}',  # as compose.yaml passes it
           *[a for dst, host in mounts.items() for a in ('-v', f'{host}:{dst}:ro')], str(context)]
    print('+ ' + ' '.join(cmd), flush=True)
    current = ''
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        try:
            for line in proc.stdout:
                print(line, end='', flush=True)
                current = line.strip() if re.match(r'STEP \d+/\d+: ', line) else current
        finally:
            if proc.poll() is None:  # interrupted: the build goes with us
                proc.terminate()
        rc = proc.wait()
    if rc:
        found = re.match(r'STEP (\d+)/(\d+): ', current)
        where = 'before its first step'
        if found:
            number, text = lines[int(found.group(1)) - 1]
            where = f'at STEP {found.group(1)}/{found.group(2)} (line {number}): {text[:110]}'
        raise SystemExit(f'failed {where}')


def job_commands(target: str) -> list[list[str]]:
    """The Make target's harness commands as the image runs them (the Makefile stays their one source)."""
    out = subprocess.run(['make', '-n', '-s', '-C', str(REPO), target, 'BACKEND=upstream', 'PYTHON=python',
                          'PY=python'], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines() if line.startswith('python -m harness ')]


def planned_runs(spec: Path) -> int:
    """arms x seeds of a spec (flow lists, as the job specs write them; stdlib: no YAML parser here)."""
    text = spec.read_text()
    lists = [re.search(rf'^{key}: \[([^\]]*)\]', text, re.M) for key in ('arms', 'seeds')]
    if not all(lists):
        raise SystemExit(f'{spec}: arms and seeds must be flow lists ([a, b]) for image-oci to count the runs')
    return len(lists[0].group(1).split(',')) * len(lists[1].group(1).split(','))


def run_job(b: Buildah, ctr: str, uid: str, mirrorless: bool, out: Path) -> None:
    """The service's job as the image's user, data / work_dirs / results mounted from ``out``; outputs checked."""
    target, runs, table = JOBS[mirrorless]
    vols = []
    for name in ('data', 'work_dirs', 'results'):
        (out / name).mkdir(parents=True)
        os.chown(out / name, int(uid), int(uid))  # as compose's services run: the folders are the user's
        vols += ['-v', f'{out / name}:/workspace/{name}']
    commands = job_commands(target)
    expected = planned_runs(REPO / commands[0][commands[0].index('--spec') + 1])
    for cmd in commands:
        if b.run('run', '--isolation', 'chroot', '--user', uid, *vols, ctr, '--', *cmd, check=False):
            raise SystemExit(f'make {target} in the image failed at: {" ".join(cmd)}')
    records = sorted((out / runs).glob('*/run.json'))
    states = {p.parent.name: json.loads(p.read_text()).get('status') for p in records}
    if len(records) != expected or any(s != 'finished' for s in states.values()) or not (out / table).is_file():
        raise SystemExit(f'make {target}: {expected} runs planned, records {states or "none"} in {out / runs}, '
                         f'{table}: {"present" if (out / table).is_file() else "missing"}')
    foreign = [p for p in out.rglob('*') if p.stat().st_uid != int(uid)]
    if foreign:
        raise SystemExit(f'make {target}: {len(foreign)} outputs not owned by uid {uid}, e.g. {foreign[0]}')
    print(f'make {target}: {len(records)} runs finished, {out / table} written, all outputs uid {uid}', flush=True)


def bound_cache(b: Buildah) -> None:
    """Past CACHE_GB the layer cache goes (stale chains of old pins pile up), the stand-in base stays."""
    used = int(subprocess.run(['du', '-s', '--block-size=1G', str(STORAGE)], capture_output=True, text=True)
               .stdout.split('\t')[0] or 0)
    if used > CACHE_GB:
        base = b.out('inspect', '--type', 'image', '--format', '{{.FromImageID}}', BASE_TAG, check=False)
        print(f'{STORAGE}: {used} GB > {CACHE_GB} GB (IMAGE_OCI_CACHE_GB): dropping the layer cache', flush=True)
        for _ in range(5):  # children before parents: a parent with children is refused
            images = [i for i in dict.fromkeys(b.out('images', '--all', '--quiet', '--no-trunc').split())
                      if i.removeprefix('sha256:') != base]
            for image in images:
                b.run('rmi', '--force', image, check=False, quiet=True)


def check_image(b: Buildah, tag: str, uid: str, mirrorless: bool, out: Path, results: dict) -> None:
    ctr = b.out('from', '--pull=never', '--name', 'influencerformer-oci-check', tag)
    try:
        config = json.loads(b.out('inspect', '--type', 'image', tag))['Docker']['config']
        cmd, volumes = config['Cmd'], sorted(config.get('Volumes') or {})
        if volumes != [f'/workspace/{name}' for name in ('data', 'results', 'work_dirs')]:
            raise SystemExit(f'the image declares volumes {volumes}, not /workspace/{{data,work_dirs,results}}')
        # buildah 1.28 mounts the image's anonymous volumes over some -v binds of the same path (which ones
        # varies run to run): the check container (not the image) drops them, so the binds hold
        b.run('config', *[f'--volume={v}-' for v in volumes], ctr)
        for name, argv in [('CMD', cmd), ('doctor', ['python', '-m', 'harness', 'doctor', *(
                ['--skip-upstream'] if mirrorless else [])])]:
            if b.run('run', '--isolation', 'chroot', '--user', uid, ctr, '--', *argv, check=False):
                raise SystemExit(f'{" ".join(argv)} as uid {uid} failed')
            results[name] = 'ok'
        run_job(b, ctr, uid, mirrorless, out)
        results[f'make {JOBS[mirrorless][0]}'] = 'ok'
    finally:
        b.run('rm', ctr, check=False, quiet=True)


def build(context: Path, no_cache: bool) -> int:
    start, failed, results = time.monotonic(), [], {}
    mirrors = src.mirror_sources()
    mirrorless = mirrors is None
    text = (context / DOCKERFILE).read_text()
    args = src.dockerfile_args(text)
    tag, uid = args['IMAGE_TAG'], args['UID']
    b = Buildah(STORAGE, RUNROOT, DRIVER)
    free = shutil.disk_usage(src.OCI).free / 2**30
    if free < PEAK_GB:  # a warning, not a refusal: with the layers cached the build needs little
        print(f'image-oci: WARNING: {free:.0f} GB free under {src.OCI}; a build whose pip layer is new needs '
              f'~{PEAK_GB} GB at its peak (committing the 5.5 GB layer copies it)', flush=True)
    notes, server = [], None
    try:
        with step('storage and the stand-in base image', start, failed):
            for ctr in b.out('containers', '--quiet').split():  # left by an interrupted run: this storage is ours
                b.run('rm', ctr, check=False)
            bound_cache(b)
            ensure_base(b)
        with step('wheel folder', start, failed):
            src.ensure_wheels()
        dockerfile = context / DOCKERFILE
        if mirrorless:
            with step('derived Dockerfile (no upstream mirrors)', start, failed):
                derived, notes = src.derive_mirrorless(text)
                dockerfile = src.OCI / 'Dockerfile.cpu.mirrorless'
                dockerfile.write_text(derived)
                print('\n'.join(f'replaced: {n}' for n in notes), flush=True)
        with step('git mirrors', start, failed):
            commits = {url: (args['ONEFORMER3D_COMMIT'] if 'oneformer3d' in url else args['MMDET3D_COMMIT'])
                       for url in src.MIRRORS}
            served = src.ensure_mirrors(mirrors, commits) if mirrors else {}
        with step('serve wheels and mirrors on 127.0.0.1', start, failed):
            server, port = src.start_server(src.OCI / 'server.log')
            mounts = src.write_configs(port, served, src.OCI / 'mounts')
        with step(f'buildah bud {DOCKERFILE}', start, failed):
            bud(b, dockerfile, context, mounts, tag, instructions(text), no_cache)
            results['build'] = 'ok'
        src.stop_server(server)
        server = None
        out = REPO / 'work_dirs' / 'image-oci' / time.strftime('%Y%m%dT%H%M%S')
        with step(f'the image as uid {uid}: CMD, doctor, make {JOBS[mirrorless][0]} ({out})', start, failed):
            check_image(b, tag, uid, mirrorless, out, results)
    except Failed as err:
        print(f'\n{err.code}', file=sys.stderr, flush=True)
    finally:
        if server:
            src.stop_server(server)
        if results.get('build') == 'ok':  # else the tag still names an earlier build's image
            results['image_size'] = b.out('images', '--format', '{{.Size}}', tag, check=False) or None
    summary(mirrors, notes, tag)
    print('RESULT ' + json.dumps({
        'verb': 'image-oci', 'status': 'failed' if failed else 'ok',
        'dockerfile': 'unchanged' if not mirrorless else f'mirror-less: {len(notes)} commands replaced',
        **results, 'failed': failed, 'minutes': round((time.monotonic() - start) / 60, 1),
        'storage': subprocess.run(['du', '-sh', str(STORAGE)], capture_output=True, text=True).stdout.split('\t')[0]}))
    return 1 if failed else 0


def summary(mirrors: dict | None, notes: list[str], tag: str | None) -> None:
    args = src.dockerfile_args((REPO / DOCKERFILE).read_text())
    rows = [(f'FROM {BASE_TAG.split("/")[-1]}', 'stand-in: debootstrap --variant=minbase bookworm + this machine\'s '
             'pyenv CPython 3.10 in /usr/local + setuptools 65.5.1, wheel 0.44.0 (docker/oci_base.py); '
             'not the official image'),
            ('torch==2.0.1+cpu (PyTorch\'s index)', 'PyPI\'s torch 2.0.1, the CUDA 11.7 build, relabelled 2.0.1+cpu '
             'in its METADATA (torch.__version__ says +cu117)'),
            ('mmcv, torch-scatter (OpenMMLab\'s, PyG\'s wheels)', 'built here from PyPI\'s sdists (the replica\'s)'),
            ('every other pin (PyPI)', f'PyPI\'s wheels, as the replica downloaded them to {src.pypi_wheels()}'),
            ('pip\'s sources', f'/etc/pip.conf mounted: no-index, find-links to {src.WHEELS} on 127.0.0.1; '
             f'the requirement files\' {sum(len(v) for v in src.requirement_sources().values())} index / '
             'find-links lines are unreachable and ignored')]
    for url in src.MIRRORS:
        rows.append((url, f'mirror of {mirrors[url]} (/root/.gitconfig insteadOf), served on 127.0.0.1'
                     if mirrors else 'NOT fetched (no mirror): see the derived Dockerfile'))
    rows += [(n.split(':')[0], 'derived Dockerfile: ' + n.split(': ', 1)[1]) for n in notes]
    rows.append(('mounts', 'leave empty mount points in the image: /etc/pip.conf'
                 + (', /root/.gitconfig' if mirrors else '')))
    print(f'\nwhat stood in for what (docker/Dockerfile.cpu built {"UNCHANGED" if mirrors else "DERIVED"}):')
    print('\n'.join(f'  {a:<48} {b}' for a, b in rows))
    if not mirrors:
        print(f'not run without mirrors: the clone of OneFormer3D @ {args["ONEFORMER3D_COMMIT"][:7]} and its '
              f'assertions, mmdetection3d @ {args["MMDET3D_COMMIT"][:7]}, doctor\'s upstream checks, make '
              'ci-upstream (set ONEFORMER3D_ROOT and MMDET3D_ROOT to git repositories holding the commits)')
    print('never proven here: the real base image, PyTorch\'s / OpenMMLab\'s / PyG\'s wheels, GitHub\'s '
          'reachability, BuildKit, anything CUDA (docker/Dockerfile: not buildable here)')
    if tag:
        print(f'image {tag} and its layers kept as the build cache in {STORAGE} (a cached layer was proven by the '
              'build that made it; --no-cache rebuilds all; `python docker/image_oci.py clean` removes it)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='docker/image_oci.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('command', choices=['build', 'plan', 'clean'])
    parser.add_argument('--context', type=Path, default=REPO, help='build context holding docker/Dockerfile.cpu '
                        '(default: this checkout)')
    parser.add_argument('--no-cache', action='store_true', help='rebuild every layer (default: reuse the cached '
                        'layers of identical steps, as docker build does)')
    args = parser.parse_args(argv)
    if args.command == 'plan':
        summary(src.mirror_sources(), [] if src.mirror_sources() else
                src.derive_mirrorless((args.context / DOCKERFILE).read_text())[1], None)
        return 0
    if os.geteuid() != 0:
        raise SystemExit('image-oci: buildah\'s chroot builds need root here (rootless needs subuid ranges): '
                         'run it as root')
    for tool in ('buildah', 'debootstrap', 'zip'):
        if not shutil.which(tool):
            raise SystemExit(f'image-oci: {tool} is not installed: apt-get install buildah debootstrap zip')
    src.OCI.mkdir(parents=True, exist_ok=True)
    with (src.OCI / 'lock').open('w') as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f'image-oci: another image-oci holds {src.OCI / "lock"}; wait for it') from None
        if args.command == 'clean':
            Buildah(STORAGE, RUNROOT, DRIVER).run('rmi', '--all', '--force', check=False)
            shutil.rmtree(STORAGE, ignore_errors=True)
            print(f'removed {STORAGE}; kept {src.SERVE} (wheels, mirrors)')
            return 0
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the finally blocks stop the server
        return build(args.context.resolve(), args.no_cache)


if __name__ == '__main__':
    sys.exit(main())
