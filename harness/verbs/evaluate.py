"""``python -m harness evaluate``: dumped predictions + prepared GT -> metrics.json and a table."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.core.io import atomic_write, check_out_file, result_line
from harness.evaluation.folder import evaluate_folder, format_table

HELP = 'instance AP@25/50/75 and mAP of dumped predictions against prepared S3DIS GT'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the evaluate verb."""
    parser.add_argument('predictions', type=Path, help='folder of <room>.npz prediction files')
    parser.add_argument('--data', type=Path, default=Path('data/s3dis'), help='prepared S3DIS root')
    parser.add_argument('--area', type=int, default=5, help='test area (S3DIS convention: 5)')
    parser.add_argument('--out', type=Path, default=None,
                        help='metrics.json to write (default: none, print only)')
    parser.add_argument('--force', action='store_true', help='replace an existing --out file')


def run(args: argparse.Namespace) -> int:
    """Evaluate every room of the area; missing or unknown rooms are errors."""
    if args.out is not None:
        check_out_file(args.out, args.force)
    result, record = evaluate_folder(args.predictions, args.data, args.area)
    rooms = range(record['n_rooms'])
    if args.out is not None:
        atomic_write(args.out, json.dumps(record, indent=1) + '\n', overwrite=args.force)
    print(format_table(result))
    print(result_line('evaluate', 'ok', rooms=len(rooms), ap=record['ap'], ap50=record['ap50'],
                      ap25=record['ap25'], ap75=record['ap75'], out=str(args.out) if args.out else None))
    return 0
