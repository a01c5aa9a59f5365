"""InfluencerCriterion: OneFormer3D's inst_criterion interface, matching-free."""
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from influencerformer import InfluencerCriterion, MaskInfluencerLoss

from helpers import Inst, make_insts, make_pred

# The mission's block (loss_weight read as [cls, influencer, score]).
MISSION = dict(loss_weight=[0.5, 1.0, 1.0], num_classes=13, non_object_weight=0.05,
               attr_weight=1.0, rep_weight=1.0, bg_weight=1.0, rep_margin=1.0,
               temperature=1.0, iter_matcher=True)
COMPONENTS = {'inst_cls', 'inst_attr', 'inst_rep', 'inst_bg', 'inst_excl', 'inst_score'}


def run(pred, insts, **kw):
    return InfluencerCriterion(**{**MISSION, **kw})(pred, insts)


def test_keys_and_only_the_total_is_a_loss():
    out = run(make_pred([300, 200], 12), make_insts([300, 200], [4, 6]))
    assert set(out) == {'inst_loss'} | COMPONENTS
    assert [k for k in out if 'loss' in k] == ['inst_loss']  # mmengine sums 'loss' keys
    assert out['inst_loss'].requires_grad
    assert not any(out[k].requires_grad for k in COMPONENTS)


def test_total_is_weighted_sum_of_components():
    kw = dict(loss_weight=[0.3, 1.7, 0.9], attr_weight=0.6, rep_weight=1.4, bg_weight=2.0, excl_weight=0.7)
    out = run(make_pred([300, 200], 12), make_insts([300, 200], [4, 6]), **kw)
    w = kw['loss_weight']
    assert out['inst_excl'] > 0
    influencer = 0.6 * out['inst_attr'] + 1.4 * out['inst_rep'] + 2.0 * out['inst_bg'] + 0.7 * out['inst_excl']
    expected = w[0] * out['inst_cls'] + w[1] * influencer + w[2] * out['inst_score']
    assert torch.allclose(out['inst_loss'].detach(), expected, atol=1e-5)


def test_aux_layers_get_the_same_loss_summed():
    pred = make_pred([250, 180], 10, n_aux=0)
    insts = make_insts([250, 180], [3, 5])
    single = run(pred, insts)['inst_loss']
    pred['aux_outputs'] = [{k: pred[k] for k in ('cls_preds', 'scores', 'masks')}] * 3
    assert torch.allclose(run(pred, insts)['inst_loss'], 4 * single)


def test_influencer_part_is_the_batch_mean_of_the_scene_loss():
    pred = make_pred([250, 180], 10, n_aux=0)
    insts = make_insts([250, 180], [3, 5])
    out = run(pred, insts, loss_weight=[0.0, 1.0])
    scene = [MaskInfluencerLoss()(m, i.sp_masks)['loss'] for m, i in zip(pred['masks'], insts)]
    assert torch.allclose(out['inst_loss'], torch.stack(scene).mean())


def two_query_scene():
    """GT0 = points 0..19 (label 4), GT1 = points 20..49 (label 9), 50..59 background."""
    sp = torch.zeros(2, 60, dtype=torch.bool)
    sp[0, :20] = True
    sp[1, 20:50] = True
    masks = torch.full((3, 60), -3.0)
    masks[0, 20:50] = 4.0      # query 0 covers GT1 exactly
    masks[1, :10] = 2.0        # query 1: mean logit over GT0 = (10*2 - 10*3)/20 < 0
    masks[2, :20] = 5.0        # query 2 covers GT0 and 10 background points
    masks[2, 50:] = 5.0
    return masks, Inst(sp, torch.tensor([4, 9]))


def test_class_targets_follow_the_highest_mean_logit():
    masks, inst = two_query_scene()
    cls = torch.randn(3, 14)
    pred = {'cls_preds': [cls], 'scores': None, 'masks': [masks]}
    out = run(pred, [inst], loss_weight=[1.0, 0.0])
    target = torch.tensor([9, 13, 4])  # query 1 -> no-object
    expected = F.cross_entropy(cls, target, torch.tensor([1.0] * 13 + [0.05]))
    assert torch.allclose(out['inst_loss'], expected)


def test_score_head_is_trained_on_iou_of_assigned_queries():
    masks, inst = two_query_scene()
    score = torch.zeros(3, 1, requires_grad=True)
    pred = {'cls_preds': [torch.randn(3, 14)], 'scores': [score], 'masks': [masks]}
    out = run(pred, [inst], loss_weight=[0.0, 0.0, 1.0])
    # query 0: IoU 1 with GT1; query 1: unassigned; query 2: IoU 20/30 with GT0
    ious = torch.tensor([1.0, 20 / 30])
    assert torch.allclose(out['inst_loss'], (ious ** 2).mean(), atol=1e-5)
    out['inst_loss'].backward()
    assert score.grad[0, 0] < 0 and score.grad[2, 0] < 0 and score.grad[1, 0] == 0


def test_two_weights_mean_no_score_loss():
    pred = make_pred([100], 6)
    out = run(pred, make_insts([100], [3]), loss_weight=[0.5, 1.0])
    out['inst_loss'].backward()
    assert all(s.grad is None for s in pred['scores'])


@pytest.mark.parametrize('bad', [[1.0], [1.0, 1.0, 1.0, 1.0]])
def test_wrong_loss_weight_length_is_a_clear_error(bad):
    with pytest.raises(ValueError, match='loss_weight'):
        InfluencerCriterion(**{**MISSION, 'loss_weight': bad})


def test_missing_scores_empty_scene_and_backward():
    pred = make_pred([120, 90], 8)
    pred['scores'] = None
    for aux in pred['aux_outputs']:
        aux['scores'] = [None, None]
    insts = make_insts([120, 90], [3, 0])
    out = run(pred, insts)
    out['inst_loss'].backward()
    assert all(torch.isfinite(m.grad).all() for m in pred['masks'])
    assert float(out['inst_score']) == 0.0


def test_runs_under_bf16_autocast():
    pred = make_pred([200, 150], 10, dtype=torch.bfloat16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = run(pred, make_insts([200, 150], [4, 2]))
    assert out['inst_loss'].dtype == torch.float32
    out['inst_loss'].backward()
    assert torch.isfinite(out['inst_loss'])


def test_importing_the_package_imports_no_mm_package():
    code = ('import sys, influencerformer; '
            "bad = sorted({m.split('.')[0] for m in sys.modules} & {'mmengine', 'mmcv', 'mmdet', 'mmdet3d'}); "
            'print(bad); sys.exit(bool(bad))')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_custom_imports_registers_the_criteria(tmp_path):
    pytest.importorskip('mmdet3d.registry')
    cfg = tmp_path / 'child.py'
    cfg.write_text("custom_imports = dict(imports=['influencerformer.mmdet3d_plugin'])\n"
                   f'inst_criterion = dict(type="InfluencerCriterion", **{MISSION!r})\n')
    # Fresh interpreter: registration must come from custom_imports alone.
    code = textwrap.dedent(f'''
        from mmengine.config import Config
        from mmdet3d.registry import MODELS
        assert 'InfluencerCriterion' not in MODELS.module_dict
        cfg = Config.fromfile({str(cfg)!r})
        kwargs = dict(cfg.inst_criterion)
        cls = MODELS.module_dict[kwargs.pop('type')]
        crit = cls(**kwargs)
        print(type(crit).__module__, sorted(k for k in MODELS.module_dict if k.endswith('Criterion')))
    ''')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'influencerformer.criterion' in proc.stdout
    from influencerformer import registry
    for entry in registry.CRITERIA:   # every entry of the one registry, never an alias over upstream's name
        assert repr(entry.type) in proc.stdout
    assert "'InstanceCriterion'" not in proc.stdout
