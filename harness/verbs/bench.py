"""``python -m harness bench <target>``: speed benchmarks that print ratios."""
from __future__ import annotations

import argparse

from harness.verbs import add_module_parsers

HELP = 'speed benchmarks (criterion, eval, data, native); each prints a table, a ratio and writes a CSV'

# target -> module exposing HELP, add_arguments(parser) and run(args) -> int
TARGETS = {
    'criterion': 'harness.bench.criterion',
    'eval': 'harness.bench.eval',
    'data': 'harness.bench.data',
    'native': 'harness.bench.native',
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-parser per benchmark target."""
    targets = parser.add_subparsers(dest='target', required=True, metavar='TARGET')
    add_module_parsers(targets, TARGETS, 'run_target')


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen target."""
    return args.run_target(args)
