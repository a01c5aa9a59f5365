"""``python -m harness study <target>``: studies that need no dataset (toy)."""
from __future__ import annotations

import argparse

from harness.verbs import add_module_parsers

HELP = 'studies on synthetic problems (toy: criteria on free parameters)'
TARGETS = {'toy': 'harness.toy.study'}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-parser per study."""
    targets = parser.add_subparsers(dest='target', required=True, metavar='TARGET')
    add_module_parsers(targets, TARGETS, 'run_target')


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen study."""
    return args.run_target(args)
