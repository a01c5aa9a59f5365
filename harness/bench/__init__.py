"""``python -m harness bench <target>``: speed benchmarks that print ratios."""
from __future__ import annotations

import argparse
import importlib

HELP = 'speed benchmarks (criterion); each prints a table, a ratio and writes a CSV'

# target -> module exposing HELP, add_arguments(parser) and run(args) -> int
TARGETS = {
    'criterion': 'harness.bench.criterion',
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-parser per benchmark target."""
    targets = parser.add_subparsers(dest='target', required=True, metavar='TARGET')
    for name, module_name in TARGETS.items():
        module = importlib.import_module(module_name)
        sub = targets.add_parser(name, help=module.HELP, description=module.HELP,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(run_target=module.run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen target."""
    return args.run_target(args)
