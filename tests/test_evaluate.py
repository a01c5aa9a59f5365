"""Instance AP: upstream's S3DIS protocol exactly (quirks included), plus AP@75."""
import copy

import numpy as np
import pytest
import torch

from harness.evaluation.ap import OVERLAPS, evaluate_instances

from upstream_ref import upstream_module

NAMES = ['ceiling', 'floor', 'wall', 'beam', 'column', 'window', 'door',
         'table', 'chair', 'sofa', 'bookcase', 'board', 'clutter']


def scene(sem, inst, preds):
    """preds: list of (point indices, label, score)."""
    n = len(sem)
    masks = np.zeros((len(preds), n), bool)
    for i, (idx, _, _) in enumerate(preds):
        masks[i, idx] = True
    return {'gt_semantic': np.asarray(sem), 'gt_instance': np.asarray(inst), 'pred_masks': masks,
            'pred_labels': np.array([p[1] for p in preds], dtype=np.int64),
            'pred_scores': np.array([p[2] for p in preds], dtype=float)}


def blocks(*spec):
    """Consecutive GT instances: spec = (class, n_points) ...; raw ids 1..K."""
    sem = np.concatenate([[c] * n for c, n in spec])
    inst = np.concatenate([[k + 1] * n for k, (_, n) in enumerate(spec)])
    starts = np.cumsum([0] + [n for _, n in spec])
    return sem, inst, [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:])]


def test_perfect_predictions_score_one_and_missing_classes_are_nan():
    sem, inst, idx = blocks((0, 300), (2, 200), (8, 150), (8, 120))
    out = evaluate_instances([scene(sem, inst, [(i, c, 0.9) for i, c in zip(idx, (0, 2, 8, 8))])], NAMES)
    assert out['ap'] == out['ap50'] == out['ap25'] == out['ap75'] == 1.0
    assert out['per_class']['chair'] == {'ap': 1.0, 'ap50': 1.0, 'ap25': 1.0, 'ap75': 1.0}
    assert np.isnan(out['per_class']['sofa']['ap50'])
    assert out['ap_table'].shape == (13, 10)


def test_duplicate_is_a_false_positive_with_the_lower_score():
    sem, inst, idx = blocks((8, 200), (8, 200))
    preds = [(idx[0], 8, 0.9), (idx[0], 8, 0.8), (idx[1], 8, 0.5)]
    # scores sorted: 0.5 (TP), 0.8 (FP), 0.9 (TP): precision [2/3, 1/2, 1, 1],
    # recall [1, 1/2, 1/2, 0], step widths all 1/4 -> AP = 19/24.
    out = evaluate_instances([scene(sem, inst, preds)], NAMES)
    assert out['per_class']['chair']['ap50'] == pytest.approx(19 / 24, abs=1e-12)
    no_dup = evaluate_instances([scene(sem, inst, [preds[0], preds[2]])], NAMES)
    assert no_dup['per_class']['chair']['ap50'] == 1.0


@pytest.mark.parametrize('n_points, drops', [(99, False), (100, True)])
def test_predictions_under_100_points_are_ignored(n_points, drops):
    sem, inst, idx = blocks((8, 200), (1, 400))
    stray = (np.arange(200, 200 + n_points), 8, 0.95)  # on the floor, labelled chair
    out = evaluate_instances([scene(sem, inst, [(idx[0], 8, 0.9), stray])], NAMES)
    assert (out['per_class']['chair']['ap50'] < 1.0) == drops


def test_class_without_gt_is_nan_and_left_out_of_the_means():
    sem, inst, idx = blocks((8, 200), (1, 400))
    preds = [(idx[0], 8, 0.9), (idx[1], 9, 0.7)]  # floor predicted as sofa: no sofa GT
    out = evaluate_instances([scene(sem, inst, preds)], NAMES)
    assert np.isnan(out['per_class']['sofa']['ap50'])
    assert out['per_class']['floor']['ap50'] == 0.0
    assert out['ap50'] == pytest.approx((1.0 + 0.0) / 2)


def test_ceiling_quirk_ignores_overlap_with_gt_ids_below_1000():
    """An unmatched prediction lying 75% on a GT counts as FP only at thresholds >= 0.75,
    if that GT is a ceiling (renamed id < 1000); for the floor (id >= 1000) always."""
    sem, inst, idx = blocks((0, 2000), (1, 2000), (2, 200))
    outside = idx[2][:100]  # 300 GT points + 100 others: IoU 300/2100, never a match
    # the partial predictions score higher than the exact ones, so an FP lowers AP
    preds = [(np.concatenate([idx[0][:300], outside]), 0, 0.9), (idx[0], 0, 0.5),
             (np.concatenate([idx[1][:300], outside]), 1, 0.9), (idx[1], 1, 0.5)]
    table = evaluate_instances([scene(sem, inst, preds)], NAMES)['ap_table']
    fp_at = OVERLAPS >= 0.75
    assert (table[0, ~fp_at] == 1.0).all() and (table[0, fp_at] < 1.0).all()
    assert (table[1] < 1.0).all()


def test_ap75_is_the_075_threshold():
    sem, inst, idx = blocks((8, 1000))
    pred = idx[0][:760]  # IoU 0.76: true positive up to 0.75, missed from 0.80
    out = evaluate_instances([scene(sem, inst, [(pred, 8, 0.9)])], NAMES)
    assert out['per_class']['chair']['ap75'] == 1.0
    assert out['ap_table'][8].tolist() == [1, 1, 1, 1, 1, 1, 0, 0, 0, 1]


def test_inputs_are_not_modified():
    sem, inst, idx = blocks((0, 300), (8, 200))
    s = scene(sem, inst, [(idx[1], 8, 0.9), (idx[0], 0, 0.3)])
    before = copy.deepcopy(s)
    evaluate_instances([s], NAMES)
    for key in s:
        assert np.array_equal(s[key], before[key])


def test_bad_input_is_a_clear_error():
    sem, inst, idx = blocks((8, 200))
    s = scene(sem, inst, [(idx[0], 13, 0.9)])
    with pytest.raises(ValueError, match='pred_labels must be in 0..12'):
        evaluate_instances([s], NAMES)
    s = scene(sem, inst, [(idx[0], 8, 0.9)])
    s['gt_semantic'] = s['gt_semantic'].copy()
    s['gt_semantic'][0] = 7
    with pytest.raises(ValueError, match='several semantic labels'):
        evaluate_instances([s], NAMES)


def shuffled(s, rng):
    """The same scene with its points in another order (GT no longer in contiguous runs)."""
    perm = rng.permutation(len(s['gt_semantic']))
    return {**s, 'gt_semantic': s['gt_semantic'][perm], 'gt_instance': s['gt_instance'][perm],
            'pred_masks': s['pred_masks'][:, perm]}


def random_scene(rng):
    """Rooms with small GTs, ceilings, duplicates, noisy and tiny predictions, tied scores."""
    n_inst = rng.integers(3, 25)
    sizes = rng.integers(30, 900, n_inst)
    sem = np.repeat(rng.integers(0, 13, n_inst), sizes)
    inst = np.repeat(rng.permutation(n_inst) + 1, sizes)
    n = len(sem)
    preds = []
    for _ in range(rng.integers(0, 40)):
        k = rng.integers(1, n_inst + 1)
        base = np.flatnonzero(inst == k)
        kind = rng.integers(0, 4)
        if kind == 0:     # noisy copy of a GT
            keep = base[rng.random(len(base)) < rng.uniform(0.3, 1.0)]
            idx = np.union1d(keep, rng.integers(0, n, rng.integers(0, 200)))
        elif kind == 1:   # random blob
            start = rng.integers(0, n)
            idx = np.arange(start, min(n, start + rng.integers(50, 1200)))
        elif kind == 2:   # exact copy (duplicates across predictions)
            idx = base
        else:             # scattered points
            idx = rng.choice(n, rng.integers(1, 400), replace=False)
        label = int(sem[base[0]]) if rng.random() < 0.7 else int(rng.integers(0, 13))
        preds.append((idx, label, float(rng.choice([0.1, 0.5, 0.9])) if rng.random() < 0.3 else float(rng.random())))
    preds.sort(key=lambda p: -p[2])
    out = scene(sem, inst, preds)
    return shuffled(out, rng) if rng.random() < 0.4 else out


@pytest.mark.parametrize('seed', range(4))
def test_point_order_does_not_matter(seed):
    """Contiguous GT (segment sums) and shuffled GT (bincount path) give identical results."""
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(3)]
    a = evaluate_instances(scenes, NAMES)['ap_table']
    b = evaluate_instances([shuffled(s, rng) for s in scenes], NAMES)['ap_table']
    assert np.array_equal(a, b, equal_nan=True)


def test_empty_room_is_fine():
    empty = scene(np.zeros(0, int), np.zeros(0, int), [])
    sem, inst, idx = blocks((8, 200))
    out = evaluate_instances([empty, scene(sem, inst, [(idx[0], 8, 0.9)])], NAMES)
    assert out['ap50'] == 1.0


def upstream_metrics(scenes):
    up = upstream_module('instance_seg_eval')
    return up.instance_seg_eval(
        [s['gt_semantic'].copy() for s in scenes], [s['gt_instance'].copy() for s in scenes],
        [torch.from_numpy(s['pred_masks']) for s in scenes],
        [torch.from_numpy(s['pred_labels']) for s in scenes],
        [torch.from_numpy(s['pred_scores']) for s in scenes],
        valid_class_ids=tuple(range(13)), class_labels=NAMES)


@pytest.mark.parametrize('seed', range(10))
def test_equals_upstream_evaluator(seed):
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(int(rng.integers(1, 6)))]
    theirs = upstream_metrics(scenes)
    ours = evaluate_instances(scenes, NAMES)
    pairs = [(ours['ap'], theirs['all_ap']), (ours['ap50'], theirs['all_ap_50%']),
             (ours['ap25'], theirs['all_ap_25%'])]
    for name in NAMES:
        c = theirs['classes'][name]
        pairs += [(ours['per_class'][name][k], c[u]) for k, u in (('ap', 'ap'), ('ap50', 'ap50%'), ('ap25', 'ap25%'))]
    for a, b in pairs:
        assert (np.isnan(a) and np.isnan(b)) or abs(a - b) <= 1e-9, (a, b)


def test_instance_weighted_ap50_weighs_every_counted_gt_alike():
    """Three chairs found, one wall missed: class mean 0.5, per GT 3 of 4; GTs under 100 points not counted."""
    sem, inst, idx = blocks((8, 200), (8, 150), (8, 120), (2, 300), (8, 50))
    out = evaluate_instances([scene(sem, inst, [(i, 8, 0.9) for i in idx[:3]])], NAMES)
    assert out['per_class']['chair']['ap50'] == 1.0 and out['per_class']['wall']['ap50'] == 0.0
    assert out['ap50'] == pytest.approx(0.5)
    assert out['gt_counted']['chair'] == 3 and out['gt_counted']['wall'] == 1 and out['gt_counted']['sofa'] == 0
    assert out['ap50_instance_weighted'] == pytest.approx(0.75)


def test_instance_id_0_is_no_instance_whatever_its_label():
    """Raw id 0 (unannotated in mmdet3d's layout) is never a GT: a room of id-0 chair points has no chair GT
    (upstream renamed it into one GT per class, which a room-sized prediction then matched: AP 1.0)."""
    sem, inst = np.full(500, 8), np.zeros(500, int)
    room = scene(sem, inst, [(np.arange(500), 8, 0.9)])
    out = evaluate_instances([room], NAMES)
    assert np.isnan(out['per_class']['chair']['ap50']) and out['gt_counted']['chair'] == 0
    mixed = scene(np.repeat([8, 2], 250), inst, [(np.arange(500), 8, 0.9)])   # mixed labels under id 0: no error
    assert np.isnan(evaluate_instances([mixed], NAMES)['ap50'])


def test_id_0_points_beside_real_instances_change_nothing_for_them():
    sem, inst, idx = blocks((8, 200), (2, 300))
    with_unannotated = scene(np.r_[sem, np.full(150, 8)], np.r_[inst, np.zeros(150, int)],
                             [(idx[0], 8, 0.9), (idx[1], 2, 0.8)])
    out = evaluate_instances([with_unannotated], NAMES)
    assert out['ap50'] == 1.0 and out['gt_counted']['chair'] == 1
