"""The matching-free criteria against naive reference implementations (loops, float64), their
targets rules, and the transport's limit: temperature -> 0 is the Hungarian assignment."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from influencerformer import InstanceGT, AnchoredInfluencerCriterion, TransportCriterion
from influencerformer.anchored import candidates
from influencerformer.transport import pair_costs, sinkhorn_plan

W = [0.5, 1.0, 1.0, 0.5]


def scene(seed: int, m: int = 12, s: int = 90, k: int = 4):
    gen = torch.Generator().manual_seed(seed)
    owner = torch.randint(0, k, (s,), generator=gen)
    owner[:k] = torch.arange(k)
    owner[k:k + 6] = -1                      # a few points of no instance
    gt = owner[None] == torch.arange(k)[:, None]
    labels = torch.randint(0, 13, (k,), generator=gen)
    cls = torch.randn(m, 14, generator=gen, dtype=torch.float64).requires_grad_()
    mask = (2 * torch.randn(m, s, generator=gen, dtype=torch.float64)).requires_grad_()
    score = torch.rand(m, 1, generator=gen, dtype=torch.float64).requires_grad_()
    seeds = torch.randint(0, s, (m,), generator=gen)
    return cls, mask, score, InstanceGT(gt, labels), seeds


# ---- transport ------------------------------------------------------------------------------

def naive_plan(cost: np.ndarray, eps: float, iters: int) -> np.ndarray:
    """Sinkhorn in the probability domain with an explicit no-object row (float64)."""
    m, k = cost.shape
    full = np.concatenate([cost, np.zeros((m, 1))], 1)
    a = np.array([1.0] * k + [m - k])
    b = np.ones(m)
    kernel = np.exp(-full / eps)
    u, v = np.ones(k + 1), np.ones(m)
    for _ in range(iters):
        u = a / (kernel.T @ v)
        v = b / (kernel @ u)
    return v[:, None] * kernel * u[None, :]


def naive_transport_loss(cls, mask, score, inst, eps, min_mass=1e-3):
    cost = np.zeros((mask.shape[0], len(inst)))
    for i in range(mask.shape[0]):
        for j in range(len(inst)):
            g = inst.sp_masks[j].double()
            nll = -F.log_softmax(cls[i], -1)[inst.labels_3d[j]]
            bce = F.binary_cross_entropy_with_logits(mask[i], g)
            p = mask[i].sigmoid()
            dice = 1 - (2 * (p * g).sum() + 1) / (p.sum() + g.sum() + 1)
            cost[i, j] = float(W[0] * nll + W[1] * bce + W[2] * dice)
    plan = torch.from_numpy(naive_plan(cost, eps, 400))
    k = len(inst)
    bce_t = dice_t = 0.0
    for i in range(mask.shape[0]):
        for j in range(k):
            w = plan[i, j] if plan[i, j] >= min_mass else 0.0
            g = inst.sp_masks[j].double()
            p = mask[i].sigmoid()
            bce_t = bce_t + w * F.binary_cross_entropy_with_logits(mask[i], g)
            dice_t = dice_t + w * (1 - (2 * (p * g).sum() + 1) / (p.sum() + g.sum() + 1))
    weights = torch.tensor([1.0] * 13 + [0.05], dtype=torch.float64)
    num = den = 0.0
    for i in range(mask.shape[0]):
        target = torch.zeros(14, dtype=torch.float64)
        for j in range(k):
            target[inst.labels_3d[j]] += plan[i, j]
        target[13] += plan[i, k]
        target = target / target.sum()
        logp = F.log_softmax(cls[i], -1)
        num = num - (target * weights * logp).sum()
        den = den + (target * weights).sum()
    return {'bce': bce_t / k, 'dice': dice_t / k, 'cls': num / den, 'plan': plan}


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_transport_equals_its_naive_reference(seed):
    cls, mask, score, inst, _ = scene(seed)
    crit = TransportCriterion(W, 13, 0.05, temperature=0.5, sinkhorn_iters=400)
    ours = crit.scene(cls, None, mask, inst)
    ref = naive_transport_loss(cls, mask, score, inst, 0.5)
    for key in ('bce', 'dice', 'cls'):
        assert float(ours[key]) == pytest.approx(float(ref[key]), rel=1e-6, abs=1e-9), key
    plan = sinkhorn_plan(pair_costs(cls, mask, inst.sp_masks.double(), inst.labels_3d, W[:3]), 0.5, 400)
    assert np.allclose(plan.numpy(), ref['plan'].numpy(), atol=1e-8)
    # the gradient of the plan-weighted cost is the reference's (the plan is a constant of it)
    total = ours['bce'] + ours['dice'] + ours['cls']
    g_ours = torch.autograd.grad(total, (mask, cls))
    total_ref = ref['bce'] + ref['dice'] + ref['cls']
    g_ref = torch.autograd.grad(total_ref, (mask, cls))
    for a, b in zip(g_ours, g_ref):
        assert torch.allclose(a, b, atol=1e-9)


def test_transport_loss_on_carrying_rows_equals_the_full_product():
    """The mask loss is computed only on queries that carry mass; at a low temperature most
    carry none, and value and gradient must equal the plan-weighted sum over all (M, K) pairs."""
    cls, mask, score, inst, _ = scene(5, m=24)
    crit = TransportCriterion(W, 13, 0.05, temperature=0.02, sinkhorn_iters=400)
    ours = crit.scene(cls, score, mask, inst)
    gt = inst.sp_masks.double()
    with torch.no_grad():
        plan = sinkhorn_plan(pair_costs(cls, mask, gt, inst.labels_3d, W[:3]), 0.02, 400)[:, :-1]
        sub = plan * (plan >= crit.min_mass)
    carrying = sub.any(1)
    assert 0 < int(carrying.sum()) < len(carrying)   # the restriction is exercised
    bce = F.binary_cross_entropy_with_logits(mask[:, None].expand(-1, len(inst), -1),
                                             gt[None].expand(mask.shape[0], -1, -1), reduction='none').mean(-1)
    p = mask.sigmoid()
    dice = 1 - (2 * p @ gt.T + 1) / (p.sum(1)[:, None] + gt.sum(1)[None] + 1)
    full = {'bce': (sub * bce).sum() / len(inst), 'dice': (sub * dice).sum() / len(inst)}
    for key in ('bce', 'dice'):
        assert float(ours[key]) == pytest.approx(float(full[key]), rel=1e-9), key
        g_ours, = torch.autograd.grad(ours[key], mask, retain_graph=True)
        g_full, = torch.autograd.grad(full[key], mask, retain_graph=True)
        assert torch.allclose(g_ours, g_full, atol=1e-12)
        assert float(g_ours[~carrying].abs().max()) == 0.0
    g_score, = torch.autograd.grad(ours['score'], score)
    assert float(g_score[~carrying].abs().max()) == 0.0


def test_plan_ships_every_gt_once_and_respects_capacity():
    cls, mask, _, inst, _ = scene(3)
    plan = sinkhorn_plan(pair_costs(cls, mask, inst.sp_masks.double(), inst.labels_3d, W[:3]), 0.1, 400, tol=1e-9)
    loose = sinkhorn_plan(pair_costs(cls, mask, inst.sp_masks.double(), inst.labels_3d, W[:3]), 0.1, 400)
    assert float((loose[:, :-1].sum(0) - 1).abs().max()) < 1e-4   # the default tolerance
    assert torch.allclose(plan[:, :-1].sum(0), torch.ones(len(inst), dtype=plan.dtype), atol=1e-6)
    assert torch.allclose(plan.sum(1), torch.ones(plan.shape[0], dtype=plan.dtype), atol=1e-6)


def test_transport_tends_to_the_hungarian_assignment_as_temperature_goes_to_zero():
    for seed in range(5):
        cls, mask, _, inst, _ = scene(seed)
        cost = pair_costs(cls, mask, inst.sp_masks.double(), inst.labels_3d, W[:3]).detach()
        rows, cols = linear_sum_assignment(cost.numpy())
        plan = sinkhorn_plan(cost, 1e-3, 3000)[:, :-1]
        assert (plan.argmax(0).numpy()[cols] == rows).all()
        assert float(plan[rows, cols].min()) > 0.99


def test_transport_class_targets_come_from_the_plan():
    """A query that carries a GT's whole mass targets that GT's class; one that carries none, no-object."""
    crit = TransportCriterion(W, 13, 0.05)
    cls = torch.zeros(3, 14, requires_grad=True)
    plan = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])   # 2 GTs, query 2 -> no object
    loss = crit._soft_cls(cls, torch.tensor([4, 7]), plan, cls.new_tensor(crit.class_weight))
    loss.backward()
    g = cls.grad
    assert g[0, 4] < 0 and g[1, 7] < 0 and g[2, 13] < 0   # pushed up: the target class of each query


def test_every_query_carrying_mass_trains_the_score():
    cls, mask, score, inst, _ = scene(4)
    with torch.no_grad():
        mask.copy_(torch.where(inst.sp_masks[torch.arange(12) % len(inst)], 6.0, -6.0).double())
    out = TransportCriterion(W, 13, 0.05, temperature=0.5).scene(cls, score, mask, inst)
    out['score'].backward()
    assert (score.grad.abs()[:, 0] > 0).sum() >= len(inst)


# ---- anchored (influencer-anchored) ---------------------------------------------------------------------

def naive_anchored(cls, mask, score, inst, seeds, margin=1.0, rep_norm='pairs'):
    s_owner = [-1] * mask.shape[1]
    for k in range(len(inst)):
        for s in inst.sp_masks[k].nonzero()[:, 0].tolist():
            s_owner[s] = k
    cand = [s_owner[int(v)] for v in seeds]
    d = 1 - mask.sigmoid()
    attrs = []
    for k in range(len(inst)):
        infl = [m for m in range(mask.shape[0]) if cand[m] == k]
        if not infl:
            continue
        pts = inst.sp_masks[k].nonzero()[:, 0].tolist()
        gms = [torch.exp(torch.stack([torch.log(d[m, s]) for m in infl]).mean()) for s in pts]
        attrs.append(torch.stack(gms).mean())
    attr = torch.stack(attrs).mean()
    reps = [torch.relu(margin - d[m, s]) for s in range(mask.shape[1]) if s_owner[s] >= 0
            for m in range(mask.shape[0]) if cand[m] != s_owner[s]]
    rep = torch.stack(reps).mean()
    if rep_norm == 'instance':   # per GT: mean over its points of the mean over the other instances' queries
        per_gt = []
        for k in range(len(inst)):
            pts = inst.sp_masks[k].nonzero()[:, 0].tolist()
            per_point = [torch.stack([torch.relu(margin - d[m, s]) for m in range(mask.shape[0])
                                      if cand[m] != s_owner[s]]).mean() for s in pts]
            per_gt.append(torch.stack(per_point).mean())
        rep = torch.stack(per_gt).mean()
    bg = torch.stack([mask[m, s].sigmoid() for s in range(mask.shape[1]) if s_owner[s] < 0
                      for m in range(mask.shape[0])]).mean()
    target = torch.tensor([int(inst.labels_3d[c]) if c >= 0 else 13 for c in cand])
    cls_loss = F.cross_entropy(cls, target, torch.tensor([1.0] * 13 + [0.05], dtype=torch.float64))
    return {'attr': attr, 'rep': rep, 'bg': bg, 'cls': cls_loss, 'candidates': cand}


@pytest.mark.parametrize('seed, rep_norm', [(0, 'pairs'), (1, 'pairs'), (2, 'pairs'), (0, 'instance'),
                                            (3, 'instance')])
def test_anchored_equals_its_naive_reference(seed, rep_norm):
    cls, mask, score, inst, seeds = scene(seed)
    crit = AnchoredInfluencerCriterion(W[:3], 13, 0.05, rep_norm=rep_norm)
    ref = naive_anchored(cls, mask, score, inst, seeds, rep_norm=rep_norm)
    owner = candidates(seeds, inst.sp_masks)
    assert owner.tolist() == ref['candidates']
    ours = crit.scene(cls, None, mask, inst, owner)
    for key in ('attr', 'rep', 'bg', 'cls'):
        assert float(ours[key]) == pytest.approx(float(ref[key]), rel=1e-9), key
    g_ours = torch.autograd.grad(ours['attr'] + ours['rep'] + ours['bg'], mask)[0]
    g_ref = torch.autograd.grad(ref['attr'] + ref['rep'] + ref['bg'], mask)[0]
    assert torch.allclose(g_ours, g_ref, atol=1e-12)


def test_anchored_attraction_is_zero_once_one_influencer_covers_the_instance():
    """The geometric mean is bounded below by 0 and needs one good influencer: no reward for more."""
    cls, mask, _, inst, seeds = scene(5)
    owner = candidates(seeds, inst.sp_masks)
    k = int(owner[owner >= 0][0])
    first = int((owner == k).nonzero()[0])
    with torch.no_grad():
        mask[first] = torch.where(inst.sp_masks[k], 200.0, -200.0).double()
    out = AnchoredInfluencerCriterion(W[:3], 13, 0.05).scene(cls, None, mask, inst, owner)
    assert out['attr'] >= 0
    member = (owner == k).nonzero()[:, 0]
    gm = torch.exp(F.logsigmoid(-mask[member]).mean(0))[inst.sp_masks[k]]
    assert float(gm.max()) < 1e-6


def test_anchored_class_targets_are_the_anchors_instances():
    cls, mask, score, inst, seeds = scene(6)
    owner = candidates(seeds, inst.sp_masks)
    crit = AnchoredInfluencerCriterion(W[:3], 13, 0.05)
    out = crit.scene(cls, None, mask, inst, owner)
    out['cls'].backward()
    for m in range(len(owner)):
        target = int(inst.labels_3d[owner[m]]) if owner[m] >= 0 else 13
        assert cls.grad[m, target] < 0, m


def test_anchored_needs_anchors_and_says_how_to_get_them():
    cls, mask, score, inst, _ = scene(7)
    with pytest.raises(ValueError, match='model.decoder.query_init: anchored'):
        AnchoredInfluencerCriterion(W[:3], 13, 0.05)({'cls_preds': [cls], 'scores': [score], 'masks': [mask]}, [inst])


def test_no_criterion_but_hungarian_calls_an_assignment_solver():
    import inspect

    import influencerformer.anchored as anchored_module
    import influencerformer.influencer_net as net_module
    import influencerformer.pm3 as pm3_module
    import influencerformer.transport as transport_module
    for module in (anchored_module, net_module, pm3_module, transport_module):
        source = inspect.getsource(module)
        assert 'linear_sum_assignment' not in source and 'scipy' not in source
