"""``python -m harness subset``: a tiny, valid prepared dataset cut from a prepared one."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.args import at_least
from harness.core.io import result_line
from harness.data.subset import subset

HELP = 'cut N rooms per area (optionally at most P points each) from a prepared dataset'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of subset."""
    parser.add_argument('--src', type=Path, default=Path('data/s3dis'), help='prepared dataset')
    parser.add_argument('--out', type=Path, required=True, help='new folder (must not exist or be empty)')
    parser.add_argument('--rooms-per-area', type=int, default=1, help='rooms kept per area')
    parser.add_argument('--max-points', type=int, default=None,
                        help='random subsample per room (order kept), for CPU smoke runs')
    parser.add_argument('--seed', type=at_least(0, '; numpy seeds are non-negative'), default=0,
                        help='subsampling seed')


def run(args: argparse.Namespace) -> int:
    """Cut, print the summary line."""
    summary = subset(args.src, args.out, args.rooms_per_area, args.max_points, args.seed)
    print(result_line('subset', 'ok', **summary))
    return 0
