"""Ablation tables and plots: each axis's metric against its value, per arm, mean and t interval over seeds.

An axis row for value v of arm a holds a's runs whose only ablation value is
v on that axis; the arm's main runs (no ablation) sit at its default value,
read from their own config. For a criterion axis the baseline is the
reference at its main runs; for a config axis it runs at every value.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from harness.core.tree import get_dotted
from harness.reporting.select import METRICS
from harness.reporting.stats import t_interval
from harness.study.arms import ARM_KEY, BASELINE
from harness.study.records import read_config


def _targets(runs: pd.DataFrame) -> list[str]:
    return sorted({k for a in runs['ablation'] for k in a}) if not runs.empty else []


def _default(run_dir: str, target: str):
    """The value ``target`` had in a main run's config (None if the key is absent)."""
    kind, key = target.split('.', 1)
    try:
        return get_dotted(read_config(run_dir) or {}, f'{ARM_KEY}.{key}' if kind == 'criterion' else key)
    except KeyError:
        return None


def axis_table(runs: pd.DataFrame, target: str) -> pd.DataFrame:
    """Rows (arm, value): seeds, default flag, and per metric mean and 95% t interval."""
    rows = []
    main = runs[[not a for a in runs['ablation']]]
    for arm in dict.fromkeys(runs['arm']):
        mine = runs[runs['arm'] == arm]
        base_main = main[main['arm'] == arm]
        groups: dict[str, tuple[object, list, bool]] = {}
        at = mine[[set(a) == {target} for a in mine['ablation']]]
        for value, group in at.groupby(at['ablation'].map(lambda a: json.dumps(a[target]))):
            groups[value] = (json.loads(value), group, False)
        if not base_main.empty:
            default = _default(base_main['dir'].iloc[0], target)
            reference = target.startswith('criterion.') and arm == BASELINE
            if default is not None or reference:
                key = 'reference' if reference else json.dumps(default)
                groups.setdefault(key, (None if reference else default, base_main, True))
        if len(groups) == 1 and next(iter(groups.values()))[2] and not arm == BASELINE:
            continue   # the arm has no point on this axis (e.g. lacks the criterion key)
        default_runs = next((group for _, group, is_default in groups.values() if is_default), None)
        for value, group, is_default in groups.values():
            row = {'axis': target, 'arm': arm, 'value': value, 'label': 'reference' if value is None else
                   json.dumps(value), 'default': is_default, 'n': len(group),
                   'seeds': ' '.join(map(str, sorted(group['seed'])))}
            for m in METRICS:
                vals = group[m].astype(float).to_numpy()
                ci = t_interval(vals)
                row.update({f'{m}_mean': vals.mean(), f'{m}_ci_low': ci[0] if ci else math.nan,
                            f'{m}_ci_high': ci[1] if ci else math.nan})
            row.update(paired_from_default(group, None if is_default else default_runs))
            rows.append(row)
    return pd.DataFrame(rows)


def paired_from_default(group: pd.DataFrame, default: pd.DataFrame | None) -> dict:
    """Per metric, the mean and 95% t interval of (value - the arm's default) over the seeds both ran.

    Seeds are shared across an axis, so the paired difference removes the seed's own luck, which
    the two separate intervals do not. Keys: ``n_paired`` and ``<metric>_delta[_ci_low|_ci_high]``
    (fractions; NaN for the default itself or without one; the interval NaN below 3 paired seeds, as t_interval).
    """
    merged = group.merge(default, on='seed', suffixes=('', '_default')) if default is not None else None
    out: dict[str, float] = {'n_paired': 0 if merged is None else len(merged)}
    for m in METRICS:
        diffs = (merged[m].astype(float) - merged[f'{m}_default'].astype(float)).to_numpy() \
            if merged is not None else np.array([])
        ci = t_interval(diffs)
        out.update({f'{m}_delta': diffs.mean() if len(diffs) else math.nan,
                    f'{m}_delta_ci_low': ci[0] if ci else math.nan, f'{m}_delta_ci_high': ci[1] if ci else math.nan})
    return out


def tables(runs: pd.DataFrame) -> pd.DataFrame:
    """Every axis's table, stacked (empty when the experiment has no ablation runs)."""
    frames = [axis_table(runs, t) for t in _targets(runs)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def markdown(table: pd.DataFrame, metric: str = 'ap50') -> list[str]:
    """One table per axis: value x arm, mean [95% CI] (n) of ``metric`` in percent."""
    if table.empty:
        return []
    from harness.reporting.markdown import pct
    lines = ['', '## Ablations', '',
             f'{metric.upper()} in percent, mean over seeds [95% Student-t CI] (n seeds); * marks an arm\'s '
             'default value (its main runs). For a criterion axis the baseline row is the reference at its '
             'default; for a config axis every arm ran at every value. plots/ablation_<axis>.png shows all '
             'four metrics.']
    for axis, part in table.groupby('axis', sort=False):
        arms = list(dict.fromkeys(part['arm']))
        values = sorted(set(part['label']), key=_label_key)

        def mean_cell(r: pd.Series) -> str:
            ci = f" [{pct(r[f'{metric}_ci_low'])}, {pct(r[f'{metric}_ci_high'])}]" if not math.isnan(
                r[f'{metric}_ci_low']) else ''
            return f"{pct(r[f'{metric}_mean'])}{ci} ({r['n']}){' *' if r['default'] else ''}"

        lines += ['', f'### {axis}', ''] + value_table(part, arms, values, mean_cell)
        lines += delta_lines(part, arms, values, metric)
    return lines


def value_table(part: pd.DataFrame, arms: list[str], values: list[str], cell) -> list[str]:
    """A markdown table, value x arm, each cell ``cell(row)`` of the axis table (empty where the arm has none)."""
    lines = ['| value | ' + ' | '.join(arms) + ' |', '|' + '---|' * (len(arms) + 1)]
    for value in values:
        hits = [part[(part['arm'] == arm) & (part['label'] == value)] for arm in arms]
        lines.append(f'| {value} | ' + ' | '.join('' if hit.empty else cell(hit.iloc[0]) for hit in hits) + ' |')
    return lines


def delta_lines(part: pd.DataFrame, arms: list[str], values: list[str], metric: str) -> list[str]:
    """The axis's paired differences from each arm's default: Δ mean [95% CI] (paired seeds), in points."""
    shown = part[part['n_paired'] > 0]
    if shown.empty:
        return []

    def delta_cell(r: pd.Series) -> str:
        ci = '' if math.isnan(r[f'{metric}_delta_ci_low']) else \
            f" [{100 * r[f'{metric}_delta_ci_low']:+.1f}, {100 * r[f'{metric}_delta_ci_high']:+.1f}]"
        return f"{100 * r[f'{metric}_delta']:+.1f}{ci} ({r['n_paired']})"

    arms = [arm for arm in arms if arm in set(shown['arm'])]   # the baseline on a criterion axis has none
    return ['', f'Paired {metric.upper()} difference from the arm\'s default (its main runs), over the seeds '
            'both ran:', ''] + value_table(shown, arms, [v for v in values if v in set(shown['label'])], delta_cell)


def _label_key(label: str):
    """Numbers ascending, then other values, the reference last."""
    return (3, 0.0, '') if label == 'reference' else _sort_key(label)


def _sort_key(text: str):
    value = json.loads(text)
    if _is_reference(value):
        return (2, 0.0, '')
    return (0, float(value), '') if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0.0, text)


def plot(table: pd.DataFrame, out) -> list:
    """plots/ablation_<axis>.{png,svg}: one panel per metric, a line per arm (mean, t interval)."""
    from harness.reporting.plots import COLORS, plt, save_figure
    files = []
    for axis, part in (table.groupby('axis', sort=False) if not table.empty else []):
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in part['value'].dropna())
        fig, axes = plt.subplots(1, len(METRICS), figsize=(3.6 * len(METRICS), 3.4), squeeze=False)
        labels = sorted(set(part.loc[part['label'] != 'reference', 'label']), key=_label_key)
        for ax, m in zip(axes[0], METRICS):
            for i, arm in enumerate(dict.fromkeys(part['arm'])):
                rows = part[part['arm'] == arm]
                ref = rows[rows['value'].isna()]
                if not ref.empty:   # the baseline at its main runs: a band across the axis
                    r = ref.iloc[0]
                    ax.axhline(100 * r[f'{m}_mean'], color=COLORS[i], ls='--', lw=1, label=f'{arm} (reference)')
                    if not math.isnan(r[f'{m}_ci_low']):
                        ax.axhspan(100 * r[f'{m}_ci_low'], 100 * r[f'{m}_ci_high'], color=COLORS[i], alpha=0.1)
                rows = rows[rows['value'].notna()]
                if rows.empty:
                    continue
                rows = rows.iloc[sorted(range(len(rows)), key=lambda i: _label_key(rows['label'].iloc[i]))]
                x = rows['value'].astype(float) if numeric else [labels.index(v) for v in rows['label']]
                low = 100 * (rows[f'{m}_mean'] - rows[f'{m}_ci_low']).fillna(0)
                high = 100 * (rows[f'{m}_ci_high'] - rows[f'{m}_mean']).fillna(0)
                ax.errorbar(x, 100 * rows[f'{m}_mean'], yerr=[low, high], color=COLORS[i], marker='o', capsize=3,
                            label=arm)
            if not numeric:
                ax.set_xticks(range(len(labels)), labels, rotation=30)
            elif part['value'].dropna().astype(float).min() > 0 and (
                    part['value'].dropna().astype(float).max() / part['value'].dropna().astype(float).min() >= 20):
                ax.set_xscale('log')
            ax.set_title(m.upper() if m != 'ap' else 'mAP', fontsize=10)
            ax.set_xlabel(axis)
            ax.set_ylabel('AP (%)')
        axes[0][0].legend(fontsize=7)
        files += save_figure(fig, out, f'ablation_{axis.replace(".", "_")}')
    return files


def _is_reference(value) -> bool:
    """The baseline's row of a criterion axis has no value (None, NaN once in a DataFrame)."""
    return value is None or (isinstance(value, float) and math.isnan(value))
