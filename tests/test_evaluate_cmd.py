"""python -m harness evaluate: prepared GT + dumped predictions -> metrics.json."""
import json

import numpy as np
import pytest

from harness.cli import main
from harness.data import CLASS_NAMES
from harness.evaluation.ap import evaluate_instances
from harness.evaluation.predictions import save_predictions


def write_room(root, name, sem, inst, seed=0):
    """A prepared room in mmdet3d's layout (headerless little-endian .bin files)."""
    rng = np.random.default_rng(seed)
    for sub, arr in (('points', rng.random((len(sem), 6), dtype=np.float32)),
                     ('semantic_mask', np.asarray(sem, np.int64)),
                     ('instance_mask', np.asarray(inst, np.int64))):
        (root / sub).mkdir(parents=True, exist_ok=True)
        arr.tofile(root / sub / f'{name}.bin')


@pytest.fixture
def dataset(tmp_path):
    """Two Area_5 rooms (one perfectly predicted, one half) and one Area_1 room."""
    root, preds = tmp_path / 's3dis', tmp_path / 'preds'
    sem = np.repeat([2, 8, 8, 12], [400, 150, 250, 300])
    inst = np.repeat([1, 2, 3, 4], [400, 150, 250, 300])
    scenes = {}
    for name, n_pred in (('Area_5_office_1', 4), ('Area_5_hallway_2', 2)):
        write_room(root, name, sem, inst)
        masks = np.stack([inst == k + 1 for k in range(n_pred)])
        labels, scores = np.array([2, 8, 8, 12][:n_pred]), np.linspace(0.9, 0.5, n_pred)
        save_predictions(preds / f'{name}.npz', masks, labels, scores)
        scenes[name] = {'gt_semantic': sem, 'gt_instance': inst, 'pred_masks': masks,
                        'pred_labels': labels, 'pred_scores': scores.astype(np.float32)}
    write_room(root, 'Area_1_office_1', sem, inst)
    return root, preds, [scenes[k] for k in sorted(scenes)]


def evaluate(root, preds, *extra):
    return main(['evaluate', str(preds), '--data', str(root), '--area', '5', *extra])


def test_writes_metrics_equal_to_the_api(dataset, tmp_path, capsys):
    root, preds, scenes = dataset
    out = tmp_path / 'metrics.json'
    assert evaluate(root, preds, '--out', str(out)) == 0
    metrics = json.loads(out.read_text())
    expected = evaluate_instances(scenes, CLASS_NAMES)
    for key in ('ap', 'ap50', 'ap25', 'ap75'):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-12)
    assert metrics['per_class']['sofa']['ap50'] is None  # NaN -> null
    assert metrics['n_rooms'] == 2 and len(metrics['ap_table']) == 13
    printed = capsys.readouterr().out
    assert 'chair' in printed and printed.strip().splitlines()[-1].startswith('RESULT {"verb": "evaluate"')


def test_missing_room_is_an_error_listing_it(dataset, capsys):
    root, preds, _ = dataset
    (preds / 'Area_5_hallway_2.npz').unlink()
    assert evaluate(root, preds) == 2
    assert 'no predictions for 1 of 2 Area_5 rooms: Area_5_hallway_2' in capsys.readouterr().err


def test_unknown_room_is_an_error(dataset, capsys):
    root, preds, _ = dataset
    (preds / 'Area_5_office_1.npz').rename(preds / 'Area_5_office_9.npz')
    assert evaluate(root, preds) == 2
    assert 'Area_5_office_1' in capsys.readouterr().err


def test_wrong_point_count_names_the_file(dataset, capsys):
    root, preds, _ = dataset
    save_predictions(preds / 'Area_5_office_1.npz', np.ones((1, 99), bool), [2], [0.5], overwrite=True)
    assert evaluate(root, preds) == 2
    err = capsys.readouterr().err
    assert 'Area_5_office_1.npz: masks over 99 points' in err


def test_existing_metrics_are_not_overwritten(dataset, tmp_path, capsys):
    root, preds, _ = dataset
    out = tmp_path / 'metrics.json'
    out.write_text('mine')
    assert evaluate(root, preds, '--out', str(out)) == 2
    assert out.read_text() == 'mine'
    assert evaluate(root, preds, '--out', str(out), '--force') == 0


def test_corrupt_prediction_file_names_it(dataset, capsys):
    root, preds, _ = dataset
    (preds / 'Area_5_office_1.npz').write_bytes(b'not a zip')
    assert evaluate(root, preds) == 2
    assert 'Area_5_office_1.npz: not a prediction file' in capsys.readouterr().err


def test_truncated_prediction_file_names_it(dataset, capsys):
    root, preds, _ = dataset
    path = preds / 'Area_5_office_1.npz'
    path.write_bytes(path.read_bytes()[:300])
    assert evaluate(root, preds) == 2
    assert 'Area_5_office_1.npz: not a prediction file' in capsys.readouterr().err


@pytest.mark.parametrize('force', [[], ['--force']])
def test_out_folder_is_refused_before_evaluating(dataset, tmp_path, capsys, monkeypatch, force):
    root, preds, _ = dataset
    out = tmp_path / 'metrics'
    (out / 'mine').mkdir(parents=True)
    monkeypatch.setattr('harness.verbs.evaluate.evaluate_folder',
                        lambda *a: pytest.fail('evaluated before checking --out'))
    assert evaluate(root, preds, '--out', str(out), *force) == 2
    assert f'{out}: is a folder where a file is expected' in capsys.readouterr().err
    assert (out / 'mine').is_dir()


def test_out_under_a_file_is_refused_before_evaluating(dataset, tmp_path, capsys, monkeypatch):
    root, preds, _ = dataset
    (tmp_path / 'a-file').write_text('mine')
    monkeypatch.setattr('harness.verbs.evaluate.evaluate_folder',
                        lambda *a: pytest.fail('evaluated before checking --out'))
    assert evaluate(root, preds, '--out', str(tmp_path / 'a-file' / 'metrics.json')) == 2
    assert 'a-file: cannot write there (a part of this path is a file' in capsys.readouterr().err
    assert (tmp_path / 'a-file').read_text() == 'mine'
