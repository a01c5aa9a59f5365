"""Figures from run records only (matplotlib Agg): ap_bars, per_class, curves, timing, decision."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use('Agg')  # no display needed, also in CI and containers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.reporting.select import curves_of  # noqa: E402

METRICS = ('ap25', 'ap50', 'ap75', 'ap')
LABEL = {'ap25': 'AP25', 'ap50': 'AP50', 'ap75': 'AP75', 'ap': 'mAP'}
COLORS = plt.rcParams['axes.prop_cycle'].by_key()['color']


def save_figure(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    """PNG + SVG, the same bytes for the same records (no date, fixed SVG ids); the figure is closed."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f'{name}.png', out / f'{name}.svg']
    fig.tight_layout()
    # a re-render of unchanged records must not show up as changed files in git
    with plt.rc_context({'svg.hashsalt': name}):
        for path in paths:
            fig.savefig(path, dpi=150, metadata={'Date': None} if path.suffix == '.svg' else None)
    plt.close(fig)
    return paths


def _arms(runs: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(runs['arm']))


def ap_bars(runs: pd.DataFrame, published: dict | None, out: Path) -> list[Path]:
    """Bars = mean over seeds, dots = seeds, error bars = std; published values as markers."""
    arms = _arms(runs)
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(7, 4.4))
    x = np.arange(len(METRICS))
    for i, arm in enumerate(arms):
        group = runs[runs['arm'] == arm]
        vals = 100 * group[list(METRICS)].astype(float)
        pos = x - 0.4 + width * (i + 0.5)
        std = vals.std(ddof=1) if len(vals) > 1 else None
        ax.bar(pos, vals.mean(), width, yerr=std, capsize=3, color=COLORS[i], alpha=0.8,
               label=f'{arm} (n={len(group)})')
        for j, m in enumerate(METRICS):
            ax.scatter(np.full(len(vals), pos[j]), vals[m], color='black', s=10, zorder=3)
    if published:
        pts = [(j, published['metrics'][m]) for j, m in enumerate(METRICS) if published['metrics'].get(m) is not None]
        if pts:
            ax.scatter(*zip(*pts), marker='_', s=600, color='black', linewidths=2, zorder=4, label=published['label'])
    ax.set_xticks(x, [LABEL[m] for m in METRICS])
    ax.set_ylabel('AP on test area (%)')
    ax.set_ylim(0, 100)
    ax.set_title('Instance segmentation AP per arm (dots: seeds)')
    # below the axes: never covers tall bars
    ax.legend(fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False)
    return save_figure(fig, out, 'ap_bars')


def per_class(table: pd.DataFrame, out: Path) -> list[Path]:
    """Grouped bars of AP50 per class, one colour per arm."""
    arms = list(dict.fromkeys(table['arm']))
    classes = list(dict.fromkeys(table['class']))
    width = 0.8 / len(arms)
    wide = table.pivot(index='class', columns='arm', values='ap50').loc[classes]
    fig, ax = plt.subplots(figsize=(max(7, 0.6 * len(classes)), 4.6))
    x = np.arange(len(classes))
    for i, arm in enumerate(arms):
        ax.bar(x - 0.4 + width * (i + 0.5), 100 * wide[arm], width, color=COLORS[i], label=arm)
    ax.set_xticks(x, classes, rotation=45, ha='right')
    ax.set_ylabel('AP50 (%)')
    ax.set_ylim(0, 100)
    ax.set_title('AP50 per class (mean over seeds; missing bar: no GT)')
    ax.legend(fontsize=8, loc='upper center', bbox_to_anchor=(0.5, -0.28), ncol=len(arms), frameon=False)
    return save_figure(fig, out, 'per_class')


def _load_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """All runs' curves.csv, tagged with arm and seed (runs without one are skipped)."""
    frames = [curves.assign(arm=r.arm, seed=r.seed) for r in runs.itertuples()
              if not (curves := curves_of(r.dir)).empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _plot_metric(ax: plt.Axes, curves: pd.DataFrame, arms: list[str], column: str, x: str) -> bool:
    """Seeds as thin lines, mean over seeds as a thick line; False if nothing to draw."""
    data = curves.dropna(subset=[column, x]) if column in curves else pd.DataFrame()
    if data.empty:
        return False
    for i, arm in enumerate(arms):
        part = data[data['arm'] == arm]
        for _, seed in part.groupby('seed'):
            ax.plot(seed[x], seed[column], color=COLORS[i], lw=0.6, alpha=0.5)
        if not part.empty:
            mean = part.groupby(x)[column].mean()
            ax.plot(mean.index, mean.values, color=COLORS[i], lw=2, label=arm)
    return True


def curves(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Training loss (total and instance components) per step; validation AP50 per epoch."""
    data = _load_curves(runs)
    arms = _arms(runs)
    train = data[data['phase'] == 'train'] if not data.empty else data
    val = data[data['phase'] == 'val'] if not data.empty else data
    parts = [c for c in ('inst_loss', 'sem_loss') if c in train] if not train.empty else []
    fig, axes = plt.subplots(1, 2 + len(parts), figsize=(4.2 * (2 + len(parts)), 3.6), squeeze=False)
    axes = axes[0]
    panels = [(axes[0], train, 'loss', 'step', 'total training loss'),
              *[(ax, train, c, 'step', c) for ax, c in zip(axes[1:], parts)],
              (axes[-1], val, 'all_ap_50%', 'step', 'validation AP50 (upstream metric)')]
    for ax, frame, column, x, title in panels:
        if not _plot_metric(ax, frame, arms, column, x):
            ax.text(0.5, 0.5, 'not logged', ha='center', va='center', transform=ax.transAxes)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel('iteration' if frame is train else 'step (epoch or iteration)')
        ax.set_ylabel('loss' if frame is train else 'AP50 (fraction)')
        if ax.lines:
            ax.legend(fontsize=8)
    return save_figure(fig, out, 'curves')


def timing(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Seconds per iteration and criterion milliseconds per arm, where recorded."""
    arms = _arms(runs)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, column, label in ((axes[0], 's_per_iter', 'training time (s / iteration)'),
                              (axes[1], 'criterion_ms', 'criterion forward (ms / iteration)')):
        values = [runs.loc[runs['arm'] == a, column].dropna().astype(float) for a in arms]
        if not any(len(v) for v in values):
            ax.text(0.5, 0.5, "not recorded\n(native runs log it;\nsee bench criterion)", ha="center", va="center", transform=ax.transAxes)
        for i, (arm, v) in enumerate(zip(arms, values)):
            if len(v):
                ax.bar(i, v.mean(), color=COLORS[i], alpha=0.8)
                ax.scatter(np.full(len(v), i), v, color='black', s=10, zorder=3)
        ax.set_xticks(range(len(arms)), arms)
        ax.set_ylabel(label)
        ax.set_title(label.split(' (')[0], fontsize=10)
    return save_figure(fig, out, 'timing')


VERDICT_COLORS = {'non-inferior': '#2ca02c', 'inferior': '#d62728', 'inconclusive': '#7f7f7f'}


def decision(summary: pd.DataFrame, question: dict | None, out: Path, interim: bool = False) -> list[Path]:
    """plots/decision.{png,svg}: per arm, the paired differences from the baseline in the question's
    metric (one dot per seed), their mean and the one-sided bounds the verdict reads, against the margin.

    Args:
        summary: ``harness.reporting.compare.summarise``'s table (delta rows carry ``ni_*``, fractions).
        question: the recorded question (``margin`` in points, ``metric``, ``alpha``, ``baseline``),
            or None: then there is no decision and no figure.
        interim: some runs of the study are still under way (``--interim``): the title says so.
    """
    rows = [] if question is None else [r for r in summary.to_dict('records')
                                        if r['kind'] == 'delta' and r['metric'] == question['metric']]
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(7.5, 1.6 + 0.6 * len(rows)))
    for y, r in enumerate(reversed(rows)):
        values = 100 * np.array([float(v) for v in str(r['values']).split()])
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(len(values))
        ax.scatter(values, y + jitter, s=9, color='black', alpha=0.4, zorder=2)
        color = VERDICT_COLORS.get(r['ni_verdict'], 'black')
        if not math.isnan(r['ni_lower']):
            ax.plot([100 * r['ni_lower'], 100 * r['ni_upper']], [y, y], color=color, lw=3, zorder=3)
        ax.plot(100 * r['mean'], y, 'D', color=color, ms=7, zorder=4)
        ax.annotate(f"{r['ni_verdict']} (n={int(r['n'])})", (1.01, y), xycoords=('axes fraction', 'data'),
                    va='center', fontsize=9, color=color)
    ax.axvline(0, color='black', lw=1)
    ax.axvline(-question['margin'], color='#d62728', ls='--', lw=1)
    ax.text(-question['margin'], 1.01, f"−margin ({question['margin']:g})", transform=ax.get_xaxis_transform(),
            ha='center', va='bottom', fontsize=8, color='#d62728')
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_yticks(range(len(rows)), [r['row'] for r in reversed(rows)])
    ax.set_xlabel(f"{question['metric'].upper()} difference from {question['baseline']} (points, same seed)")
    title = f"mean (◆), one-sided {100 * (1 - question['alpha']):g}% bounds (bar), seeds (dots)"
    ax.set_title(('INTERIM LOOK, runs still under way: not the decision\n' if interim else '') + title,
                 fontsize=10, pad=16, color='#d62728' if interim else 'black')
    return save_figure(fig, out, 'decision')


def render_all(runs: pd.DataFrame, table: pd.DataFrame, published: dict | None, out: Path) -> list[Path]:
    """Every figure; returns the files written."""
    return [*ap_bars(runs, published, out), *per_class(table, out), *curves(runs, out), *timing(runs, out)]
