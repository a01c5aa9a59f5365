"""What our upstream test config adds to OneFormer3D's tools/test.py, through ``custom_imports``.

* ``InfluencerPredictionDump`` (a metric): writes every room's instance
  predictions in our format (harness/evaluation/predictions.py), so that our evaluator
  scores exactly what upstream's model predicted.
* ``InfluencerMetricsDump`` (a hook): writes the metrics the test loop
  computed (upstream's ``all_ap``, ``all_ap_50%``, ``all_ap_25%``, ...) to a
  JSON file, for the built-in cross-check of our evaluator on every run.
* ``InfluencerDivergenceCheck`` (a hook, added for every arm alike): stops
  training at the first non-finite loss and leaves ``DIVERGED.json`` (the
  iteration, the last finite loss) in the work dir for the harness to report.

All three are registered in mmdet3d's registries under names upstream does not use.
Importing this module also applies the spconv CPU backward shim when no GPU
is visible (spconv's backward asks for a CUDA stream), so upstream's training runs on a CPU
(the user's CI image) without touching upstream code; with CUDA it does nothing.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from mmdet3d.registry import HOOKS, METRICS
from mmengine.dist import is_main_process
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook

from harness.core.io import atomic_write
from harness.backends.spconv_shim import apply_cpu_stream_shim
from harness.evaluation.predictions import save_predictions

apply_cpu_stream_shim()


@METRICS.register_module(name='InfluencerPredictionDump')
class PredictionDump(BaseMetric):
    """Dump ``pred_pts_seg`` instance predictions to ``<out_dir>/<room>.npz``.

    Reads per data sample: ``lidar_path`` (room = file stem), and
    ``pred_pts_seg`` with ``pts_instance_mask[0]`` bool (P, N) over the raw
    points, ``instance_labels`` int (P,), ``instance_scores`` float (P,).
    """

    default_prefix = 'dump'

    def __init__(self, out_dir: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.out_dir = Path(out_dir)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample['pred_pts_seg']
            room = Path(sample['lidar_path']).stem
            masks = pred['pts_instance_mask'][0]
            save_predictions(self.out_dir / f'{room}.npz', masks, pred['instance_labels'],
                             pred['instance_scores'])
            self.results.append(len(masks))

    def compute_metrics(self, results: list) -> dict[str, float]:
        """How many rooms were dumped (a sanity number in upstream's log)."""
        return {'rooms': float(len(results))}


@HOOKS.register_module(name='InfluencerMetricsDump')
class MetricsDump(Hook):
    """Write the test loop's metrics dict to ``out_file`` (JSON, floats; NaN as null)."""

    priority = 'LOWEST'

    def __init__(self, out_file: str):
        self.out_file = Path(out_file)

    def after_test_epoch(self, runner: Any, metrics: dict | None = None) -> None:
        if not is_main_process() or metrics is None:
            return
        plain = {k: _number(v) for k, v in metrics.items()}
        atomic_write(self.out_file, json.dumps(plain, indent=1) + '\n', overwrite=True)


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


@HOOKS.register_module(name='InfluencerDivergenceCheck')
class DivergenceCheck(Hook):
    """Raise at the first non-finite training loss; write ``<work_dir>/DIVERGED.json`` first."""

    priority = 'VERY_HIGH'   # before the logger and the checkpoint: a NaN step is never saved

    def __init__(self) -> None:
        self.last_finite: float | None = None

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        loss = outputs.get('loss') if isinstance(outputs, dict) else None
        if loss is None:
            return
        value = float(loss.detach()) if hasattr(loss, 'detach') else float(loss)
        if math.isfinite(value):
            self.last_finite = value
            return
        if is_main_process():
            atomic_write(Path(runner.work_dir) / 'DIVERGED.json',
                         json.dumps({'iteration': runner.iter + 1, 'loss': str(value),
                                     'last_finite': self.last_finite}) + '\n', overwrite=True)
        raise FloatingPointError(f'loss became {value} at iteration {runner.iter + 1}')
