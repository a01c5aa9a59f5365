"""Paired statistics over seeds: Student-t interval, paired t-test and an exact sign-flip test.

Why t and not a percentile bootstrap: with 3 seeds the bootstrap interval of a
mean is exactly [min, max] of the per-seed differences and covers a true
difference far less often than it claims (measured in tests/test_stats.py:
~75% for a nominal 95% at 3 seeds). The t interval assumes roughly normal
per-seed differences and has the stated coverage when they are; the exact
sign-flip p-value makes no such assumption (but can never go below 2 / 2^n:
0.25 at 3 seeds, 0.0625 at 5).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import stats

LEVEL = 0.95
MIN_SEEDS = 3   # below this no interval is printed: "n too small"
MAX_SIGN_FLIP_SEEDS = 16   # the exact test enumerates 2^n sign patterns
# AP differences closer than this are equal: 0.42 - 0.39 and 0.48 - 0.45 differ by float noise (1e-17),
# which must not decide "no spread" or which side of the margin a mean lies
TIE = 1e-9
VERDICTS = ('non-inferior', 'inferior', 'inconclusive')   # noninferiority's; else 'n too small'


def t_interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float] | None:
    """Student-t interval of the mean; None below MIN_SEEDS values."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n < MIN_SEEDS:
        return None
    half = stats.t.ppf(0.5 + level / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


def sign_flip_p(diffs: np.ndarray) -> float | None:
    """Exact two-sided p of the paired sign-flip (permutation) test of mean difference 0; None below MIN_SEEDS.

    Every one of the 2^n sign patterns is enumerated (n <= MAX_SIGN_FLIP_SEEDS; None above).
    """
    diffs = np.asarray(diffs, dtype=float)
    n = len(diffs)
    if n < MIN_SEEDS or n > MAX_SIGN_FLIP_SEEDS or np.isnan(diffs).any():
        return None
    observed = abs(diffs.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    means = np.abs(signs @ diffs / n)
    return float(np.mean(means >= observed - 1e-12))


def paired(diffs: np.ndarray) -> dict:
    """Summary of per-seed differences (arm - baseline).

    Returns:
        ``n``, ``mean``, ``ci_low`` / ``ci_high`` (Student-t, 95%), ``p_t``
        (paired t-test), ``p_signflip`` (exact), ``note`` ('' or why an entry is
        missing); NaN where not defined.
    """
    diffs = np.asarray(diffs, dtype=float)
    n = len(diffs)
    out = {'n': n, 'mean': float(diffs.mean()) if n else math.nan, 'ci_low': math.nan, 'ci_high': math.nan,
           'p_t': math.nan, 'p_signflip': math.nan, 'note': ''}
    if n < MIN_SEEDS:
        out['note'] = f'n too small ({n} paired seed{"s" if n != 1 else ""}; an interval needs {MIN_SEEDS})'
        return out
    out['ci_low'], out['ci_high'] = t_interval(diffs)
    out['p_signflip'] = math.nan if (p := sign_flip_p(diffs)) is None else p
    notes = []
    if np.ptp(diffs) <= TIE:
        notes.append('identical differences on every seed: no spread to test')
    else:
        out['p_t'] = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    if n > MAX_SIGN_FLIP_SEEDS:
        notes.append(f'sign-flip p enumerated up to {MAX_SIGN_FLIP_SEEDS} seeds, not for {n}')
    out['note'] = '; '.join(notes)
    return out


def noninferiority(diffs: np.ndarray, margin: float, alpha: float = 0.05) -> dict:
    """One-sided paired test that an arm is not worse than the baseline by ``margin`` or more.

    H0: mean difference <= -margin; H1: > -margin (Student-t on per-seed differences).

    Args:
        diffs: per-seed differences arm - baseline, in the units of ``margin``.
        margin: the non-inferiority margin (> 0).
        alpha: one-sided level.

    Returns:
        ``ni_margin``; ``ni_lower`` (the one-sided 1 - alpha lower confidence bound of the mean);
        ``ni_upper`` (the one-sided upper bound); ``ni_p`` (one-sided p of H0);
        ``ni_verdict``: ``non-inferior`` (lower bound above -margin), ``inferior`` (upper bound
        below -margin: worse by more than the margin), else ``inconclusive``; ``n too small``
        below MIN_SEEDS.
    """
    diffs = np.asarray(diffs, dtype=float)
    n = len(diffs)
    out = {'ni_margin': float(margin), 'ni_lower': math.nan, 'ni_upper': math.nan, 'ni_p': math.nan,
           'ni_verdict': 'n too small'}
    if n < MIN_SEEDS:
        return out
    mean = float(diffs.mean())
    se = float(diffs.std(ddof=1)) / math.sqrt(n) if np.ptp(diffs) > TIE else 0.0   # float noise is no spread
    q = stats.t.ppf(1 - alpha, n - 1)
    out['ni_lower'], out['ni_upper'] = mean - q * se, mean + q * se
    if se == 0:   # exactly at the margin (within TIE) H0 holds: never rejected
        out['ni_p'] = 0.0 if mean > -margin + TIE else 1.0
    else:
        out['ni_p'] = float(stats.t.sf((mean + margin) / se, n - 1))
    out['ni_verdict'] = ('non-inferior' if out['ni_lower'] > -margin + TIE else
                         'inferior' if out['ni_upper'] < -margin - TIE else 'inconclusive')
    return out


def ni_power(n: int, sd: float, margin: float, alpha: float = 0.05, delta: float = 0.0) -> float:
    """Power of the one-sided paired t non-inferiority test with n seeds when the true difference is ``delta``."""
    if n < 2:
        return 0.0
    q = stats.t.ppf(1 - alpha, n - 1)
    return float(stats.nct.sf(q, n - 1, (delta + margin) * math.sqrt(n) / sd))


def seeds_for_power(sd: float, margin: float, alpha: float = 0.05, power: float = 0.8, delta: float = 0.0,
                    max_n: int = 500) -> int | None:
    """Smallest number of paired seeds (>= MIN_SEEDS) reaching ``power`` at true difference ``delta``; None if > max_n."""
    for n in range(MIN_SEEDS, max_n + 1):
        if ni_power(n, sd, margin, alpha, delta) >= power:
            return n
    return None


def half_width(sd: float, n: int, level: float = LEVEL) -> float:
    """Expected half-width of the two-sided Student-t interval of a mean over n seeds with this SD."""
    return float(stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n))
