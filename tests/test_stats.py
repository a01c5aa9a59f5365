"""Paired statistics: the t interval has its stated coverage; the bootstrap it replaced does not."""
import numpy as np
import pytest
from scipy import stats as sps

from harness.reporting.stats import paired, sign_flip_p, t_interval

TRIALS = 4000


def coverage(n: int, interval) -> float:
    """Fraction of simulated experiments (normal per-seed differences, true mean 0.02) whose interval holds it."""
    rng = np.random.default_rng(n)
    hits = 0
    for _ in range(TRIALS):
        diffs = rng.normal(0.02, 0.03, n)
        low, high = interval(diffs, rng)
        hits += low <= 0.02 <= high
    return hits / TRIALS


def percentile_bootstrap(diffs, rng, resamples=2000):
    means = diffs[rng.integers(0, len(diffs), (resamples, len(diffs)))].mean(axis=1)
    return np.percentile(means, 2.5), np.percentile(means, 97.5)


@pytest.mark.parametrize('n', [3, 5])
def test_t_interval_covers_about_95_percent(n):
    got = coverage(n, lambda d, _: t_interval(d))
    # binomial sd at 4000 trials is 0.34%: +-1.2% is > 3 sd
    assert 0.938 <= got <= 0.962, got


def test_the_percentile_bootstrap_undercovers_with_few_seeds():
    """Why it was replaced: nominal 95%, far less at 3 and 5 seeds."""
    assert coverage(3, percentile_bootstrap) < 0.80
    assert coverage(5, percentile_bootstrap) < 0.90


def test_three_seed_interval_contains_the_range_whenever_differences_vary():
    rng = np.random.default_rng(1)
    for _ in range(500):
        diffs = rng.normal(0, 1, 3)
        low, high = t_interval(diffs)
        assert low < diffs.min() and high > diffs.max()


def test_paired_matches_scipy_and_says_n_too_small():
    diffs = np.array([0.01, 0.03, -0.005, 0.02, 0.015])
    out = paired(diffs)
    assert out['p_t'] == pytest.approx(sps.ttest_1samp(diffs, 0).pvalue)
    ci = sps.t.interval(0.95, 4, loc=diffs.mean(), scale=sps.sem(diffs))
    assert (out['ci_low'], out['ci_high']) == pytest.approx(ci)
    small = paired(diffs[:2])
    assert np.isnan(small['ci_low']) and small['note'].startswith('n too small (2 paired seeds')


def test_sign_flip_is_exact():
    # all five positive: only the all-plus and all-minus patterns are as extreme
    assert sign_flip_p(np.array([1.0, 2, 3, 4, 5])) == pytest.approx(2 / 32)
    assert sign_flip_p(np.array([1.0, -1, 1, -1])) == pytest.approx(1.0)
    assert sign_flip_p(np.array([1.0, 2])) is None


def test_noninferiority_error_rates_match_the_plan():
    """Simulated paired differences: type-I error at the margin <= alpha; power at 0 as planned."""
    from harness.reporting.stats import ni_power, noninferiority, seeds_for_power
    rng = np.random.default_rng(0)
    sd, margin, alpha = 4.5, 3.0, 0.05
    n = seeds_for_power(sd, margin, alpha, power=0.8)
    assert n is not None and ni_power(n, sd, margin, alpha) >= 0.8 > ni_power(n - 1, sd, margin, alpha)
    trials = 4000
    at_margin = [noninferiority(rng.normal(-margin, sd, n), margin, alpha)['ni_verdict'] == 'non-inferior'
                 for _ in range(trials)]
    at_zero = [noninferiority(rng.normal(0.0, sd, n), margin, alpha)['ni_verdict'] == 'non-inferior'
               for _ in range(trials)]
    se = np.sqrt(alpha * (1 - alpha) / trials)
    assert np.mean(at_margin) <= alpha + 3 * se                       # type-I error at the boundary
    assert abs(np.mean(at_zero) - ni_power(n, sd, margin, alpha)) < 0.03   # the planned power, observed


def test_the_seed_count_grows_with_the_spread():
    from harness.reporting.stats import half_width, seeds_for_power
    small, large = seeds_for_power(2.0, 3.0), seeds_for_power(6.0, 3.0)
    assert small < large
    assert half_width(4.55, 5) == pytest.approx(5.65, abs=0.01)   # the 5-seed study: CI +-5.7


def test_a_difference_exactly_at_the_margin_is_never_decided_by_float_noise():
    """-3 points on every seed from 2-decimal APs: 0.42 - 0.39 and 0.40 - 0.37 differ by 1e-17, which made one
    arm non-inferior (p 0) and the other inferior (p 1) with identical rows."""
    from harness.reporting.stats import noninferiority
    above = np.array([0.39, 0.45, 0.32]) - np.array([0.42, 0.48, 0.35])    # -0.02999999999999997 ...
    below = np.array([0.37, 0.47, 0.57]) - np.array([0.40, 0.50, 0.60])    # -0.030000000000000027 ...
    assert above.mean() > -0.03 > below.mean()   # float noise on either side of the margin
    for diffs in (above, below):
        out = noninferiority(diffs, 0.03)
        assert out['ni_verdict'] == 'inconclusive' and out['ni_p'] == 1.0, diffs
    assert noninferiority(above + 0.001, 0.03)['ni_verdict'] == 'non-inferior'
    assert noninferiority(below - 0.001, 0.03)['ni_verdict'] == 'inferior'


def test_float_noise_is_no_spread_and_a_missing_sign_flip_p_says_why():
    diffs = np.array([0.42, 0.48, 0.35]) - np.array([0.39, 0.45, 0.32])
    out = paired(diffs)
    assert np.isnan(out['p_t']) and out['note'] == 'identical differences on every seed: no spread to test'
    many = paired(np.linspace(-0.02, 0.03, 17))
    assert np.isnan(many['p_signflip']) and 'sign-flip p enumerated up to 16 seeds, not for 17' in many['note']
    assert sign_flip_p(np.array([0.01, np.nan, 0.02])) is None   # never a p of 0 from NaN comparisons
