"""``python -m harness <verb>``: parses arguments and calls one module per verb."""
from __future__ import annotations

import argparse
import logging
import sys

from harness.core.errors import HarnessError, os_error_message
from harness.core.io import result_line
from harness.verbs import add_module_parsers

# verb -> module exposing HELP, add_arguments(parser) and run(args) -> int
VERBS = {
    'synth': 'harness.verbs.synth',
    'prepare-data': 'harness.verbs.prepare_data',
    'verify-data': 'harness.verbs.verify_data',
    'subset': 'harness.verbs.subset',
    'regime': 'harness.verbs.regime',
    'plan': 'harness.verbs.plan',
    'status': 'harness.verbs.status',
    'run': 'harness.verbs.run',
    'derive': 'harness.verbs.derive',
    'doctor': 'harness.verbs.doctor',
    'evaluate': 'harness.verbs.evaluate',
    'compare': 'harness.verbs.compare',
    'diagnose': 'harness.verbs.diagnose',
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
  python -m harness plan --spec baselines/s3dis-area5-ablations.yaml   # the run matrix, estimated hours
  python -m harness run --spec baselines/smoke-native.yaml --runs results/smoke/runs
  python -m harness run --spec baselines/s3dis-area5.yaml --executor slurm --container apptainer:if.sif
  python -m harness status --runs results/runs --spec baselines/s3dis-area5.yaml
  python -m harness compare --runs results/runs --experiment s3dis-area5 --out results/
  python -m harness study toy                       # criteria on free parameters, results/toy/
"""


def named_verb(argv: list[str]) -> str | None:
    """The verb ``argv`` names (its first word that is no option), or None if it names none of ours."""
    word = next((a for a in argv if not a.startswith('-')), None)
    return word if word in VERBS else None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, one sub-parser per verb; given ``argv``, only the verb it names is imported in full."""
    parser = argparse.ArgumentParser(
        prog='python -m harness', epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description='InfluencerFormer benchmark harness: Influencer Loss vs Hungarian on S3DIS.')
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    verbs = parser.add_subparsers(dest='verb', required=True, metavar='VERB')
    add_module_parsers(verbs, VERBS, 'run', only=named_verb(argv) if argv is not None else None)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for user-fixable errors)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # a verb that sets a ``backend_argv`` default takes the flags it does not declare itself, to parse
        # once it knows the backend (status: without torch's import until --spec names one)
        if not hasattr(args, 'backend_argv'):
            parser.error(f'unrecognized arguments: {" ".join(extra)}')
        args.backend_argv = extra
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='%(levelname)s %(name)s: %(message)s')
    try:
        return int(args.run(args))
    except HarnessError as err:
        return _error(args.verb, str(err))
    except OSError as err:
        # disk full, read-only, a name too long, a file where a folder should be: one line, never a traceback
        return _error(args.verb, os_error_message(err))
    except KeyboardInterrupt:
        # Ctrl-C: what was written stays consistent (atomic files, records left running resume)
        message = 'interrupted (Ctrl-C); run the same command again to go on (unfinished runs resume)'
        print(f'error: {message}', file=sys.stderr)
        print(result_line(args.verb, 'interrupted', error=message))
        return 130


def _error(verb: str, message: str) -> int:
    print(f'error: {message}', file=sys.stderr)
    print(result_line(verb, 'error', error=message))
    return 2
