"""``python -m harness derive``: the arms' upstream config files and their diff, for inspection.

The upstream backend derives exactly the same files for every run (plus the
run's seed); this verb writes them without running anything, so a reviewer
(or an outside check) can read them and load them with mmengine.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from harness import backends
from harness.backends.upstream.backend import UpstreamBackend
from harness.backends.upstream.tools import checked_commit, upstream_root
from harness.backends.upstream.config import HEADER, write_arm_configs
from harness.backends.upstream.pretrained import pretrained_path
from harness.core.errors import HarnessError
from harness.core.io import head, result_line
from harness.study.spec import MAX_SEED

HELP = "write each arm's upstream child config (DIR/<arm>.py) and DIR/diff.txt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the derive verb."""
    parser.add_argument('--spec', type=Path, required=True, help='an upstream experiment spec')
    parser.add_argument('--data', type=Path, default=None, help="prepared S3DIS root (default: the spec's)")
    UpstreamBackend.add_arguments(parser)
    parser.add_argument('--out', type=Path, required=True, help='folder for <arm>.py and diff.txt')
    parser.add_argument('--seed', type=int, default=None, help="randomness.seed (default: the spec's first)")
    parser.add_argument('--force', action='store_true', help='replace existing files in --out')


def run(args: argparse.Namespace) -> int:
    """Derive, load back, assert the one-key diff, print where the files are."""
    spec, _ = backends.load(args.spec)
    if spec.backend != 'upstream':
        raise HarnessError(f'{args.spec}: backend {spec.backend!r}; derive writes upstream configs '
                           '(native runs save their config.json in the run record)')
    opts = UpstreamBackend.options(vars(args))
    if opts.gpus != 1:
        raise HarnessError(f'--gpus {opts.gpus}: how run launches the configs, not what they hold; derive writes the '
                           'same files for any GPU count: drop --gpus')
    seed = spec.seeds[0] if args.seed is None else _seed(args.seed)
    root = upstream_root(spec.part.upstream, opts.upstream_root)
    commit = checked_commit(root, spec.part.upstream, opts.allow_other_commit) if root.is_dir() else None
    out = write_arm_configs(spec, root, args.out, seed, data_root=(args.data or spec.data.root).resolve(),
                            load_from=pretrained_path(spec.part.pretrained, opts.cache), epochs=opts.epochs,
                            iters=opts.iters, overwrite=args.force, commit=commit)
    for stale in earlier_arms(args.out, set(out['configs'])) if args.force else []:   # --force replaces the set
        stale.unlink()
        print(f'removed {stale}: an arm of the derivation --force replaced, not of this spec')
    for arm, diff in out['diffs'].items():
        print(f'{arm} vs hungarian: {len(diff)} flattened keys differ, all under model.criterion.inst_criterion')
    print(result_line('derive', 'ok', configs={a: str(p) for a, p in out['configs'].items()},
                      diff=str(args.out / 'diff.txt')))
    return 0


def _seed(seed: int) -> int:
    """--seed under the spec's rule for ``seeds:`` (:func:`harness.study.spec._check_seeds`).

    Raises:
        HarnessError: a negative seed, or one above :data:`harness.study.spec.MAX_SEED`.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise HarnessError(f'--seed {seed!r}: must be a non-negative integer up to 2**32 - 1 (the spec\'s rule for '
                           'seeds: numpy and mmengine seed with 32 bits); give e.g. --seed 0')
    return seed


def earlier_arms(out: Path, arms: set[str]) -> list[Path]:
    """``<arm>.py`` files in ``out`` that an earlier derive wrote for an arm not in ``arms``: both header lines
    are derive's and name that very arm (a user's renamed or edited copy names another, and stays)."""
    start, arm_line = HEADER.split('{')[0], re.compile(r'# Upstream: .* Arm: (\S+), seed \d+\.$')
    found = []
    for path in sorted(out.glob('*.py')):
        if path.stem in arms:
            continue
        first, second = head(path, 2)
        match = arm_line.match(second)
        if first.startswith(start) and match and match.group(1) == path.stem:
            found.append(path)
    return found
