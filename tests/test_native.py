"""Native backend pieces: voxelisation, majority-vote GT, post-processing (pure torch, fast); its config schema."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from harness import backends
from harness.backends.native.backend import CONFIG
from harness.core import schema as sc
from harness.core.errors import HarnessError
from harness.core.tree import set_dotted

from harness.backends.native.postprocess import matrix_nms_linear, predict_instances
from harness.backends.native.voxel import voxel_gt, voxelise

TEST_CFG = dict(topk_insts=50, obj_normalization_thr=0.01, sp_score_thr=0.15, inst_score_thr=0.0, npoint_thr=2)


def test_voxelise_matches_numpy():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform(-1, 3, (500, 3)), rng.uniform(-1, 1, (500, 3))], 1).astype(np.float32)
    vox = voxelise(torch.from_numpy(pts), 0.25)
    coords = np.floor((pts[:, :3] - pts[:, :3].min(0)) / np.float32(0.25)).astype(np.int32)
    assert np.array_equal(vox.coords.numpy()[vox.inverse.numpy()], coords)  # inverse map round trip
    assert len(vox.coords) == len(np.unique(coords, axis=0))
    feats = np.concatenate([pts[:, 3:], pts[:, :3] - pts[:, :3].mean(0)], 1)
    for v in range(0, len(vox.coords), 37):
        members = (coords == vox.coords.numpy()[v]).all(1)
        assert np.allclose(vox.feats[v].numpy(), feats[members].mean(0), atol=1e-5)


def test_voxel_gt_is_a_majority_vote():
    # voxel 0: A A B -> A; voxel 1: A B -> nobody; voxel 2: B -> B
    inverse = torch.tensor([0, 0, 0, 1, 1, 2])
    instance = torch.tensor([5, 5, 9, 5, 9, 9])
    semantic = torch.tensor([8, 8, 2, 8, 2, 2])
    masks, labels, sem = voxel_gt(instance, semantic, inverse, 3, 13)
    assert masks.tolist() == [[True, False, False], [False, False, True]]
    assert labels.tolist() == [8, 2] and sem.tolist()[0] == 8 and sem.tolist()[2] == 2


def test_matrix_nms_suppresses_a_duplicate_only_of_the_same_class():
    m = torch.tensor([[1.0, 1, 1, 0, 0], [1.0, 1, 1, 0, 0], [0, 0, 0, 1.0, 1]])
    scores, labels, _ = matrix_nms_linear(m, torch.tensor([3, 3, 3]), torch.tensor([0.9, 0.8, 0.7]))
    assert scores.tolist()[0] == pytest.approx(0.9) and scores.tolist()[1] == pytest.approx(0.0)
    assert scores.tolist()[2] == pytest.approx(0.7)
    scores, _, _ = matrix_nms_linear(m, torch.tensor([3, 4, 3]), torch.tensor([0.9, 0.8, 0.7]))
    assert scores.tolist()[1] == pytest.approx(0.8)  # another class: kept


def test_predict_instances_maps_voxels_to_points_and_applies_thresholds():
    cls = torch.full((4, 14), -10.0)
    cls[0, 8] = cls[1, 2] = 10.0
    masks = torch.full((4, 6), -10.0)
    masks[0, :3] = 10.0           # 3 voxels
    masks[1, 5] = 10.0            # 1 voxel -> too few points after the map
    inverse = torch.tensor([0, 0, 1, 2, 2, 5, 4])
    out = predict_instances(cls, torch.ones(4, 1), masks, inverse, TEST_CFG)
    assert out['pred_masks'].shape[1] == 7 and out['pred_masks'].dtype == torch.bool
    assert out['pred_labels'].tolist()[0] == 8 and out['pred_masks'][0].tolist() == [1, 1, 1, 1, 1, 0, 0]
    assert (out['pred_masks'].sum(1) > TEST_CFG['npoint_thr']).all()


SMOKE = Path(__file__).parents[1] / 'baselines' / 'smoke-native.yaml'


def _smoke_config() -> dict:
    return yaml.safe_load(SMOKE.read_text())['config']


@pytest.mark.parametrize('key, value, text', [
    ('model.num_classes', 20, 'config.model.num_classes: 20 must be 13'),
    ('model.decoder.n_sem', 5, 'config.model.decoder.n_sem: 5 must be 13'),
    ('model.backbone.in_channels', 3, 'config.model.backbone.in_channels: 3 must be 6 (each point is xyz + rgb)'),
    ('train.lr', float('inf'), 'config.train.lr: inf must be a finite number > 0'),
    ('train.lr', float('nan'), 'config.train.lr: nan must be a finite number > 0'),
    ('train.weight_decay', float('inf'), 'config.train.weight_decay: inf must be a finite number >= 0'),
    ('model.voxel_size', float('-inf'), 'config.model.voxel_size: -inf must be a finite number > 0'),
    ('model.criterion.sem_loss_weight', float('inf'), 'sem_loss_weight: inf must be a finite number >= 0'),
])
def test_the_native_config_refuses_what_the_data_cannot_train(key, value, text):
    cfg = _smoke_config()
    sc.validate(cfg, CONFIG, 'spec.yaml: config')   # the committed smoke config is valid
    set_dotted(cfg, key, value, where='test')
    with pytest.raises(HarnessError, match=re.escape(text)):
        sc.validate(cfg, CONFIG, 'spec.yaml: config')


def test_schema_numbers_are_finite_and_keep_their_messages():
    for check in (sc.positive, sc.non_negative, sc.fraction):
        assert check(float('inf')) and check(float('nan')) and check(float('-inf'))
        assert check(True) and check('1')
    assert sc.positive(float('inf')) == 'must be a finite number > 0'
    assert sc.positive(-1.0) == sc.positive('1e-3x') == 'must be a number > 0'   # the messages the fault cases quote
    assert sc.non_negative(-5) == 'must be a number >= 0' and sc.fraction(2) == 'must be a number in [0, 1]'
    assert sc.positive(10 ** 400) is None and sc.positive(1e-3) is None and sc.non_negative(0) is None
    assert sc.exactly(13, 'why')(13) is None and sc.exactly(13, 'why')(True) and sc.exactly(13, 'why')(13.0)


def test_points_per_room_have_an_upper_bound_with_its_reason(tmp_path):
    for where in ('data.num_points', 'data.synth.points_per_room'):
        spec = yaml.safe_load(SMOKE.read_text())
        set_dotted(spec, where, 10 ** 12, where='test')
        (tmp_path / 'bad.yaml').write_text(yaml.safe_dump(spec))
        with pytest.raises(HarnessError, match=re.escape(f'{where}: 1000000000000 must be an integer in '
                                                         '1..10,000,000 (S3DIS rooms hold')):
            backends.load(tmp_path / 'bad.yaml')
