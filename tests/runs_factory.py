"""Synthetic run folders written through the real records API (for compare / plot / plan tests)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from harness.core.tree import set_dotted
from harness.data import CLASS_NAMES
from harness.evaluation.ap import summarise
from harness.evaluation.folder import metrics_record
from harness.study import records
from harness.study.arms import arm_keys, with_arm
from harness.study.curves import write_curves

CONFIG = {'model': {'decoder': {'n_inst': 32}, 'criterion': {'inst_criterion': None}},
          'train': {'iters': 40, 'lr': 1e-3}, 'randomness': {'seed': 0}, 'data': {'root': 'data/x'}}


def fake_metrics(rng: np.random.Generator, level: float) -> dict:
    """metrics.json content around ``level`` (AP table decreasing with IoU), sofa without GT."""
    base = np.clip(level + rng.normal(0, 0.03, len(CLASS_NAMES)), 0, 1)
    table = np.clip(base[:, None] * (1.15 - np.linspace(0, 0.9, 10)[None, :]), 0, 1)
    table[:, 9] = np.clip(base * 1.1, 0, 1)  # the 0.25 column
    table[CLASS_NAMES.index('sofa')] = np.nan
    return metrics_record(summarise(table, CLASS_NAMES), n_rooms=68, area=5)


def write_scalars(path: Path, rng: np.random.Generator, iters: int = 40, best_ap50: float = 0.7) -> None:
    """mmengine-style vis_data/scalars.json: train lines (with criterion_ms), then validation lines."""
    lines = []
    for step in range(1, iters + 1):
        loss = 5 * np.exp(-step / 15) + rng.normal(0, 0.05)
        lines.append({'lr': 1e-4, 'loss': loss, 'inst_loss': 0.7 * loss, 'sem_loss': 0.3 * loss,
                      'criterion_ms': 100.0 + rng.normal(0, 1), 'time': 1.0, 'iter': step, 'step': step})
    for step, ap50 in ((20, best_ap50), (40, best_ap50 - 0.05)):
        lines.append({'all_ap': ap50 * 0.7, 'all_ap_50%': ap50, 'all_ap_25%': min(1.0, ap50 * 1.2),
                      'all_ap_75%': ap50 * 0.5, 'step': step})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(json.dumps(line) + '\n' for line in lines))


def make_run(runs: Path, arm: str, seed: int, level: float, status: str = 'finished',
             experiment: str = 's3dis-area5', metrics: bool = True, wall_s: float = 3600.0,
             config: dict | None = None, ablation: dict | None = None, dirty: bool = False,
             question: dict | None = None) -> Path:
    """One run attempt with run.json and config.json (+ metrics.json and curves.csv when finished)."""
    rng = np.random.default_rng([seed, len(arm), int(1000 * level)])
    criterion = {k.split('.', 1)[1]: v for k, v in (ablation or {}).items() if k.startswith('criterion.')}
    cfg = with_arm(copy.deepcopy(config or CONFIG), arm, criterion)   # as the runner derives it
    for key, value in (ablation or {}).items():
        if key.startswith('config.'):
            set_dotted(cfg, key.split('.', 1)[1], value)
    cfg['randomness']['seed'] = seed
    rid = records.run_id(experiment, arm, seed, ablation)
    record = records.RunRecord.create(runs, rid, experiment=experiment, arm=arm, seed=seed, ablation=ablation or {},
                                      backend='native', arm_keys=arm_keys(arm), location_keys=['data.root'])
    folder = record.folder
    env = {**record['env'], 'harness_git': {'sha': '0' * 40, 'dirty': dirty}}   # goldens must not depend on this checkout
    record.update(config=records.write_config(folder, cfg), iterations_done=40,
                  data={'root': 'data/x', 'manifest_sha256': '1' * 64}, question=question, env=env)
    record.begin_session()
    if status == 'running':
        return folder
    if status == 'failed':
        record.finish(status='failed', error='CUDA out of memory')
        return folder
    write_scalars(folder / 'vis_data' / 'scalars.json', rng, best_ap50=min(1.0, level + 0.1))
    write_curves(folder / 'vis_data' / 'scalars.json', folder)
    if metrics:
        records.write_metrics(folder, fake_metrics(rng, level))
    record.finish()
    record.update(wall_s=wall_s, timing={'train_s': wall_s, 'iters_trained': 40, 's_per_iter': wall_s / 40})
    return folder
