"""GitHub-readable tables: comparison.md and per_class.md."""
from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from harness.reporting.compare import LABEL, METRICS, main_runs, question_of
from harness.reporting.select import Selection
from harness.reporting.stats import MIN_SEEDS, VERDICTS
from harness.study.arms import BASELINE

DIRTY = '†'
UNKNOWN = '‡'   # the harness commit is unknown (no git where the run ran): neither clean nor dirty


def pct(x: float | None, signed: bool = False) -> str:
    """Percent with one decimal, like papers; '–' for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return '–'
    return f'{100 * x:+.1f}' if signed else f'{100 * x:.1f}'


def _p(x: float) -> str:
    return '–' if x is None or math.isnan(x) else (f'{x:.3f}' if x >= 0.001 else '<0.001')


def _mean_std(r: dict, m: str) -> str:
    """'mean ± std' over seeds (mean only for one seed; '–' where the records lack the metric)."""
    if r['n'] > 1 and not math.isnan(r[f'{m}_mean']):
        return f"{pct(r[f'{m}_mean'])} ± {pct(r[f'{m}_std'])}"
    return pct(r[f'{m}_mean'])


def _arm_line(r: dict, unknown: set[str] = frozenset()) -> str:
    cells = [_mean_std(r, m) for m in METRICS]
    seeds = f"{int(r['n'])}{DIRTY if r['dirty'] else ''}{UNKNOWN if r['row'] in unknown else ''}"
    attempts = f"{int(r['attempts'])}" + (f" ({int(r['failed'])} failed)" if r['failed'] else '')
    wall = '–' if math.isnan(r['wall_s']) else (f"{r['wall_s'] / 3600:.2f} h" if r['wall_s'] >= 3600
                                                else f"{r['wall_s']:.0f} s")
    spi = '–' if math.isnan(r['s_per_iter']) else f"{r['s_per_iter']:.3f}"
    crit = '–' if math.isnan(r['criterion_ms']) else f"{r['criterion_ms']:.1f}"
    return (f"| {r['row']} | {r['family']} | {seeds} | {attempts} | " + ' | '.join(cells)
            + f' | {wall} | {spi} | {crit} |')


def _best_line(r: dict) -> str:
    cells = [_mean_std(r, m) for m in METRICS]
    return f"| {r['row']} | | {int(r['n'])} | – | " + ' | '.join(cells) + ' | | | |'


def main_table(summary: pd.DataFrame, published: dict | None, unknown: set[str] = frozenset()) -> list[str]:
    """Arms (last checkpoint), the published row, the best-on-Area-5 extras.

    Args:
        unknown: arms with a run whose harness commit is unknown (marked ``‡``).
    """
    head = ('| arm | family | seeds | attempts | ' + ' | '.join(LABEL[m] for m in METRICS)
            + ' | wall / run | s / iter | criterion fwd ms |')
    lines = [head, '|' + '---|' * (len(METRICS) + 7)]
    rows = summary.to_dict('records')
    lines += [_arm_line(r, unknown) for r in rows if r['kind'] == 'arm']
    if published:
        vals = [pct(published['metrics'][m] / 100 if published['metrics'].get(m) is not None else None)
                for m in METRICS]
        lines.append(f"| {published['label']} | | – | – | " + ' | '.join(vals) + ' | | | |')
    lines += [_best_line(r) for r in rows if r['kind'] == 'best']
    return lines


def decision(summary: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """The pre-registered question and each arm's non-inferiority verdict."""
    question, note = question_of(runs)
    if question is None:
        return [f'No decision: {note}.']
    metric = LABEL[question['metric']]
    lines = [f"Fixed in the spec before the runs: is each arm at most {question['margin']:g} {metric} points worse "
             f"than {question['baseline']}? One-sided paired t over seeds, alpha {question['alpha']:g}: "
             f"non-inferior when the {100 * (1 - question['alpha']):g}% lower bound of the mean Δ lies above "
             f"−{question['margin']:g}; inferior when the upper bound lies below it; else inconclusive.", '',
             f'| arm − baseline | seeds | mean Δ {metric} | lower bound | upper bound | p (H0: Δ ≤ −margin) | verdict |',
             '|---|---|---|---|---|---|---|']
    rows = [r for r in summary.to_dict('records') if r['kind'] == 'delta' and r['metric'] == question['metric']]
    missing = _nothing_to_decide(runs, question['baseline'], rows)
    if missing:
        return [f'No decision: {missing}.']
    for r in rows:
        # bounds with two decimals: a bound of -2.96 beside a margin of 3 must not read as -3.0
        lines.append(f"| {r['row']} | {int(r['n'])} | {pct(r['mean'], True)} | {_bound(r['ni_lower'])} | "
                     f"{_bound(r['ni_upper'])} | {_p(r['ni_p'])} | **{r['ni_verdict']}** |")
    untested = [r for r in rows if r['ni_verdict'] not in VERDICTS]
    if untested:
        lines += ['', f'Not tested (fewer than {MIN_SEEDS} seeds shared with {question["baseline"]}): '
                  + ', '.join(f"{r['row'].split(' - ')[0]} ({int(r['n'])})" for r in untested) + '.']
    return lines + ['', multiplicity(len(rows) - len(untested), question['alpha'])]


def _bound(x: float) -> str:
    return '–' if x is None or math.isnan(x) else f'{100 * x:+.2f}'


def _nothing_to_decide(runs: pd.DataFrame, baseline: str, rows: list[dict]) -> str:
    """Why the question cannot be asked of these runs, or '' when it can."""
    if baseline not in set(runs['arm']):
        return f'no counted run of the baseline {baseline}, which each arm is compared with'
    if not rows:
        return f'no counted run of an arm besides the baseline {baseline}'
    return ''


def multiplicity(tests: int, alpha: float) -> str:
    """How many verdicts the table holds and what deciding each alone costs the family (one line).

    Each arm is decided at ``alpha`` with no correction, as the spec fixed; readers weighing the
    table as a whole need the family-wise bound (Bonferroni: it holds whatever the tests' correlation,
    and arms sharing one baseline are correlated).
    """
    if tests == 0:
        return 'No arm could be tested.'
    if tests == 1:
        return f'1 arm tested against the baseline, at alpha {alpha:g}.'
    return (f'{tests} arms tested against the same baseline, each at alpha {alpha:g} with no multiplicity '
            f'correction (as fixed in the spec): if every arm were exactly the margin worse, the chance of at '
            f'least one false non-inferior verdict is at most {min(1.0, tests * alpha):.2g} (Bonferroni, '
            f'{tests} × {alpha:g}); a non-inferior verdict whose p is below {alpha:g}/{tests} = '
            f'{math.floor(alpha / tests * 1e5) / 1e5:g} also holds at family-wise alpha {alpha:g}.')


def delta_table(summary: pd.DataFrame) -> list[str]:
    """Per arm and metric: mean difference, t interval, p-values and every per-seed difference."""
    rows = [r for r in summary.to_dict('records') if r['kind'] == 'delta']
    if not rows:
        return ['No other arm to compare with.']
    lines = ['| arm − baseline | metric | seeds | mean Δ | 95% CI (t) | p (paired t) | p (sign-flip) | '
             'per-seed Δ |', '|---|---|---|---|---|---|---|---|']
    for r in rows:
        ci = (f"[{pct(r['ci_low'], True)}, {pct(r['ci_high'], True)}]" if not math.isnan(r['ci_low'])
              else r['note'] or '–')
        if r['note'] and not math.isnan(r['ci_low']):   # why a p is missing (no spread, too many seeds)
            ci += f" ({r['note']})"
        per_seed = ', '.join(f's{s} {pct(float(d), True)}' for s, d in zip(r['seeds'].split(), r['values'].split()))
        lines.append(f"| {r['row']} | {LABEL[r['metric']]} | {int(r['n'])} | {pct(r['mean'], True)} | {ci} | "
                     f"{_p(r['p_t'])} | {_p(r['p_signflip'])} | {per_seed} |")
    return lines


NOTES = ('Mean ± sample std over seeds, in percent, of the LAST checkpoint of each run. Δ: per-seed '
         'difference from the baseline ({baseline}) on the same seed; 95% CI: Student-t over the seeds; '
         'p: two-sided paired t-test and exact sign-flip test (with n seeds the sign-flip p is at least '
         '2/2^n). Below 3 seeds no interval is given. The published row and the "{best}" rows come from the '
         'checkpoint with the best validation AP50 on Area 5, which is also the test set: they are shown '
         'for comparison with upstream, never as the result. spconv is not bitwise deterministic on GPU: '
         'seeds differ, so compare across seeds. attempts: every attempt of the arm\'s runs (the first '
         'finished one of each run counts, docs/run-records.md). {dirty} runs from a harness tree with '
         'uncommitted changes. family: assignment-based arms train each query on what an assignment of GTs '
         'to queries (Hungarian, or a relaxation of it) gives it; assignment-free arms have no assignment. '
         'An arm renamed since its runs shows its current name (its run ids keep the old one). {inst}: the per-class AP50 weighted by each class\'s counted GTs (>= 100 '
         'points), so every GT weighs the same; the class mean (AP50) stays the headline, as upstream reports it.')


def seed_sets_note(runs: pd.DataFrame) -> list[str]:
    """A line under the arms table when its means are over different seeds (a staged study's stopped
    arms, a failed run): seed-to-seed spread is large, so only the paired differences compare arms."""
    seeds = {arm: sorted(int(s) for s in group['seed']) for arm, group in runs.groupby('arm', sort=False)}
    if len({tuple(v) for v in seeds.values()}) <= 1:
        return []
    listed = '; '.join(f'{arm}: {seed_ranges(v)}' for arm, v in seeds.items())
    return ['', f'The arms\' means above are over different seeds ({listed}): compare an arm with '
            f'{BASELINE} through the paired differences below, which use the seeds both have.']


def seed_ranges(seeds: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``'0-2, 5, 7-8'``."""
    parts: list[list[int]] = []
    for s in sorted(seeds):
        if parts and s == parts[-1][1] + 1:
            parts[-1][1] = s
        else:
            parts.append([s, s])
    return ', '.join(f'{a}-{b}' if b > a else f'{a}' for a, b in parts)


def arm_differences(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Arm -> the config keys it sets (its criterion, and a second key where an arm declares one)."""
    out: dict[str, list[str]] = {}
    for r in runs.itertuples():
        if r.arm != BASELINE:
            out.setdefault(r.arm, list(r.arm_keys))
    return out


def comparison_md(experiment: str, summary: pd.DataFrame, sel: Selection, published: dict | None,
                  ablation_lines: list[str], unfinished: Sequence[str] = ()) -> str:
    """The whole comparison.md; ``unfinished``: run ids of the study still under way (an interim look)."""
    from harness.reporting.compare import BEST_LABEL
    runs = main_runs(sel.runs)
    unknown = set(runs.loc[runs['commit_unknown'], 'arm']) if 'commit_unknown' in runs else set()
    lines = [f'# {experiment}: instance segmentation, last checkpoint', ''] + interim_banner(unfinished)
    lines += main_table(summary, published, unknown) + seed_sets_note(runs)
    lines += ['', NOTES.format(baseline=BASELINE, best=BEST_LABEL, dirty=DIRTY, inst=LABEL['ap50w'])
              + (f' {UNKNOWN} runs whose harness commit is unknown (git was not available where they ran): '
                 'neither clean nor dirty.' if unknown else '')]
    lines += ['', 'What differs from the baseline: ' + '; '.join(
        f"{arm}: {', '.join(keys)}" for arm, keys in arm_differences(sel.runs).items()) + '.']
    if published:
        lines += ['', f"Published reference: {published['source'].strip()}"]
    lines += ['', '## Decision', ''] + decision(summary, main_runs(sel.runs))
    lines += ['', '## Paired differences', ''] + delta_table(summary)
    lines += ['', '## Per seed', '', '| arm | seed | ' + ' | '.join(LABEL[m] for m in METRICS) + ' | run |',
              '|' + '---|' * (len(METRICS) + 3)]
    for r in main_runs(sel.runs).sort_values(['arm', 'seed']).itertuples():
        mark = (DIRTY if r.dirty else '') + (UNKNOWN if getattr(r, 'commit_unknown', False) else '')
        lines.append(f'| {r.arm} | {r.seed}{mark} | ' + ' | '.join(pct(getattr(r, m)) for m in METRICS)
                     + f' | {r.run_id} (attempt {r.attempt}) |')
    lines += ablation_lines
    lines += ['', '## Not included', ''] + ([f'- {e}' for e in sel.excluded] or ['- none'])
    return '\n'.join(lines) + '\n'


def interim_banner(unfinished: Sequence[str]) -> list[str]:
    """The lines that open every table of an interim look (``--interim``; none otherwise)."""
    if not unfinished:
        return []
    more = f' and {len(unfinished) - 3} more' if len(unfinished) > 3 else ''
    return [f'**Interim look** (`--interim`): {len(unfinished)} run(s) of this study were still under way '
            f'({", ".join(unfinished[:3])}{more}). Its decision is read once they have ended; these figures '
            'are not it.', '']


def per_class_md(experiment: str, table: pd.DataFrame, unfinished: Sequence[str] = ()) -> str:
    """Per class: AP50, AP25, AP75 of each arm (mean over seeds, percent); ``unfinished``: as comparison_md's."""
    arms = list(dict.fromkeys(table['arm']))
    cols = [(m, a) for m in ('ap50', 'ap25', 'ap75') for a in arms]
    lines = [f'# {experiment}: per-class AP (mean over seeds, percent)', '', *interim_banner(unfinished),
             '| class | ' + ' | '.join(f'{LABEL[m]} {a}' for m, a in cols) + ' |',
             '|' + '---|' * (len(cols) + 1)]
    wide = table.set_index(['class', 'arm'])
    for name in dict.fromkeys(table['class']):
        lines.append(f'| {name} | ' + ' | '.join(pct(wide.loc[(name, a), m]) for m, a in cols) + ' |')
    return '\n'.join(lines) + '\n'
