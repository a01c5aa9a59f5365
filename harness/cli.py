"""``python -m harness <verb>``: parses arguments and calls one module per verb."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from harness.core.errors import HarnessError
from harness.core.io import result_line

# verb -> module exposing HELP, add_arguments(parser) and run(args) -> int
VERBS = {
    'synth': 'harness.data.synth',
    'prepare-data': 'harness.data.prepare',
    'verify-data': 'harness.data.verify',
    'subset': 'harness.data.subset',
    'run': 'harness.verbs.run',
    'derive': 'harness.verbs.derive',
    'doctor': 'harness.verbs.doctor',
    'evaluate': 'harness.verbs.evaluate',
    'compare': 'harness.reporting.compare',
    'study': 'harness.verbs.study',
    'bench': 'harness.verbs.bench',
}

EPILOG = """examples:
  python -m harness synth --out data/synth-raw --raw --rooms-per-area 2 --seed 0
  python -m harness prepare-data --raw data/synth-raw --out data/synth
  python -m harness verify-data data/synth
  python -m harness bench criterion                 # CPU timing, writes results/bench/criterion-cpu.csv
  python -m harness bench criterion --device cuda --force
  python -m harness bench eval                      # evaluator throughput, 68 rooms x 200 preds x 100k points
  python -m harness evaluate work_dirs/run/preds --data data/s3dis --area 5 --out metrics.json
  python -m harness derive --spec baselines/s3dis-area5.yaml --upstream-root ../oneformer3d --out /tmp/cfgs
  python -m harness compare --runs results/runs --experiment s3dis-area5 --out results/
  python -m harness study toy                       # criteria on free parameters, results/toy/
"""


def add_module_parsers(subparsers, modules: dict[str, str], run_attr: str) -> None:
    """One sub-parser per module; each exposes HELP, add_arguments(parser), run(args).

    Args:
        subparsers: the object ``add_subparsers`` returned.
        modules: sub-command name -> dotted module name.
        run_attr: the args attribute that receives the module's ``run``.
    """
    for name, module_name in modules.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP,
                                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(**{run_attr: module.run})


def build_parser() -> argparse.ArgumentParser:
    """The full parser, one sub-parser per verb."""
    parser = argparse.ArgumentParser(
        prog='python -m harness', epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description='InfluencerFormer benchmark harness: Influencer Loss vs Hungarian on S3DIS.')
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    verbs = parser.add_subparsers(dest='verb', required=True, metavar='VERB')
    add_module_parsers(verbs, VERBS, 'run')
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for user-fixable errors)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='%(levelname)s %(name)s: %(message)s')
    try:
        return int(args.run(args))
    except HarnessError as err:
        print(f'error: {err}', file=sys.stderr)
        print(result_line(args.verb, 'error', error=str(err)))
        return 2
