"""Planning a batch of runs: what to do with each, and the checks that refuse a batch before training.

:func:`classify` decides, per run, from its latest attempt's record and config:
new, resume, done, complete (metrics written, record not closed) or refused
(the recorded config differs from what the spec derives now). :func:`plan`
derives and classifies every run and stops at any refusal; :func:`same_code`
and :func:`same_data` refuse runs whose experiment was trained by other result
code or on other data. Nothing here trains.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from harness.core import env
from harness.core.errors import HarnessError
from harness.core.tree import canonical_hash, config_diff, diff_keys, without
from harness.data.layout import content_sha256, load_manifest
from harness.study import records
from harness.study.backend import Backend, Derived, Prepared, RunOptions
from harness.study.matrix import RunPoint
from harness.study.spec import Spec


@dataclass(frozen=True)
class Planned:
    """One run as planned: what to do with it, and where.

    Attributes:
        action: new / resume / done / complete / refused.
        folder: the latest attempt's folder (None: a new attempt is made).
        record: that attempt's record as read when classifying (None for a new one).
    """

    point: RunPoint
    derived: Derived
    action: str
    folder: Path | None = None
    reason: str = ''
    record: dict | None = None


def classify(point: RunPoint, derived: Derived, options: RunOptions) -> Planned:
    """What to do with one run, from its latest attempt's record and config."""
    folders = records.attempts(options.runs, point.run_id)
    if not folders or options.force:
        records.next_folder(options.runs, point.run_id)   # a stray folder in the way: an error before training
        return Planned(point, derived, 'new')
    latest = folders[-1]
    record = records.load_record(latest / 'run.json')
    if records.unstarted(record):   # a crash between its first writes: nothing trained, start it again
        return Planned(point, derived, 'new', latest, record=None)
    old = records.read_config(latest)
    # places (data root, checkpoint paths) are not settings: the data's identity is checked by its hashes
    places = record.get('location_keys', [])
    if old is None or canonical_hash(without(old, places)) != canonical_hash(without(derived.config, places)):
        keys = diff_keys(config_diff(without(old or {}, places), without(derived.config, places)))
        shown = ', '.join(keys[:6]) + (f' and {len(keys) - 6} more' if len(keys) > 6 else '')
        return Planned(point, derived, 'refused', latest,
                       f'{latest}: its config differs from what the spec derives now in {shown or "(no config.json)"};'
                       ' restore the spec, give the experiment a new name, or pass --force for a new attempt '
                       '(the old one is kept)', record)
    if record['status'] == 'finished':
        return Planned(point, derived, 'done', latest, record=record)
    if records.load_metrics(latest) is not None:
        return Planned(point, derived, 'complete', latest, record=record)
    return Planned(point, derived, 'resume', latest, record=record)


def plan(spec: Spec, backend: Backend, prepared: Prepared, points: list[RunPoint], options: RunOptions,
         root: Path) -> list[Planned]:
    """Derive and classify every run; raise before any training if one is refused."""
    plans = [classify(p, backend.derive(spec, prepared, p, root), options) for p in points]
    refused = [p for p in plans if p.action == 'refused']
    for p in refused:
        print(f'refused: {p.reason}', file=sys.stderr)
    if refused:
        raise HarnessError(f'{len(refused)} of {len(plans)} runs refused: their recorded config differs from '
                           'what the spec derives now (listed above); nothing was trained')
    return plans


def same_data(plans: list[Planned], root: Path) -> None:
    """Runs to resume or keep must have used this very data; else refuse them all."""
    current = data_identity(root)
    wrong = []
    for p in plans:
        why = None if p.record is None else data_differs(p.record.get('data') or {}, current)
        if why:
            wrong.append(p)
            print(f'refused: {p.folder}: {why}; point --data at that data, or give the experiment a new name',
                  file=sys.stderr)
    if wrong:
        raise HarnessError(f'{len(wrong)} of {len(plans)} runs refused: their data differs (listed above); '
                           'nothing was trained')


def data_differs(recorded: dict, current: dict) -> str | None:
    """Why a run's recorded data (its record's ``data``) is not ``current`` (:func:`data_identity`), or None.

    A record with ``content_sha256`` (its rooms' hashes) is compared by it, so the same rooms
    generated again count as the same data; an older record, by its MANIFEST.json's sha256;
    a record with neither cannot be compared (None).
    """
    key = 'content_sha256' if recorded.get('content_sha256') else 'manifest_sha256'
    if not recorded.get(key) or recorded[key] == current[key]:
        return None
    if not current[key]:
        return (f'{current["root"]} has no MANIFEST.json, so it cannot be matched with the data the run recorded '
                f'({key} {recorded[key][:12]}); prepare it with prepare-data, synth or subset')
    return f'trained on other data ({key} {recorded[key][:12]}, now {current[key][:12]})'


def same_code(plans: list[Planned], options: RunOptions, experiment: str, backend: str) -> None:
    """Runs to train must have the result code of the experiment's finished runs; else refuse them all.

    compare counts one setting per experiment and the result code is part of it
    (``env.result_code``: criteria, the backend, data layer, evaluator, CPU pin): a run
    trained by other code would be left out of the comparison after its compute was spent.
    A study spanning sessions must be trained on from a checkout with its code. Checked:
    the experiment's finished runs in ``options.runs`` and the runs resumed here.
    """
    if not any(p.action in ('new', 'resume') for p in plans) or not Path(options.runs).is_dir():
        return
    now = env.result_code(env.harness_sha(), backend)
    if now is None:   # no git here: a record's commit cannot be compared (compare falls back the same way)
        return
    resumed = {p.folder for p in plans if p.action == 'resume'}
    theirs = [r for r in records.load_runs(options.runs, skipped=[]) if r.get('experiment') == experiment
              and (r['status'] == 'finished' or Path(r['_dir']) in resumed)]
    for r in theirs:
        sha = ((r.get('env') or {}).get('harness_git') or {}).get('sha')
        code = env.result_code(sha, r.get('backend'))
        if sha and code != now:
            why = ('cannot be read here (not in this checkout: a shallow clone? git fetch --unshallow)'
                   if code == sha else "(criteria, backend, data layer, evaluator) differs from this checkout's")
            raise HarnessError(f"{r['_dir']}: trained at commit {sha[:12]}, whose result code {why}; runs trained "
                               'now would not be compared with it (compare keeps one setting per experiment): '
                               f'train on from a checkout of it (git worktree add <dir> {sha[:12]}) or give the '
                               'experiment a new name; nothing was trained')


def data_identity(root: Path) -> dict:
    """Where the data is and which data it is: its rooms' hashes (``content_sha256``) and, as older
    records have it, its MANIFEST.json's sha256."""
    manifest = Path(root) / 'MANIFEST.json'
    if not manifest.exists():
        return {'root': str(root), 'manifest_sha256': None, 'content_sha256': None}
    return {'root': str(root), 'manifest_sha256': records.sha256_file(manifest),
            'content_sha256': content_sha256(load_manifest(root))}
