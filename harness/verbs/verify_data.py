"""``python -m harness verify-data``: is a prepared S3DIS folder complete and consistent?"""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.core.io import result_line
from harness.data.verify import summary_table, verify

HELP = 'check a prepared S3DIS folder: manifest hashes, dtypes, labels, info pkls vs files'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of verify-data."""
    parser.add_argument('root', type=Path, help='prepared dataset root, e.g. data/s3dis')


def run(args: argparse.Namespace) -> int:
    """All checks; exit 0 when clean, 1 with every problem listed."""
    stats, problems = verify(args.root)
    print(summary_table(stats))
    for p in problems:
        print(f'PROBLEM {p}')
    rooms = sum(v for (_, key), v in stats.items() if key == 'rooms')
    print(result_line('verify-data', 'ok' if not problems else 'problems', root=str(args.root),
                      rooms=rooms, problems=len(problems)))
    return 0 if not problems else 1
