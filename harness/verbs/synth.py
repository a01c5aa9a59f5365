"""``python -m harness synth``: S3DIS-format synthetic rooms for all six areas, raw or prepared."""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.io import result_line
from harness.data.synth import generate

HELP = 'write S3DIS-like synthetic rooms (all 6 areas) in the raw or the prepared layout'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of synth."""
    parser.add_argument('--out', type=Path, required=True, help='output folder (must not exist or be empty)')
    parser.add_argument('--raw', action='store_true',
                        help='write Area_N/<room>/Annotations/<class>_<k>.txt (exercises prepare-data)')
    parser.add_argument('--rooms-per-area', type=int, nargs='+', default=[2],
                        help='rooms in each of the 6 areas, or six counts (areas 1..6)')
    parser.add_argument('--seed', type=int, default=0, help='same seed, same rooms')
    parser.add_argument('--points-per-room', type=int, default=None,
                        help='points per room, about: each instance gets at least 30, so small rooms hold more '
                             '(default: random 5k-50k, like small S3DIS rooms)')
    parser.add_argument('--points-per-m2', type=float, default=None,
                        help='scanner density instead of --points-per-room: points grow with each surface')
    parser.add_argument('--defects', action='store_true',
                        help='with --raw: inject the known raw defects (tests of prepare-data)')


def run(args: argparse.Namespace) -> int:
    """Generate, print the summary line."""
    if args.defects and not args.raw:
        raise HarnessError('--defects needs --raw (defects live in the raw text files)')
    counts = args.rooms_per_area[0] if len(args.rooms_per_area) == 1 else args.rooms_per_area
    summary = generate(args.out, counts, args.seed, args.points_per_room, args.raw, args.defects,
                       args.points_per_m2)
    print(result_line('synth', 'ok', **summary))
    return 0
