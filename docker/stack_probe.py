"""Runs inside a replica virtualenv (docker/image_stack.py calls it; stdlib only, Python 3.10).

  python docker/stack_probe.py imports LIST [--module M ...] [--hide DIST ...]
      import every module named in LIST (one a line, ``#`` comments); exit 1 naming each failure
  python docker/stack_probe.py exec [--hide DIST ...] -m MODULE [ARGS ...]
      run ``python -m MODULE ARGS`` with DIST's top-level modules hidden
  python docker/stack_probe.py merge-traces DIR OUT
      write OUT (upstream-imports.txt) from the traces in DIR

``--hide DIST`` makes the distribution's top-level modules unimportable, as if
its pin were missing from docker/requirements: the proof that the replica
check fails, naming the module, when a pin is removed (tests/test_image_stack.py).

With IMAGE_STACK_TRACE=DIR set, ``sitecustomize`` (written by image_stack.py's
derive-imports) calls ``start_trace``: each process writes DIR/trace-<pid>.json
with the modules it loaded and which module imported each across packages.
"""
from __future__ import annotations

import argparse
import atexit
import builtins
import importlib
import importlib.abc
import importlib.util
import json
import os
import runpy
import sys
import warnings
from importlib import metadata
from pathlib import Path


class HiddenDistributions(importlib.abc.MetaPathFinder):
    """A meta-path finder that refuses the top-level modules of chosen distributions."""

    def __init__(self, tops: dict[str, str]):
        self.tops = tops  # top-level module name -> distribution that provides it

    def find_spec(self, name, path=None, target=None):
        dist = self.tops.get(name.partition('.')[0])
        if dist:
            raise ModuleNotFoundError(f"No module named '{name}' (hidden by --hide {dist})", name=name)
        return None


def top_level_modules(dist: metadata.Distribution) -> set[str]:
    """Top-level import names of an installed distribution (top_level.txt, else its RECORD)."""
    listed = (dist.read_text('top_level.txt') or '').split()
    if listed:
        return set(listed)
    tops = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first.endswith(('.dist-info', '.egg-info', '.data')) or first in ('..', '__pycache__', 'bin'):
            continue
        name = first.split('.')[0]
        if name.isidentifier():
            tops.add(name)
    return tops


def module_owners() -> dict[str, str]:
    """Top-level module -> the installed distribution that provides it (Python 3.10's
    packages_distributions reads only top_level.txt, which wheels built by meson or hatch lack)."""
    return {top: dist.metadata['Name'] for dist in metadata.distributions() for top in top_level_modules(dist)}


def hide(dists: list[str]) -> None:
    """Install the blocker for ``dists``; an unknown distribution is an error (a typo proves nothing)."""
    if not dists:
        return
    tops = {}
    for dist in dists:
        try:
            names = top_level_modules(metadata.distribution(dist))
        except metadata.PackageNotFoundError:
            raise SystemExit(f'--hide {dist}: not installed in this environment')
        tops.update({name: dist for name in names})
    sys.meta_path.insert(0, HiddenDistributions(tops))
    for dist in dists:
        print(f'hidden: {dist} (modules: {" ".join(sorted(n for n, d in tops.items() if d == dist))})', flush=True)


def read_module_list(path: Path) -> list[str]:
    """Module names, one a line; ``#`` starts a comment."""
    names = [line.split('#')[0].strip() for line in path.read_text().splitlines()]
    return [name for name in names if name]


def import_all(modules: list[str]) -> list[tuple[str, str, str | None]]:
    """Import each module; (module, error, missing module name or None) for each failure."""
    failures = []
    for module in modules:
        try:
            importlib.import_module(module)
        except BaseException as err:  # noqa: BLE001 - SystemExit or any error at import is the finding
            missing = err.name if isinstance(err, ModuleNotFoundError) else None
            failures.append((module, f'{type(err).__name__}: {err}', missing))
    return failures


def cmd_imports(args: argparse.Namespace) -> int:
    hide(args.hide)
    modules = read_module_list(args.list) + args.module
    warnings.simplefilter('ignore')  # deprecation chatter of a 2023 stack is not the finding
    failures = import_all(modules)
    by_missing: dict[str, list[str]] = {}
    for module, error, missing in failures:
        if missing:
            by_missing.setdefault(missing, []).append(module)
        else:
            print(f'FAIL  import {module}: {error}')
    for missing, broken in sorted(by_missing.items()):
        print(f"FAIL  No module named '{missing}': {len(broken)} import{'s' * (len(broken) > 1)} fail: "
              + ', '.join(broken))
    print(f'imports: {len(modules) - len(failures)}/{len(modules)} ok'
          + (f'; missing modules: {", ".join(sorted(by_missing))}' if by_missing else ''))
    return 1 if failures else 0


def cmd_exec(args: argparse.Namespace) -> int:
    hide(args.hide)
    sys.argv = [args.m, *args.args]
    sys.path[0] = os.getcwd()  # what `python -m` puts first
    runpy.run_module(args.m, run_name='__main__', alter_sys=True)
    return 0


def start_trace(out_dir: str) -> None:
    """Record which module imports which module of another top-level package; dump at exit."""
    edges: dict[str, str] = {}
    real_import, real_import_module = builtins.__import__, importlib.import_module

    def note(importer: str, targets: list[str]) -> None:
        for target in targets:
            if target.partition('.')[0] != importer.partition('.')[0]:
                edges.setdefault(target, importer)

    def importer(frame_globals: dict | None, depth: int) -> str:
        """The module whose code asked: importlib's own frames (``from x import y``) are skipped."""
        name = (frame_globals or {}).get('__name__') or '?'
        if not (name == 'importlib' or name.startswith('importlib.')):
            return name
        try:
            frame = sys._getframe(depth)
        except ValueError:  # called from C with a shallow stack (interpreter start-up)
            return name
        while (name == 'importlib' or name.startswith('importlib.')) and frame.f_back:
            frame = frame.f_back
            name = frame.f_globals.get('__name__') or '?'
        return name

    def traced_import(name, globals=None, locals=None, fromlist=(), level=0):
        module = real_import(name, globals, locals, fromlist, level)
        if level == 0 and globals:
            try:
                note(importer(globals, 2), [name] + [f'{name}.{item}' for item in fromlist or ()
                                                     if isinstance(item, str) and f'{name}.{item}' in sys.modules])
            except Exception:  # noqa: BLE001 - the tracer must never change what imports
                pass
        return module

    def traced_import_module(name, package=None):
        module = real_import_module(name, package)
        try:
            note(importer(sys._getframe(1).f_globals, 2), [module.__name__])
        except Exception:  # noqa: BLE001
            pass
        return module

    builtins.__import__, importlib.import_module = traced_import, traced_import_module

    def dump() -> None:
        record = {'argv': sys.argv, 'modules': list(sys.modules), 'edges': edges}
        Path(out_dir, f'trace-{os.getpid()}.json').write_text(json.dumps(record))

    atexit.register(dump)


FIRST_PARTY = {'oneformer3d', 'harness', 'influencerformer', 'stack_probe', 'sitecustomize', '__main__',
               '__mp_main__'}
HEADER = """\
# Every third-party module that the images' own steps load: derived, never edited by hand.
# `make upstream-imports` (ONEFORMER3D_ROOT=<OneFormer3D at the pinned commit>,
# MMDET3D_ROOT=<mmdetection3d with the pinned commit>) traces, in the cpu replica with mmdetection3d
# at the pinned commit: `python -m harness doctor`, `import oneformer3d`, and
# baselines/ci-upstream-cpu.yaml end to end (upstream's tools/train.py and tools/test.py with our
# plugin, then compare). Listed: each public module that code of one distribution (or upstream's,
# or ours) imported from another distribution; "# <- " names the first importer. The replica check
# (make image-stack) imports every line; CI has no OneFormer3D checkout, so this list stands in
# for `import oneformer3d`.
"""


def owner(module: str, dists: dict[str, str]) -> str | None:
    """The distribution that installs ``module`` (first-party and upstream code: their own names)."""
    top = module.partition('.')[0]
    if top in FIRST_PARTY or top.startswith('__editable__'):
        return top
    return dists.get(top)


def cmd_merge(args: argparse.Namespace) -> int:
    """Public modules imported across distributions, over every traced process (in the order they exited)."""
    dists = module_owners()
    found: dict[str, str] = {}
    for path in sorted(args.dir.glob('trace-*.json'), key=lambda p: p.stat().st_mtime):
        trace = json.loads(path.read_text())
        script = Path(trace['argv'][0]).name if trace['argv'] else '?'
        for target, importer in trace['edges'].items():
            theirs, ours = owner(target, dists), owner(importer, dists)
            if (target in trace['modules'] and theirs and theirs not in FIRST_PARTY | {'influencerformer'}
                    and not theirs.startswith('__editable__') and theirs != ours
                    and not any(part.startswith('_') for part in target.split('.'))):
                found.setdefault(target, script if importer in ('__main__', '__mp_main__') else importer)
    lines = [f'{m:<48} # <- {found[m]}' for m in sorted(found)]
    args.out.write_text(HEADER + '\n'.join(lines) + '\n')
    print(f'{args.out}: {len(lines)} modules from {len(list(args.dir.glob("trace-*.json")))} processes')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='stack_probe.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='cmd', required=True)
    imports = sub.add_parser('imports', help='import every module of a list')
    imports.add_argument('list', type=Path, help='file with one module name a line')
    imports.add_argument('--module', action='append', default=[], help='one more module to import')
    imports.add_argument('--hide', action='append', default=[], metavar='DIST', help='hide a distribution')
    run = sub.add_parser('exec', help='run a module with distributions hidden')
    run.add_argument('--hide', action='append', default=[], metavar='DIST', help='hide a distribution')
    run.add_argument('-m', required=True, metavar='MODULE', help='module to run as __main__')
    run.add_argument('args', nargs=argparse.REMAINDER, help='its arguments')
    merge = sub.add_parser('merge-traces', help='write the module list from traces')
    merge.add_argument('dir', type=Path, help='folder of trace-<pid>.json')
    merge.add_argument('out', type=Path, help='the list to write')
    args = parser.parse_args(argv)
    return {'imports': cmd_imports, 'exec': cmd_exec, 'merge-traces': cmd_merge}[args.cmd](args)


if __name__ == '__main__':
    raise SystemExit(main())
