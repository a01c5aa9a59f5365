"""HungarianCriterion: upstream InstanceCriterion semantics, quirks included."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from influencerformer import HungarianCriterion
from influencerformer.hungarian import (HungarianMatcher, mask_bce_cost, mask_dice_cost,
                                        mask_dice_loss)

from helpers import Inst, leaves, make_insts, make_pred, partition_masks
from upstream_ref import upstream_module

COSTS = [dict(type='QueryClassificationCost', weight=0.5),
         dict(type='MaskBCECost', weight=1.0),
         dict(type='MaskDiceCost', weight=1.0)]
# The S3DIS Area-5 config's inst_criterion block.
S3DIS = dict(matcher=dict(type='HungarianMatcher', costs=COSTS), loss_weight=[0.5, 1.0, 1.0, 0.5],
             num_classes=13, non_object_weight=0.05, fix_dice_loss_weight=True,
             iter_matcher=True, fix_mean_loss=True)


def test_costs_equal_per_pair_formulas():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 50, generator=gen) * 3
    gt = partition_masks(50, 3, 0.2, gen).float()
    bce, dice = mask_bce_cost(x, gt, None), mask_dice_cost(x, gt, None)
    for m, k in itertools.product(range(4), range(3)):
        want_bce = F.binary_cross_entropy_with_logits(x[m], gt[k])
        p = x[m].sigmoid()
        want_dice = 1 - (2 * (p * gt[k]).sum() + 1) / (p.sum() + gt[k].sum() + 1)
        assert torch.allclose(bce[m, k], want_bce, atol=1e-6)
        assert torch.allclose(dice[m, k], want_dice, atol=1e-6)


def test_the_matcher_cost_is_the_definitions_sum():
    """The fused one-sweep BCE + Dice equals the per-cost definitions (to float rounding)."""
    gen = torch.Generator().manual_seed(3)
    cls, x = torch.randn(6, 14, generator=gen), torch.randn(6, 300, generator=gen) * 4
    labels, gt = torch.tensor([3, 7, 3, 1]), partition_masks(300, 4, 0.1, gen).float()
    want = (-0.5 * cls.softmax(-1)[:, labels] + mask_bce_cost(x, gt, None) + mask_dice_cost(x, gt, None))
    assert torch.allclose(HungarianMatcher(COSTS).cost(cls, x, labels, gt), want, atol=1e-5)


def test_matching_minimises_the_summed_cost():
    gen = torch.Generator().manual_seed(1)
    cls, x = torch.randn(5, 14, generator=gen), torch.randn(5, 40, generator=gen)
    labels, gt = torch.tensor([3, 7, 3]), partition_masks(40, 3, 0.1, gen)
    q, g = HungarianMatcher(COSTS)(cls, x, labels, gt)
    cost = (-0.5 * cls.softmax(-1)[:, labels] + mask_bce_cost(x, gt.float(), None)
            + mask_dice_cost(x, gt.float(), None))
    best = min(sum(cost[p[k], k] for k in range(3)) for p in itertools.permutations(range(5), 3))
    assert torch.allclose(cost[q, g].sum(), best)
    assert sorted(g.tolist()) == [0, 1, 2]


def test_unsupported_matcher_or_cost_is_a_clear_error():
    with pytest.raises(ValueError, match='SparseMatcher'):
        HungarianCriterion(**{**S3DIS, 'matcher': dict(type='SparseMatcher', costs=COSTS, topk=1)})
    with pytest.raises(ValueError, match='MaskFocalCost'):
        HungarianMatcher([dict(type='MaskFocalCost', weight=1.0)])
    with pytest.raises(ValueError, match='loss_weight'):
        HungarianCriterion(**{**S3DIS, 'loss_weight': [1.0, 1.0, 1.0]})


def test_final_layer_dice_is_not_divided_by_batch_but_aux_is():
    """Upstream quirk: final-layer Dice = 4*mean, aux-layer Dice = 4*mean/batch."""
    pred, insts = make_pred([200, 160], 8, n_aux=0), make_insts([200, 160], [3, 4])
    crit = HungarianCriterion(**S3DIS)
    idx = crit.match(pred, insts)
    final = crit._layer(pred, insts, idx, is_final=True)
    aux = crit._layer(pred, insts, idx, is_final=False)
    per_scene = [mask_dice_loss(m[q], i.sp_masks[g].float())
                 for m, i, (q, g) in zip(pred['masks'], insts, idx)]
    assert torch.allclose(final['dice'], 4 * torch.stack(per_scene).mean())
    assert torch.allclose(aux['dice'], final['dice'] / 2)
    assert torch.allclose(aux['bce'], final['bce'])


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_learns_free_parameters(seed):
    """8 free queries, 5 GT instances over 300 points with background."""
    gen = torch.Generator().manual_seed(seed)
    sp = partition_masks(300, 5, 0.15, gen)
    labels = torch.randint(0, 13, (5,), generator=gen)
    masks = (torch.randn(8, 300, generator=gen) * 0.1).requires_grad_()
    cls = torch.zeros(8, 14, requires_grad=True)
    score = torch.zeros(8, 1, requires_grad=True)
    crit, opt = HungarianCriterion(**S3DIS), torch.optim.Adam([masks, cls, score], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        crit({'cls_preds': [cls], 'scores': [score], 'masks': [masks]}, [Inst(sp, labels)])['inst_loss'].backward()
        opt.step()
    binar = (masks.detach().sigmoid() >= 0.5).float()
    inter = binar @ sp.float().T
    iou = inter / (binar.sum(1)[:, None] + sp.sum(1)[None] - inter)
    best_iou, best_q = iou.max(0)
    assert (best_iou >= 0.9).all(), best_iou
    assert torch.equal(cls.detach()[best_q].argmax(1), labels)


def upstream_insts(up_structures, insts):
    return [up_structures.InstanceData_(sp_masks=i.sp_masks, labels_3d=i.labels_3d) for i in insts]


def random_case(seed):
    """A random batch: some empty scenes, more GTs than queries, masks near GT."""
    gen = torch.Generator().manual_seed(seed)
    batch = int(torch.randint(1, 4, (1,), generator=gen))
    sizes = torch.randint(50, 400, (batch,), generator=gen).tolist()
    n_gts = torch.randint(0, 12, (batch,), generator=gen).tolist()
    pred = make_pred(sizes, 8, n_aux=[0, 3][seed % 2], seed=seed)
    insts = make_insts(sizes, n_gts, seed=seed)
    with torch.no_grad():  # queries near their GT, so IoU > 0.5 and the score loss fire
        for layer in [pred] + pred['aux_outputs']:
            for m, i in zip(layer['masks'], insts):
                m[:len(i)] += (i.sp_masks[:len(m)].float() * 8 - 4)
    if seed % 3 == 2:
        for layer in [pred] + pred['aux_outputs']:
            layer['scores'] = [None] * batch
    flags = dict(fix_dice_loss_weight=seed % 2 == 0, iter_matcher=seed % 4 < 2,
                 fix_mean_loss=seed % 3 != 1)
    return pred, insts, {**S3DIS, **flags}


@pytest.mark.parametrize('seed', range(12))
def test_equals_upstream_instance_criterion(seed):
    up = upstream_module('instance_criterion')
    structures = upstream_module('structures')
    pred, insts, cfg = random_case(seed)
    ours = HungarianCriterion(**cfg)(pred, insts)['inst_loss']
    grads = torch.autograd.grad(ours, leaves(pred), allow_unused=True)
    theirs = up.InstanceCriterion(**cfg)(pred, upstream_insts(structures, insts))['inst_loss']
    ref_grads = torch.autograd.grad(theirs, leaves(pred), allow_unused=True)
    assert abs(float(ours.detach()) - float(theirs.detach())) <= 1e-5
    for a, b in zip(grads, ref_grads):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5, rtol=0)
