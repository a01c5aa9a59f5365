"""The install plan of an image, read from its Dockerfile, and how the replica replays each step.

``dockerfile_steps`` parses every ``python -m pip install`` of a Dockerfile (ARGs
expanded, container paths mapped back through its COPY lines); ``replica_actions``
says how docker/image_stack.py installs each: the same command where the source
is reachable, otherwise one of the substitutions below. Nothing else differs, and
a Dockerfile step this module cannot map is an error, not a silent skip.

  torch            PyPI's build of the same release (CUDA 11.7 libraries as nvidia-* wheels)
                   for +cu118 / +cpu from PyTorch's index
  mmcv, torch-scatter
                   built from PyPI's sdist against that torch (CPU kernels), once, into a
                   wheelhouse, instead of OpenMMLab's / PyG's prebuilt wheels
  mmdetection3d    the pinned commit from $MMDET3D_ROOT (git archive of that commit); without
                   it, the nearest PyPI release that contains the commit, labelled as such
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = {'gpu': REPO / 'docker' / 'Dockerfile', 'cpu': REPO / 'docker' / 'Dockerfile.cpu'}
# PyPI has no mmdet3d release equal to the images' commit; the first release that contains it
# (git diff --stat 22aaa47 v1.1.1 -- mmdet3d: 41 files differ). A new commit needs a new entry.
NEAREST_RELEASE = {'22aaa47fdb53ce1870ff92cb7e3f96ae38d17f61': '1.1.1'}
FROM_PYPI = {'torch'}  # the same release from PyPI, local label (+cu118, +cpu) dropped
FROM_SDIST = {'mmcv': {'MMCV_WITH_OPS': '1'}, 'torch-scatter': {}}  # built here; extra build env
PIP_FLAGS = {'--no-deps'}  # the only pip flags the Dockerfiles use; anything else is refused



@dataclass
class Step:
    """One ``pip install`` of a Dockerfile: what it installs, and how the replica installs it."""
    line: str                  # as the Dockerfile writes it (ARGs expanded)
    flags: list[str]
    kind: str                  # 'requirements' | 'path' | 'editable' | 'git'
    target: str                # repo-relative path, or the git URL


def logical_lines(text: str) -> list[str]:
    """Dockerfile instructions: comment lines dropped, continuation lines joined."""
    out, buf = [], ''
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith('#') or not line:
            continue
        if line.endswith('\\'):
            buf += line[:-1] + ' '
            continue
        out.append(buf + line)
        buf = ''
    return out


def dockerfile_steps(dockerfile: Path) -> list[Step]:
    """Every ``python -m pip install`` of the Dockerfile, in order, container paths mapped to the repo."""
    args, copies, steps = {}, {}, []
    for line in logical_lines(dockerfile.read_text()):
        word, _, rest = line.partition(' ')
        if word == 'ARG' and '=' in rest:
            name, _, value = rest.partition('=')
            args[name] = value
        elif word == 'COPY':
            src, dst = [t for t in rest.split() if not t.startswith('--')]
            copies[dst.rstrip('/')] = src.rstrip('/')
        elif word == 'RUN':
            for command in re.split(r'\s*(?:&&|;)\s*', rest):
                command = re.sub(r'^(then|else)\s+', '', command)
                if 'pip install' in command and 'MinkowskiEngine' not in command:  # MINKOWSKI=real: not replicated
                    expanded = re.sub(r'\$\{(\w+)\}', lambda m: args[m.group(1)], command)
                    steps.append(parse_pip(expanded, copies))
    return steps


def to_repo(path: str, copies: dict[str, str]) -> str:
    """A container path the Dockerfile COPYed, as a repo-relative path."""
    for dst in sorted(copies, key=len, reverse=True):
        if path == dst or path.startswith(dst + '/'):
            return os.path.normpath(copies[dst] + path[len(dst):])
    raise ValueError(f'{path}: not COPYed from the repository')


def parse_pip(command: str, copies: dict[str, str]) -> Step:
    tokens = shlex.split(command)
    tokens = tokens[tokens.index('install') + 1:]
    flags = [t for t in tokens if t.startswith('--')]
    unknown = set(flags) - PIP_FLAGS
    if unknown:
        raise ValueError(f'{command}: pip options {sorted(unknown)} are not replicated; teach docker/image_stack.py')
    rest = [t for t in tokens if not t.startswith('--')]
    if rest[0] in ('-r', '-e'):
        kind = 'requirements' if rest[0] == '-r' else 'editable'
        return Step(command, flags, kind, to_repo(rest[1], copies))
    if rest[0].startswith('git+'):
        return Step(command, flags, 'git', rest[0])
    return Step(command, flags, 'path', to_repo(rest[0], copies))


def read_requirements(path: Path) -> tuple[list[str], list[str]]:
    """(index options, requirement lines) of a requirements file."""
    lines = [line.split('#')[0].strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line]
    return [x for x in lines if x.startswith('-')], [x for x in lines if not x.startswith('-')]


def replica_actions(step: Step, mmdet3d_root: Path | None) -> list[tuple[str, list[str]]]:
    """What the replica runs for one step: [(how, pip install arguments)]; 'how' names a substitution."""
    if step.kind == 'editable':
        return [('same', [*step.flags, '-e', str(REPO / step.target)])]
    if step.kind == 'path':
        return [('same', [*step.flags, str(REPO / step.target)])]
    if step.kind == 'git':
        return [mmdet3d_action(step, mmdet3d_root)]
    options, reqs = read_requirements(REPO / step.target)
    if not options:
        return [('same', [*step.flags, '-r', str(REPO / step.target)])]
    actions = []
    for req in reqs:
        name, _, version = req.partition('==')
        if name in FROM_PYPI:
            actions.append(('pypi', [*step.flags, f'{name}=={version.split("+")[0]}']))
        elif name in FROM_SDIST:
            actions.append(('sdist', [*step.flags, f'{name}=={version}']))
        else:
            raise ValueError(f'{step.target}: {req} comes from {options}; no replica rule for it')
    return actions


def mmdet3d_action(step: Step, root: Path | None) -> tuple[str, list[str]]:
    url, _, commit = step.target.rpartition('@')
    if 'mmdetection3d' not in url:
        raise ValueError(f'{step.target}: only mmdetection3d is installed from git')
    if root:
        return ('commit', [*step.flags, f'{root}@{commit}'])
    if commit not in NEAREST_RELEASE:
        raise ValueError(f'mmdetection3d {commit}: no nearest release known; set MMDET3D_ROOT to a checkout')
    return ('release', [*step.flags, f'mmdet3d=={NEAREST_RELEASE[commit]}'])


def plan(service: str, mmdet3d_root: Path | None) -> list[tuple[Step, list[tuple[str, list[str]]]]]:
    return [(step, replica_actions(step, mmdet3d_root)) for step in dockerfile_steps(DOCKERFILES[service])]
