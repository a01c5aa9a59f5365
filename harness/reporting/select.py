"""Which runs a comparison counts, and why the others are left out.

Rules (docs/run-records.md):

1. Per run id, the FIRST finished attempt with a metrics.json counts. Later
   attempts (``--force``) are listed, never averaged in, so a result cannot be
   replaced by re-running until it looks better. Every attempt is counted in
   the tables' ``attempts`` column.
2. The counted runs of one experiment must share one setting: the same
   resolved config apart from the run's arm keys (its criterion, and a second
   key its arm declares, which every other arm's runs must share), the
   ablation keys, the seed and the places (data root, checkpoint paths); the same iterations, data
   (its rooms' hashes, or MANIFEST.json's sha256 where a record predates those) and code: the
   upstream commit, and the harness's result code (``env.result_paths``: criteria, the run's backend,
   data, evaluator, CPU pin) at the run's commit, so commits that change only verbs, reporting or docs
   pool; where git cannot read a run's commit here, the commit itself.
   The setting most runs share is the reference; runs with another are listed
   under "Not included" with the keys that differ. A tie is an error.
3. Runs from a dirty harness tree are kept but marked in every table.
4. One arm, seed and ablation point recorded under two run ids (an arm under its
   old and new name) is listed, never counted: it would pair twice.
"""
from __future__ import annotations

import fnmatch
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.core.env import result_code
from harness.core.errors import HarnessError
from harness.core.tree import canonical_hash, config_diff, diff_keys, flatten, under
from harness.data.reader import CLASS_NAMES
from harness.study.arms import ARM_KEY, BASELINE, canonical, family
from harness.study.records import load_metrics, read_config

# Paper order, then the instance-weighted AP50 (each counted GT weighs the same; class-mean AP50 stays the
# headline, as upstream reports it). Records from before it existed show NaN there.
METRICS = ('ap25', 'ap50', 'ap75', 'ap', 'ap50w')
# metrics.json key of each metric where it differs from the metric's name
METRIC_KEYS = {'ap50w': 'ap50_instance_weighted'}


@dataclass
class Selection:
    """The counted runs (one row each) and one line for every record left out."""

    runs: pd.DataFrame
    excluded: list[str] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)     # arm -> attempts of its main runs (no ablation)
    failed: Counter = field(default_factory=Counter)       # arm -> failed attempts among them


def setting(record: dict, config: dict, ablated: set[str], arm_set: set[str],
            data_key: str = 'manifest_sha256') -> dict:
    """What must be equal across an experiment's runs, flattened (see the module rules).

    Args:
        ablated: every config key that some run of the experiment ablates (left out for all runs).
        arm_set: the keys this run's arm sets (its criterion, any second key): left out.
        data_key: the record's data identity compared (:func:`data_key`).
    """
    places = record.get('location_keys', [])
    skip = ablated | arm_set
    flat = {k: v for k, v in flatten(config).items()
            if k != 'randomness.seed' and not any(under(k, a) for a in skip)
            and not any(fnmatch.fnmatchcase(k, p) for p in places)}
    env = record.get('env', {})
    sha = (env.get('harness_git') or {}).get('sha')
    flat.update({'<iterations>': record.get('iterations_done'),
                 '<data manifest>': (record.get('data') or {}).get(data_key),
                 '<harness code>': result_code(sha, record.get('backend')),
                 '<upstream commit>': (record.get('upstream') or {}).get('commit')})
    return flat


def data_key(records: list[dict]) -> str:
    """Which data identity an experiment's runs are compared by: their rooms' hashes
    (``content_sha256``) when every run recorded them, else MANIFEST.json's sha256 (which
    every record has; records from before content hashes are compared as they always were)."""
    if records and all((r.get('data') or {}).get('content_sha256') for r in records):
        return 'content_sha256'
    return 'manifest_sha256'


def _status_line(r: dict) -> str:
    why = r['status'] if r['status'] != 'finished' else 'finished but no metrics.json'
    return f"{r['run_id']} attempt {r['attempt']}: {why}" + (f" ({r['error']})" if r.get('error') else '')


def pick_experiment(records: list[dict], wanted: str | None, runs: Path, skipped: list[str] = ()) -> str:
    """The one experiment to compare; several without --experiment is an error (never mixed).

    Args:
        skipped: why records with wrong fields were left out (named when nothing is left).
    """
    names = sorted({r['experiment'] for r in records})
    if not names:
        why = f' ({len(skipped)} left out: {"; ".join(skipped[:3])})' if skipped else ''
        raise HarnessError(f'{runs}: no run records (no <run>/run.json){why}; run an experiment into it first '
                           '(python -m harness run --spec ... --runs ' + f'{runs})')
    if wanted is not None:
        if wanted not in names:
            raise HarnessError(f'{runs}: no runs of experiment {wanted!r}; found {names}')
        return wanted
    if len(names) != 1:
        raise HarnessError(f'{runs}: runs of {len(names)} experiments {names}; pick one with --experiment')
    return names[0]


def _class_problem(metrics: dict) -> str | None:
    """Why a metrics.json's per-class table cannot join the others (each class is averaged over every run)."""
    have = set(metrics['per_class'])
    if have == set(CLASS_NAMES):
        return None
    missing, extra = sorted(set(CLASS_NAMES) - have), sorted(map(str, have - set(CLASS_NAMES)))
    return (f'per_class has not the {len(CLASS_NAMES)} S3DIS classes' + (f' (missing {", ".join(missing)})' if missing
            else '') + (f' (unknown {", ".join(extra)})' if extra else ''))


def select(records: list[dict]) -> Selection:
    """Apply the rules to one experiment's records."""
    sel, counted = Selection(pd.DataFrame()), []
    by_id: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: (r['run_id'], r['attempt'])):
        by_id.setdefault(r['run_id'], []).append(r)
        if not r.get('ablation'):   # the headline table's columns: main runs only
            sel.attempts[canonical(r['arm'])] += 1
            sel.failed[canonical(r['arm'])] += r['status'] == 'failed'
    for attempts in by_id.values():
        chosen = None
        for r in attempts:
            try:
                metrics = load_metrics(r['_dir']) if r['status'] == 'finished' else None
            except HarnessError as err:
                sel.excluded.append(f"{r['run_id']} attempt {r['attempt']}: {err}")
                continue
            if metrics is not None and (problem := _class_problem(metrics)):
                sel.excluded.append(f"{r['run_id']} attempt {r['attempt']}: {Path(r['_dir']) / 'metrics.json'}: "
                                    f'{problem}; re-evaluate the run')
                continue
            if metrics is None:
                sel.excluded.append(_status_line(r))
            elif chosen is None:
                chosen = (r, metrics)
            else:
                sel.excluded.append(f"{r['run_id']} attempt {r['attempt']}: extra attempt, not counted (the first "
                                    f"finished attempt, {chosen[0]['attempt']}, counts)")
        if chosen:
            counted.append(chosen)
    counted = _one_record_per_run(_one_setting(counted, sel.excluded), sel.excluded)
    rows = [_row(r, m) for r, m in counted]
    # the baseline first, then assignment-based arms, then assignment-free ones, each by name; seeds ascending
    rows.sort(key=lambda r: (r['arm'] != BASELINE, r['family'] != 'assignment-based', r['arm'], r['seed'], r['run_id']))
    sel.runs = pd.DataFrame(rows)
    return sel


def _one_record_per_run(counted: list[tuple[dict, dict]], excluded: list[str]) -> list[tuple[dict, dict]]:
    """Leave out, and list, runs of one arm, seed and ablation point recorded under two run ids (an arm
    under its old and its new name): counted twice, a seed would pair with itself as two seeds."""
    def key(r: dict) -> str:
        return json.dumps([canonical(r['arm']), r['seed'], r.get('ablation') or {}], sort_keys=True, default=str)
    groups = Counter(key(r) for r, _ in counted)
    out = []
    for r, m in counted:
        if groups[key(r)] == 1:
            out.append((r, m))
            continue
        others = [o['run_id'] for o, _ in counted if key(o) == key(r) and o is not r]
        excluded.append(f"{r['run_id']} attempt {r['attempt']}: the same run ({canonical(r['arm'])}, seed "
                        f"{r['seed']}) as {', '.join(others)} (an arm recorded under two names); neither counts: "
                        'move one into another --runs folder')
    return out


def _one_setting(counted: list[tuple[dict, dict]], excluded: list[str]) -> list[tuple[dict, dict]]:
    """Keep the runs of the most common setting; list the others with the keys that differ."""
    ablated = {k.split('.', 1)[1] for r, _ in counted for k in r.get('ablation', {}) if k.startswith('config.')}
    owns = [set(r.get('arm_keys') or [ARM_KEY]) for r, _ in counted]
    key = data_key([r for r, _ in counted])
    settings = [setting(r, read_config(r['_dir']) or {}, ablated, own, key) for (r, _), own in zip(counted, owns)]
    _fill_second_keys(settings, owns)
    hashes = [canonical_hash(s) for s in settings]
    tally = Counter(hashes).most_common()
    if len(tally) > 1 and tally[0][1] == tally[1][1]:
        a, b = (settings[hashes.index(h)] for h, _ in tally[:2])
        keys = diff_keys(config_diff(a, b))
        raise HarnessError(f'the runs of this experiment were made with {len(tally)} different settings, '
                           f'{tally[0][1]} runs each for the two largest (they differ in {", ".join(keys[:6])}); '
                           'move one set into another --runs folder or give it another experiment name')
    keep = tally[0][0] if tally else None
    ref = settings[hashes.index(keep)] if tally else {}
    out = []
    for (r, m), s, h in zip(counted, settings, hashes):
        if h == keep:
            out.append((r, m))
        else:
            keys = diff_keys(config_diff(ref, s))
            excluded.append(f"{r['run_id']} attempt {r['attempt']}: another setting than the experiment's other "
                            f"runs (differs in {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''})")
    return out


def _fill_second_keys(settings: list[dict], owns: list[set[str]]) -> None:
    """A second key (one arm's model setting) takes, in its own arm's runs, the value the other runs share.

    So the key is no difference for the arm that declares it, while any other
    run that changes it still has another setting (a key is never left out of
    every run only because one arm declares it).
    """
    second = set().union(*owns) - {ARM_KEY} if owns else set()
    for key in sorted(second):
        others = [s for s, own in zip(settings, owns) if key not in own]
        if not others:
            continue
        parts = [{k: v for k, v in s.items() if under(k, key)} for s in others]
        common = Counter(canonical_hash(p) for p in parts).most_common(1)[0][0]
        value = next(p for p in parts if canonical_hash(p) == common)
        for s, own in zip(settings, owns):
            if key in own:
                s.update(value)


def _row(r: dict, metrics: dict) -> dict:
    timing = r.get('timing') or {}
    arm = canonical(r['arm'])   # an arm renamed since the run: its current name (the run id keeps the old one)
    return {'run_id': r['run_id'], 'attempt': r['attempt'], 'arm': arm, 'recorded_arm': r['arm'],
            'family': family(arm), 'seed': r['seed'],
            'ablation': r.get('ablation') or {}, 'dir': r['_dir'], 'wall_s': r.get('wall_s'),
            'iterations': r.get('iterations_done'), 's_per_iter': timing.get('s_per_iter'),
            'dirty': bool(((r.get('env') or {}).get('harness_git') or {}).get('dirty')),
            # no git where it ran: the commit is unknown, which is not "clean"
            'commit_unknown': not ((r.get('env') or {}).get('harness_git') or {}).get('sha'),
            'executor': (r.get('executor') or {}).get('kind', 'local'),
            'arm_keys': r.get('arm_keys') or [ARM_KEY],
            **{m: _float(metrics.get(METRIC_KEYS.get(m, m))) for m in METRICS}, 'per_class': metrics['per_class'],
            'question': r.get('question')}


def _float(x) -> float:
    return float('nan') if x is None else float(x)


CURVE_COLUMNS = ('phase', 'step')   # what every reader of curves.csv selects on


def curves_of(run_dir: str | Path) -> pd.DataFrame:
    """A run's curves.csv (empty frame when it has none).

    Raises:
        HarnessError: present but not a curves table (empty, not CSV, without phase / step); names it.
    """
    path = Path(run_dir) / 'curves.csv'
    if not path.exists():
        return pd.DataFrame()
    fix = ('it is derived from the run\'s vis_data/scalars.json: restore it, or delete it and the run is '
           'shown without curves')
    try:
        curves = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise HarnessError(f'{path}: unreadable curves table ({type(err).__name__}: {err}); {fix}') from err
    missing = [c for c in CURVE_COLUMNS if c not in curves]
    if missing:
        raise HarnessError(f'{path}: no {", ".join(missing)} column; {fix}')
    return curves
