"""Figures of the toy study (from its CSVs only)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.reporting.plots import COLORS, save_figure  # noqa: E402


def recovery_vs_steps(curve: pd.DataFrame, out: Path) -> list[Path]:
    """Fraction of GTs recovered at IoU >= 0.9 vs step, one panel per (queries, instances)."""
    cells = sorted(curve.groupby(['queries', 'instances']).groups)
    cols = min(3, len(cells))
    rows = int(np.ceil(len(cells) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    criteria = list(dict.fromkeys(sorted(curve['criterion'])))
    for ax, (m, k) in zip(axes.flat, cells):
        part = curve[(curve.queries == m) & (curve.instances == k)]
        for i, crit in enumerate(criteria):
            mean = part[part.criterion == crit].groupby('step')['recovered_90'].mean()
            ax.plot(mean.index, mean.values, color=COLORS[i], lw=2, label=crit)
        ax.axhline(min(1.0, m / k), color='grey', lw=0.8, ls=':')
        ax.set_title(f'{m} queries, {k} instances', fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel('Adam step')
        ax.set_ylabel('GTs recovered (IoU >= 0.9)')
    for ax in list(axes.flat)[len(cells):]:
        ax.axis('off')
    axes.flat[0].legend(fontsize=8)
    fig.suptitle('Recovery vs steps (mean over seeds and background; dotted: most recoverable)', fontsize=11)
    return save_figure(fig, out, 'recovery_vs_steps')


def iou_distribution(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Best IoU per GT instance, pooled over the grid, per criterion."""
    criteria = list(dict.fromkeys(sorted(runs['criterion'])))
    data = [np.concatenate([np.array(s.split(), float) for s in runs.loc[runs.criterion == c, 'best_ious']])
            for c in criteria]
    fig, ax = plt.subplots(figsize=(1.8 * len(criteria) + 2, 3.8))
    parts = ax.violinplot(data, showmedians=True)
    for body, color in zip(parts['bodies'], COLORS):
        body.set_facecolor(color)
    ax.set_xticks(range(1, len(criteria) + 1), criteria)
    ax.set_ylabel('best IoU of any query with the GT')
    ax.set_ylim(0, 1.02)
    ax.set_title('Best IoU per GT instance (all grid cells, seeds)')
    return save_figure(fig, out, 'iou_distribution')


def grid_heatmap(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Criteria x (queries, instances, background): mean fraction recovered at IoU >= 0.9."""
    table = runs.pivot_table(index='criterion', columns=['queries', 'instances', 'background'],
                             values='recovered_90', aggfunc='mean')
    fig, ax = plt.subplots(figsize=(0.75 * table.shape[1] + 3, 0.6 * table.shape[0] + 2))
    im = ax.imshow(table.values, vmin=0, vmax=1, cmap='viridis', aspect='auto')
    for (i, j), v in np.ndenumerate(table.values):
        ax.text(j, i, f'{v:.2f}', ha='center', va='center', fontsize=7, color='white' if v < 0.6 else 'black')
    ax.set_yticks(range(len(table.index)), table.index)
    ax.set_xticks(range(table.shape[1]), [f'M{m} K{k}{" bg" if b else ""}' for m, k, b in table.columns],
                  rotation=60, ha='right', fontsize=8)
    fig.colorbar(im, ax=ax, label='GTs recovered (IoU >= 0.9)')
    ax.set_title('Recovery over the grid (M queries, K instances, bg: 20% background)')
    return save_figure(fig, out, 'grid_heatmap')


def render_all(runs: pd.DataFrame, curve: pd.DataFrame, out: Path) -> list[Path]:
    """Every figure of the study."""
    return [*recovery_vs_steps(curve, out), *iou_distribution(runs, out), *grid_heatmap(runs, out)]
