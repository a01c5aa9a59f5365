"""buildah with this project's own storage, and the stand-in for the cpu image's base image.

``python:3.10.15-slim-bookworm`` cannot be pulled here (no registry). The stand-in, built once
and kept in the storage under the official name, so that the Dockerfile's FROM finds it:
Debian bookworm by ``debootstrap --variant=minbase`` plus the runtime libraries CPython's
modules link, the apt sources the official image has, this machine's pyenv CPython 3.10
copied to /usr/local (as the official image installs it there), pip 23.0.1 (pyenv's, the
official image's too), setuptools 65.5.1 and wheel 0.44.0 (the official image's). It is NOT
the official image: CPython 3.10.13 (not 3.10.15), another build, fewer packages. A label
carries the recipe's hash; a changed recipe rebuilds it. Stdlib only.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from image_stack import find_python

BASE_TAG = 'docker.io/library/python:3.10.15-slim-bookworm'  # what `FROM python:3.10.15-slim-bookworm` finds
SUITE, DEBIAN = 'bookworm', 'http://deb.debian.org/debian'
# minbase + what the official slim image adds (ca-certificates, netbase, tzdata) + the shared
# libraries CPython's extension modules link (ldd of lib-dynload; tkinter's X/Tk left out)
PACKAGES = ['ca-certificates', 'netbase', 'tzdata', 'libbz2-1.0', 'libcrypt1', 'libexpat1', 'libffi8', 'liblzma5',
            'libncursesw6', 'libnsl2', 'libreadline8', 'libsqlite3-0', 'libssl3', 'libtirpc3', 'libuuid1', 'zlib1g']
SOURCES = f"""Types: deb
URIs: {DEBIAN}
Suites: {SUITE} {SUITE}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: {SUITE}-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
PIP_EXTRAS = ['setuptools==65.5.1', 'wheel==0.44.0']  # the official python:3.10 images' (pip: 23.0.1, as pyenv's)
LABEL = 'org.influencerformer.stand-in'
# the official image's environment, its PYTHON_VERSION replaced by the stand-in's
ENV = {'PATH': '/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'LANG': 'C.UTF-8'}


class Buildah:
    """buildah on a storage of its own (root, runroot, driver): nothing of anyone else's is touched."""

    def __init__(self, root: Path, runroot: Path, driver: str):
        self.root, self.driver = root, driver
        self.base = ['buildah', '--root', str(root), '--runroot', str(runroot), '--storage-driver', driver]

    def run(self, *args: str, check: bool = True, quiet: bool = False) -> int:
        if not quiet:
            print('+ buildah ' + ' '.join(args), flush=True)
        rc = subprocess.run([*self.base, *args]).returncode
        if check and rc:
            raise SystemExit(f'image-oci: failed: buildah {" ".join(args)}')
        return rc

    def out(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run([*self.base, *args], capture_output=True, text=True)
        if check and proc.returncode:
            raise SystemExit(f'image-oci: failed: buildah {" ".join(args)}: {proc.stderr.strip()[-300:]}')
        return proc.stdout.strip() if proc.returncode == 0 else ''


def python_root() -> Path:
    """The pyenv CPython 3.10 the replica uses (its prefix: bin/, lib/, include/)."""
    return Path(find_python()).resolve().parents[1]


def recipe() -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(str(python_root()).encode())
    return digest.hexdigest()[:16]


def ensure_base(b: Buildah) -> str:
    """The stand-in under BASE_TAG, built unless the storage holds one of this recipe; returns its recipe."""
    want = recipe()
    have = b.out('inspect', '--type', 'image', '--format', f'{{{{index .OCIv1.Config.Labels "{LABEL}"}}}}',
                 BASE_TAG, check=False)
    if have == want:
        print(f'{BASE_TAG}: the stand-in (recipe {want}) is in {b.root}', flush=True)
        return want
    for tool in ('debootstrap', 'buildah'):
        if not shutil.which(tool):
            raise SystemExit(f'image-oci: {tool} is not installed: apt-get install buildah debootstrap')
    ctr = b.out('from', '--pull=never', '--name', 'influencerformer-base', 'scratch')
    try:
        root = Path(b.out('mount', ctr))
        debootstrap(root)
        install_python(root)
        wheels = root / 'tmp' / 'base-wheels'
        py = find_python()
        subprocess.run([py, '-m', 'pip', 'download', '--quiet', '--no-deps', '--dest', str(wheels), *PIP_EXTRAS],
                       check=True)
        b.run('config', *[f'--env={k}={v}' for k, v in ENV.items()], ctr)
        b.run('run', '--isolation', 'chroot', ctr, '--', '/sbin/ldconfig')
        b.run('run', '--isolation', 'chroot', ctr, '--', 'python3', '-m', 'pip', 'install', '--quiet', '--no-index',
              '--no-cache-dir', '--find-links', '/tmp/base-wheels', *PIP_EXTRAS)
        shutil.rmtree(wheels)
        version = b.out('run', '--isolation', 'chroot', ctr, '--', 'python3', '-c',
                        'import platform; print(platform.python_version())')
        b.run('config', f'--env=PYTHON_VERSION={version}', '--cmd', 'python3', f'--label={LABEL}={want}',
              f'--label=org.influencerformer.note=stand-in for python:3.10.15-slim-bookworm: debootstrap minbase '
              f'{SUITE}, CPython {version} (pyenv build), not the official image', ctr)
        b.run('commit', '--quiet', '--format', 'docker', '--rm', ctr, BASE_TAG)
    except BaseException:
        b.run('rm', ctr, check=False)
        raise
    return want


def debootstrap(root: Path) -> None:
    cmd = ['debootstrap', '--variant=minbase', f'--include={",".join(PACKAGES)}', SUITE, str(root), DEBIAN]
    print('+ ' + ' '.join(cmd), flush=True)
    with tempfile.NamedTemporaryFile('w+', suffix='.log') as log:
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode:
            log.seek(0)
            raise SystemExit('image-oci: debootstrap failed:\n' + log.read()[-2000:])
    (root / 'etc' / 'apt' / 'sources.list').unlink(missing_ok=True)
    (root / 'etc' / 'apt' / 'sources.list.d' / 'debian.sources').write_text(SOURCES)
    shutil.rmtree(root / 'var' / 'cache' / 'apt' / 'archives', ignore_errors=True)
    (root / 'var' / 'cache' / 'apt' / 'archives' / 'partial').mkdir(parents=True)


def install_python(root: Path) -> None:
    """pyenv's CPython into /usr/local: its stdlib without tests, pip and setuptools; shebangs pointed there."""
    src, dest = python_root(), root / 'usr' / 'local'
    site = src / 'lib' / 'python3.10' / 'site-packages'
    keep = ('pip', 'setuptools', 'pkg_resources', '_distutils_hack', 'distutils-precedence.pth', 'README.txt')

    def ignore(folder: str, names: list[str]) -> list[str]:
        if Path(folder) == site:  # this machine's own additions (a sandbox's CA hook) stay here
            return [n for n in names if not n.startswith(keep)]
        if Path(folder) == src / 'lib' / 'python3.10':
            return [n for n in names if n in ('test', 'idle_test')]
        return [n for n in names if n == '__pycache__' or (Path(folder) == src and n == 'share')]

    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True, ignore=ignore)
    for script in (dest / 'bin').iterdir():
        if script.is_file() and not script.is_symlink():
            data = script.read_bytes()
            if data.startswith(f'#!{src}/bin/'.encode()):
                script.write_bytes(data.replace(f'#!{src}/bin/'.encode(), b'#!/usr/local/bin/', 1))
    os.chmod(dest / 'bin' / 'python3.10', 0o755)
