"""How many seeds a study's question needs: the SD of the paired difference, and the power it gives.

The SD comes from the spec's ``question.sd`` (a pilot's, fixed before the
study) or from the finished runs of the experiment shown to ``plan`` (a
pilot measuring it). Sizing is for the one-sided paired t non-inferiority test
that ``compare`` applies (harness.reporting.stats), at a true difference of 0.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.reporting.stats import half_width, ni_power, seeds_for_power
from harness.study.arms import BASELINE
from harness.study.spec import Question


def paired_sd(runs: pd.DataFrame, metric: str) -> dict[str, tuple[float, int]]:
    """Arm -> (SD of its per-seed difference from the baseline, in AP points; paired seeds)."""
    base = runs[runs['arm'] == BASELINE].set_index('seed')[metric].astype(float)
    out = {}
    for arm in [a for a in dict.fromkeys(runs['arm']) if a != BASELINE]:
        other = runs[runs['arm'] == arm].set_index('seed')[metric].astype(float)
        seeds = sorted(set(base.index) & set(other.index))
        if len(seeds) >= 2:
            out[arm] = (float(100 * (other[seeds] - base[seeds]).std(ddof=1)), len(seeds))
    return out


def sizing(question: Question, runs: pd.DataFrame | None) -> list[dict]:
    """One row per source of SD: arm, sd, n (paired seeds it came from; None for the spec's), seeds, half-widths, power now.

    Args:
        runs: the experiment's counted main runs (``harness.reporting.select``), or None.
    """
    sources = {'(spec question.sd)': (question.sd, None)} if question.sd else {}
    if runs is not None and not runs.empty:
        sources.update(paired_sd(runs, question.metric))
    rows = []
    for arm, (sd, n) in sources.items():
        seeds = seeds_for_power(sd, question.margin, question.alpha, question.power) if sd > 0 else 3
        rows.append({'arm': arm, 'sd': sd, 'n': n, 'seeds': seeds,
                     'half_width': half_width(sd, seeds) if seeds else math.nan,
                     'half_width_now': half_width(sd, n) if n and n >= 2 else math.nan,
                     'power_now': ni_power(n, sd, question.margin, question.alpha) if n else math.nan})
    return rows


def describe(question: Question, rows: list[dict]) -> list[str]:
    """Lines for ``plan``."""
    metric = question.metric.upper()
    lines = [f'question: {metric} non-inferiority margin {question.margin:g} points against {question.baseline}, '
             f'alpha {question.alpha:g} (one-sided), sized for power {question.power:g} at a true difference of 0']
    if not rows:
        lines.append('  seeds needed: unknown (no question.sd in the spec and no finished paired runs in --runs; '
                     'run a pilot, or give question.sd)')
    for r in rows:
        where = 'from the spec' if r['n'] is None else f"over {r['n']} paired seeds of the finished runs"
        need = (f"{r['seeds']} seeds for {question.power:.0%} power; 95% CI half-width ±{r['half_width']:.1f} there"
                if r['seeds'] else 'more than 500 seeds')
        now = '' if r['n'] is None else (f"; now ±{r['half_width_now']:.1f} and power {r['power_now']:.0%} "
                                          f"at {r['n']} seeds")
        lines.append(f"  {r['arm']}: SD of the paired difference {r['sd']:.2f} {metric} points ({where}) -> "
                     f"{need}{now}")
    return lines


def needed(rows: list[dict]) -> int | None:
    """The seed count the study needs: the largest over the arms (None if unknown)."""
    counts = [r['seeds'] for r in rows if r['seeds']]
    return int(np.max(counts)) if counts else None
