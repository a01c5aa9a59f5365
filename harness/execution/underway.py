"""Whether a study is under way, so that its results are read once, when its runs have ended.

A pre-registered study fixes its seeds, margin and stages before any result; a look at its
comparison, diagnosis or paired-difference SDs while runs are still to come is an interim
analysis. ``compare``, ``diagnose`` and ``plan`` therefore hide them while any run the study
started or submitted is still to end (finished or failed), unless asked for an interim look
(``--interim``), which they then label as such.
"""
from __future__ import annotations

import re
from pathlib import Path

from harness.core.errors import HarnessError
from harness.execution.status import submitted, unix_seconds
from harness.study import records

INTERIM_FLAG = '--interim'


def unfinished(runs: Path, experiment: str) -> list[str]:
    """Run ids of ``experiment`` still under way, in seed order; [] if ``runs`` is no folder.

    Under way: its latest attempt is running (or was interrupted: ``run`` resumes it), or it was
    submitted (a Slurm submission under ``<runs>/.submissions``) and has not started since: never,
    or its latest attempt ended before that submission (a failed run, or one forced, sent again).
    A failed run not sent again has ended: compare lists it among the runs not included.

    Raises:
        HarnessError: a submission.json that cannot be read (a study's queued runs could hide there).
    """
    if not Path(runs).is_dir():
        return []
    latest: dict[str, dict] = {}
    for r in records.load_runs(runs, []):   # a record with wrong fields: compare lists it
        if r['experiment'] == experiment and r['attempt'] >= latest.get(r['run_id'], {'attempt': 0})['attempt']:
            latest[r['run_id']] = r
    queued = {rid for rid, entry in submitted(runs, strict=True).items()
              if entry.get('experiment') == experiment and _sent_after(entry, latest.get(rid))}
    return sorted(queued | {rid for rid, r in latest.items() if r['status'] == 'running'}, key=_seed_order)


def _sent_after(entry: dict, record: dict | None) -> bool:
    """Whether a submission entry asks for more than the run's latest attempt has done."""
    if record is None:
        return True
    ended, sent = unix_seconds(record.get('ended_at')), entry.get('submitted_at')
    return record['status'] != 'running' and ended is not None and sent is not None and sent > ended


def _seed_order(run_id: str) -> list:
    """Numbers in a run id compare as numbers (``__s4`` before ``__s10``)."""
    return [(1, int(part), '') if part.isdigit() else (0, 0, part) for part in re.split(r'(\d+)', run_id)]


def describe(runs: Path, experiment: str, ids: list[str]) -> str:
    """One line: how many runs of the study are under way, the first few, and where to look."""
    shown = ', '.join(ids[:3]) + (f' and {len(ids) - 3} more' if len(ids) > 3 else '')
    return (f'{runs}: {len(ids)} run(s) of {experiment} still under way ({shown}); '
            f'`python -m harness status --runs {runs}` shows them')


def check(runs: Path, experiment: str, interim: bool) -> list[str]:
    """The run ids still under way (see :func:`unfinished`); with ``interim`` False there must be none.

    Raises:
        HarnessError: runs are under way and no interim look was asked for; names the runs folder
            and how to go on.
    """
    ids = unfinished(runs, experiment)
    if ids and not interim:
        raise HarnessError(describe(runs, experiment, ids) + '. The study is under way, so its results '
                           'stay hidden until every run has ended; pass '
                           f'{INTERIM_FLAG} to look now, an interim look to be reported as one')
    return ids
