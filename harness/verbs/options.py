"""Options several verbs share (run, derive, plan), and the RunOptions they make."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.backends.upstream.pretrained import DEFAULT_CACHE
from harness.study.backend import RunOptions


def add_upstream_arguments(group: argparse._ArgumentGroup) -> None:
    """Options of the upstream backend (run and derive)."""
    group.add_argument('--upstream-root', type=Path, default=None,
                       help="OneFormer3D checkout (default: $ONEFORMER3D_ROOT, else the spec's upstream.root)")
    group.add_argument('--epochs', type=int, default=None,
                       help="schedule override (default: the spec's); PolyLR's end follows it")
    group.add_argument('--iters', type=int, default=None, help='iteration schedule instead of epochs (smoke runs)')
    group.add_argument('--gpus', type=int, default=1,
                       help='GPUs per run: > 1 launches upstream\'s train.py with torchrun (--launcher pytorch)')
    group.add_argument('--allow-other-commit', action='store_true',
                       help='run an upstream checkout that is not at the spec\'s commit (recorded)')
    group.add_argument('--cache', type=Path, default=DEFAULT_CACHE, help='pretrained checkpoint cache')


def options(args: argparse.Namespace) -> RunOptions:
    """The RunOptions these arguments ask for."""
    return RunOptions(runs=args.runs, work_dirs=args.work_dirs, data=args.data, force=args.force,
                      gpus=args.gpus, epochs=args.epochs, iters=args.iters, upstream_root=args.upstream_root,
                      allow_other_commit=args.allow_other_commit, cache=args.cache)
