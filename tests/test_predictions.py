"""Prediction dump format: bit-packed masks round-trip exactly."""
import numpy as np
import pytest

from harness.core.errors import HarnessError
from harness.evaluation.predictions import load_predictions, prediction_files, save_predictions


@pytest.mark.parametrize('n_points', [1, 8, 1001])
def test_round_trip(tmp_path, n_points):
    rng = np.random.default_rng(n_points)
    masks = rng.random((5, n_points)) < 0.3
    path = save_predictions(tmp_path / 'Area_5_x.npz', masks, np.arange(5), rng.random(5))
    back = load_predictions(path)
    assert np.array_equal(back['pred_masks'], masks)
    assert back['pred_labels'].tolist() == list(range(5))
    assert prediction_files(tmp_path) == {'Area_5_x': path}


def test_wrong_format_is_a_clear_error(tmp_path):
    path = tmp_path / 'a.npz'
    np.savez(path, format=np.array('something-else'), n_points=np.int64(3),
             masks=np.zeros((1, 1), np.uint8), labels=np.zeros(1), scores=np.zeros(1))
    with pytest.raises(HarnessError, match='a.npz: format something-else'):
        load_predictions(path)


def test_shape_mismatch_is_rejected(tmp_path):
    with pytest.raises(ValueError, match='expected'):
        save_predictions(tmp_path / 'a.npz', np.zeros((2, 5), bool), [1], [0.5])


def _truncated(path):
    path.write_bytes(path.read_bytes()[:3000])


def _bare_array(path):
    np.save(open(path, 'wb'), np.zeros(3))   # np.save under a .npz name: np.load returns an ndarray


def _two_point_counts(path):
    fields = dict(np.load(path))
    fields['n_points'] = np.array([fields['n_points'], fields['n_points']])
    np.savez(path, **fields)


@pytest.mark.parametrize('damage', [_truncated, _bare_array, _two_point_counts])
def test_damaged_file_is_not_a_prediction_file(tmp_path, damage):
    """Each of these used to escape as a traceback (BadZipFile, TypeError, TypeError)."""
    path = save_predictions(tmp_path / 'a.npz', np.ones((3, 40000), bool), [1, 2, 3], [0.1, 0.2, 0.3])
    damage(path)
    with pytest.raises(HarnessError, match=r'a.npz: not a prediction file \(.+\); re-dump the predictions'):
        load_predictions(path)
