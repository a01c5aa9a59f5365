"""Options several verbs share (run, plan, status, derive), and the typed values they become.

The command line becomes typed values here, at the verb: :class:`Selection`
(which runs of the matrix) and ``RunOptions`` (how they run, with the
backend's own options); nothing past the verb reads ``args``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.backends import BACKENDS
from harness.core.errors import HarnessError
from harness.study.backend import Backend, RunOptions
from harness.study.matrix import Selection


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """--arms and --seeds."""
    parser.add_argument('--arms', nargs='+', default=None, help='subset of the spec\'s arms')
    parser.add_argument('--seeds', type=int, nargs='+', default=None, help='subset of the spec\'s seeds')


def selection(args: argparse.Namespace) -> Selection:
    """The runs these arguments select."""
    return Selection(arms=args.arms, seeds=args.seeds, only=getattr(args, 'only', None))


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Every backend's own options, one group each (a spec names the backend only once it is read)."""
    for name, cls in BACKENDS.items():
        cls.add_arguments(parser.add_argument_group(f'{name} backend'))


def run_options(args: argparse.Namespace, backend: Backend) -> RunOptions:
    """The RunOptions these arguments ask for, with ``backend``'s own options.

    Raises:
        HarnessError: ``--runs`` or ``--work-dirs`` names a file (checked before anything is planned).
    """
    for flag, path in (('--runs', args.runs), ('--work-dirs', getattr(args, 'work_dirs', None))):
        if path is not None and Path(path).exists() and not Path(path).is_dir():
            raise HarnessError(f'{flag} {path}: a file, not a folder; choose a folder (or move the file away)')
    return RunOptions(runs=args.runs, work_dirs=getattr(args, 'work_dirs', Path('work_dirs')),
                      data=getattr(args, 'data', None), force=getattr(args, 'force', False),
                      backend=type(backend).options(args))
