"""Comparison tables of one experiment: a pure function of its run records.

Headline: the LAST checkpoint of every counted run (harness.reporting.select).
Beside it, labelled, what upstream's own selection would report: the best
validation point on Area 5, which is also the test set.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from harness.reporting.select import METRICS, Selection, curves_of
from harness.reporting.stats import noninferiority, paired
from harness.study.arms import BASELINE

LABEL = {'ap25': 'AP25', 'ap50': 'AP50', 'ap75': 'AP75', 'ap': 'mAP', 'ap50w': 'AP50 inst.-w.'}
# Upstream's logged validation keys (UnifiedSegMetric; the native backend logs the same).
VAL_KEYS = {'ap25': 'all_ap_25%', 'ap50': 'all_ap_50%', 'ap75': 'all_ap_75%', 'ap': 'all_ap'}
SELECT_KEY = 'all_ap_50%'   # upstream's save_best key
BEST_LABEL = 'best on Area 5 (as upstream selects; test-set selection)'


def main_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs without ablation values (the headline comparison)."""
    if runs.empty:
        return runs
    return runs[[not a for a in runs['ablation']]]


def arm_rows(runs: pd.DataFrame, sel: Selection) -> list[dict]:
    """One row per arm: seeds, attempts, mean/std of each metric, time per run and per iteration."""
    rows = []
    for arm, group in runs.groupby('arm', sort=False):
        group = group.sort_values('seed')
        row = {'row': arm, 'kind': 'arm', 'family': group['family'].iloc[0], 'n': len(group),
               'seeds': ' '.join(map(str, group['seed'])),
               'dirty': int(group['dirty'].sum()), 'attempts': int(sel.attempts[arm]), 'failed': int(sel.failed[arm]),
               'wall_s': _mean(group['wall_s']), 's_per_iter': _mean(group['s_per_iter']),
               'criterion_ms': _mean(group['criterion_ms'])}
        for m in METRICS:
            vals = group[m].astype(float).to_numpy()
            row.update({f'{m}_mean': vals.mean(), f'{m}_std': vals.std(ddof=1) if len(vals) > 1 else math.nan,
                        f'{m}_values': ' '.join(f'{v:.4f}' for v in vals)})
        rows.append(row)
    return rows


def question_of(runs: pd.DataFrame) -> tuple[dict | None, str]:
    """The study's question as its runs recorded it (the spec's ``question:``), and a note when there is none."""
    found = {json.dumps(q, sort_keys=True) for q in runs.get('question', pd.Series(dtype=object))}
    if found == {'null'} or not found:
        return None, 'the spec declares no question'
    if len(found) > 1:
        return None, 'the runs recorded different questions (the spec changed between runs)'
    return json.loads(found.pop()), ''


def delta_rows(runs: pd.DataFrame, question: dict | None = None) -> list[dict]:
    """Per other arm and metric: per-seed differences from the baseline, their t interval and p-values.

    With a question, the delta row of its metric also carries the non-inferiority test
    (``ni_margin`` / ``ni_lower`` as fractions, like every metric here; ``ni_p``, ``ni_verdict``).
    """
    base = runs[runs['arm'] == BASELINE].set_index('seed')
    rows = []
    for arm in [a for a in dict.fromkeys(runs['arm']) if a != BASELINE]:
        other = runs[runs['arm'] == arm].set_index('seed')
        seeds = sorted(set(base.index) & set(other.index))
        for m in METRICS:
            diffs = (other.loc[seeds, m].astype(float) - base.loc[seeds, m].astype(float)).to_numpy()
            if len(diffs) and np.isnan(diffs).all():
                continue   # a metric these records predate (instance-weighted AP50): no row rather than NaN
            have = ~np.isnan(diffs)   # some records predate it: the seeds where both runs have it
            diffs, used = diffs[have], [s for s, ok in zip(seeds, have) if ok]
            # six decimals: the markdown shows points with one, and must not round twice
            row = {'row': f'{arm} - {BASELINE}', 'kind': 'delta', 'metric': m, 'seeds': ' '.join(map(str, used)),
                   **paired(diffs), 'values': ' '.join(f'{d:+.6f}' for d in diffs)}
            if question and m == question['metric']:
                row.update(noninferiority(diffs, question['margin'] / 100, question['alpha']))
            rows.append(row)
    return rows


def best_on_test(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: the validation point with the highest ``all_ap_50%`` (upstream's save_best), its metrics."""
    rows = []
    for r in runs.itertuples():
        val = curves_of(r.dir)
        if val.empty or SELECT_KEY not in val:
            continue
        val = val[(val['phase'] == 'val') & val[SELECT_KEY].notna()]
        if val.empty:
            continue
        best = val.loc[val[SELECT_KEY].idxmax()]
        rows.append({'arm': r.arm, 'seed': r.seed, 'step': best['step'],
                     **{m: float(best[k]) if k in best and pd.notna(best[k]) else math.nan
                        for m, k in VAL_KEYS.items()}})
    return pd.DataFrame(rows)


def best_rows(best: pd.DataFrame) -> list[dict]:
    """Mean over seeds of each arm's best-on-Area-5 metrics."""
    rows = []
    for arm, group in (best.groupby('arm', sort=False) if not best.empty else []):
        row = {'row': f'{BEST_LABEL}: {arm}', 'kind': 'best', 'n': len(group),
               'seeds': ' '.join(map(str, group['seed']))}
        for m in METRICS:   # validation curves log no instance-weighted AP50: NaN there
            vals = group[m].astype(float).dropna().to_numpy() if m in group else np.zeros(0)
            row.update({f'{m}_mean': vals.mean() if len(vals) else math.nan,
                        f'{m}_std': vals.std(ddof=1) if len(vals) > 1 else math.nan})
        rows.append(row)
    return rows


def summarise(sel: Selection) -> pd.DataFrame:
    """Every row of the comparison: arms, best-on-Area-5 extras, deltas (CSV-ready)."""
    runs = main_runs(sel.runs)
    question, _ = question_of(runs)
    return pd.DataFrame(arm_rows(runs, sel) + best_rows(best_on_test(runs)) + delta_rows(runs, question))


def _mean(values) -> float:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else math.nan


def with_timing(runs: pd.DataFrame) -> pd.DataFrame:
    """``criterion_ms`` added per run (median over iterations; None where not logged)."""
    return runs.assign(criterion_ms=[_criterion_ms(d) for d in runs['dir']])


def _criterion_ms(run_dir: str) -> float | None:
    """Median criterion forward time per iteration, where the run logged it (the native backend does)."""
    curves = curves_of(run_dir)
    if curves.empty or 'criterion_ms' not in curves:
        return None
    return float(curves['criterion_ms'].dropna().median())


def per_class_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Class x arm means over seeds of AP25 / AP50 / AP75 (fractions; NaN where no GT)."""
    rows = []
    for arm, group in main_runs(runs).groupby('arm', sort=False):
        for name in group['per_class'].iloc[0]:
            row = {'class': name, 'arm': arm}
            for m in ('ap25', 'ap50', 'ap75'):
                vals = [pc[name][m] for pc in group['per_class'] if pc[name][m] is not None]
                row[m] = float(np.mean(vals)) if vals else float('nan')
            rows.append(row)
    return pd.DataFrame(rows)
