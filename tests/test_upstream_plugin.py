"""The test-time dumps our upstream test config adds (registered via custom_imports)."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip('mmdet3d.registry')
pytest.importorskip('spconv')

from harness.backends.upstream import plugin as upstream_plugin  # noqa: E402
from harness.evaluation.predictions import load_predictions  # noqa: E402


def test_registered_under_our_names():
    from mmdet3d.registry import HOOKS, METRICS
    assert METRICS.module_dict['InfluencerPredictionDump'] is upstream_plugin.PredictionDump
    assert HOOKS.module_dict['InfluencerMetricsDump'] is upstream_plugin.MetricsDump


def test_prediction_dump_writes_our_format(tmp_path):
    rng = np.random.default_rng(0)
    masks = rng.random((5, 37)) > 0.5
    sample = {'lidar_path': 'data/s3dis/points/Area_5_office_1.bin',
              'pred_pts_seg': {'pts_instance_mask': [masks, np.zeros(37)], 'instance_labels': np.arange(5),
                               'instance_scores': np.linspace(1, 0, 5, dtype=np.float32)}}
    metric = upstream_plugin.PredictionDump(out_dir=str(tmp_path))
    metric.process({}, [sample])
    got = load_predictions(tmp_path / 'Area_5_office_1.npz')
    np.testing.assert_array_equal(got['pred_masks'], masks)
    np.testing.assert_array_equal(got['pred_labels'], np.arange(5))
    assert metric.compute_metrics(metric.results) == {'rooms': 1.0}


def test_metrics_dump_writes_json_with_nan_as_null(tmp_path):
    hook = upstream_plugin.MetricsDump(out_file=str(tmp_path / 'm.json'))
    hook.after_test_epoch(None, {'all_ap': 0.25, 'all_ap_50%': float('nan'), 'name': 'x'})
    assert json.loads((tmp_path / 'm.json').read_text()) == {'all_ap': 0.25, 'all_ap_50%': None, 'name': None}
