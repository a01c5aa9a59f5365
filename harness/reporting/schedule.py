"""Has training reached a plateau? The baseline's validation AP50 gain over the last third of its schedule.

The native screen's rule (docs/native-screen.md): a schedule is long enough
when the baseline's validation AP50, averaged over seeds, gains less than
``PLATEAU_GAIN`` points from two thirds of training to the end. ``plan``
prints the figure from finished runs (a schedule finder's or a pilot's).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.reporting.select import curves_of

# The screen's plateau rule, in AP50 points (the issue that built the screen set it; see the module docstring).
PLATEAU_GAIN = 1.0
# Below this final AP50 (points) the baseline learned nothing to speak of: a flat curve there is no plateau.
LEARNED_AP50 = 1.0
CURVE_AP50 = 'all_ap_50%'   # curves.csv's validation AP50 column, a fraction in [0, 1]


def last_third_gain(curve: pd.DataFrame) -> float:
    """AP50 points gained from the last validation at or before 2/3 of the final one to the final one.

    Args:
        curve: a run's curves.csv (``phase``, ``step``, ``all_ap_50%``).

    Returns:
        The gain in AP points (100 x the fraction); NaN when fewer than two validations lie that far apart.
    """
    if curve.empty or CURVE_AP50 not in curve:
        return math.nan
    val = curve[(curve['phase'] == 'val') & curve[CURVE_AP50].notna()].sort_values('step')
    if len(val) < 2:
        return math.nan
    end = val.iloc[-1]
    before = val[val['step'] <= end['step'] * 2 / 3]
    if before.empty:
        return math.nan
    return 100 * float(end[CURVE_AP50] - before.iloc[-1][CURVE_AP50])


def baseline_gains(runs: pd.DataFrame, baseline: str) -> dict[int, float]:
    """Seed -> last-third gain of the baseline's finished main runs (``runs``: select()'s frame, with ``dir``)."""
    mine = runs[runs['arm'] == baseline].sort_values('seed') if not runs.empty else runs
    gains = {int(r.seed): last_third_gain(curves_of(r.dir)) for r in mine.itertuples()}
    return {s: g for s, g in gains.items() if not math.isnan(g)}


def describe_plateau(baseline: str, gains: dict[int, float], final_ap50: float | None = None) -> str:
    """One line for ``plan``: the mean gain, per seed, and whether the rule holds; ``final_ap50``: the
    baseline's mean final AP50 in points (below LEARNED_AP50 a flat curve is no plateau)."""
    if not gains:
        return f'schedule: no finished {baseline} run with validation curves yet (the plateau check needs them)'
    mean = float(np.mean(list(gains.values())))
    verdict = ('a plateau by the screen\'s rule' if mean < PLATEAU_GAIN else 'still rising by the screen\'s rule'
               ) + f' (< {PLATEAU_GAIN:g})'
    if final_ap50 is not None and final_ap50 < LEARNED_AP50:
        verdict = (f'no plateau to read: it ends at {final_ap50:.1f} AP50 (nothing learned; check the '
                   'schedule, lr and data before sizing on it)')
    per_seed = ', '.join(f'{s}: {g:+.1f}' for s, g in gains.items())
    return (f'schedule: {baseline}\'s validation AP50 gained {mean:+.1f} over the last third of training '
            f'(mean of {len(gains)} seeds; {per_seed}): {verdict}')
