"""mmengine logs -> tidy tables: ``vis_data/scalars.json`` -> ``curves.csv``."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.core.errors import HarnessError
from harness.core.io import atomic_write

# Keys mmengine writes on training lines; validation lines carry metrics only.
TRAIN_MARKERS = ('loss', 'lr')


def read_scalars(path: Path) -> pd.DataFrame:
    """One row per logged line of mmengine's LocalVisBackend ``scalars.json``.

    Returns:
        DataFrame with ``phase`` ('train' | 'val'), ``step``, ``epoch`` (NaN when
        not logged) and one column per logged scalar (losses and their parts,
        lr, times, validation metrics such as ``all_ap_50%``).
    """
    path = Path(path)
    rows = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise HarnessError(f'{path}: unreadable ({err}); is this a run\'s vis_data/scalars.json?') from err
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            # an interrupted run can leave a half-written last line
            if number == len(lines):
                break
            raise HarnessError(f'{path}:{number}: not JSON ({err})') from err
        row['phase'] = 'train' if any(k in row for k in TRAIN_MARKERS) else 'val'
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ('step', 'epoch'):
        if column not in frame:
            frame[column] = float('nan')
    first = ['phase', 'step', 'epoch']
    return frame[first + [c for c in frame.columns if c not in first]]


def write_curves(scalars: Path, run_dir: Path) -> Path:
    """``curves.csv`` of a run from its scalars.json (rewritten: it is derived data)."""
    text = read_scalars(scalars).to_csv(index=False)
    return atomic_write(Path(run_dir) / 'curves.csv', text, overwrite=True)


def merge_scalars(work_dir: Path) -> Path:
    """One scalars.json from every mmengine log folder of the run (a resume starts a new one).

    Later folders win for a (phase, step) logged twice (iterations redone after
    the last checkpoint).
    """
    rows: dict[tuple, str] = {}
    for path in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[('loss' in row or 'lr' in row, row.get('step'))] = line
    return atomic_write(Path(work_dir) / 'scalars_merged.json', ''.join(line + '\n' for line in rows.values()),
                        overwrite=True)  # derived from the logs, rewritten on every call
