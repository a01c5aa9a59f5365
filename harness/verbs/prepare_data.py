"""``python -m harness prepare-data``: raw S3DIS -> the layout mmdet3d / OneFormer3D read."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.core.io import result_line
from harness.data.prepare import prepare

HELP = 'convert raw S3DIS (read-only) into points/, *_mask/, s3dis_infos_Area_N.pkl and MANIFEST.json'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of prepare-data."""
    parser.add_argument('--raw', type=Path, required=True,
                        help='Stanford3dDataset_v1.2_Aligned_Version (Area_1 .. Area_6 inside)')
    parser.add_argument('--out', type=Path, default=Path('data/s3dis'), help='prepared dataset root')
    parser.add_argument('--areas', type=int, nargs='+', default=[1, 2, 3, 4, 5, 6], choices=range(1, 7),
                        metavar='N', help="areas to convert (S3DIS's 1..6)")
    # Parsing is CPU-bound and rooms are independent; one process per core.
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='parallel rooms')
    parser.add_argument('--force', action='store_true', help='reconvert rooms that are already complete; '
                        'write into an --out prepared from another source, or holding files prepare-data did not write')


def run(args: argparse.Namespace) -> int:
    """Convert, print the summary line."""
    summary = prepare(args.raw, args.out, args.areas, args.workers, args.force)
    print(result_line('prepare-data', 'ok', **summary))
    return 0
