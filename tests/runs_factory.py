"""Synthetic run folders written through the real records API (for compare/plot tests)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harness.data import CLASS_NAMES
from harness.evaluation.ap import summarise
from harness.verbs.evaluate import metrics_record
from harness.study.records import finish_run, start_run, update_record, write_metrics
from harness.study.curves import write_curves


def fake_metrics(rng: np.random.Generator, level: float) -> dict:
    """metrics.json content around ``level`` (AP table decreasing with IoU), sofa without GT."""
    base = np.clip(level + rng.normal(0, 0.03, len(CLASS_NAMES)), 0, 1)
    table = np.clip(base[:, None] * (1.15 - np.linspace(0, 0.9, 10)[None, :]), 0, 1)
    table[:, 9] = np.clip(base * 1.1, 0, 1)  # the 0.25 column
    table[CLASS_NAMES.index('sofa')] = np.nan
    return metrics_record(summarise(table, CLASS_NAMES), n_rooms=68, area=5)


def write_scalars(path: Path, rng: np.random.Generator, iters: int = 40) -> None:
    """mmengine-style vis_data/scalars.json: train lines, then validation lines."""
    lines = []
    for step in range(1, iters + 1):
        loss = 5 * np.exp(-step / 15) + rng.normal(0, 0.05)
        lines.append({'lr': 1e-4, 'loss': loss, 'inst_loss': 0.7 * loss, 'sem_loss': 0.3 * loss,
                      'time': 1.0, 'epoch': 1 + step // 20, 'iter': step, 'step': step})
    for step in (20, 40):
        lines.append({'all_ap_50%': 0.3 + step / 100 + rng.normal(0, 0.01), 'miou': 0.5, 'step': step})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(json.dumps(line) + '\n' for line in lines))


def make_run(runs: Path, arm: str, seed: int, level: float, status: str = 'finished',
             experiment: str = 's3dis-area5', metrics: bool = True, wall_s: float = 3600.0) -> Path:
    """One run folder with run.json (+ metrics.json and curves.csv when finished)."""
    rng = np.random.default_rng([seed, len(arm)])
    folder, _ = start_run(runs, experiment, arm, seed, backend='native',
                          config={'path': f'{arm}.py', 'sha256': '0' * 64})
    if status == 'running':
        return folder
    if status == 'failed':
        finish_run(folder, status='failed', error='CUDA out of memory')
        return folder
    write_scalars(folder / 'vis_data' / 'scalars.json', rng)
    write_curves(folder / 'vis_data' / 'scalars.json', folder)
    if metrics:
        write_metrics(folder, fake_metrics(rng, level))
    finish_run(folder, iterations=40)
    update_record(folder, wall_s=wall_s, timing={'s_per_iter': wall_s / 40, 'criterion_ms': 120.0 + 10 * len(arm)})
    return folder
