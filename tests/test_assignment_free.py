"""pm3 and influencer-net against naive float64 references written from their formulas, pair by pair."""
import math

import pytest
import torch
import torch.nn.functional as F

from influencerformer import InstanceGT
from influencerformer.anchored import candidates
from influencerformer.influencer_net import InfluencerNetCriterion
from influencerformer.pm3 import PowerSoftMinCriterion


def scene(seed: int, m: int = 7, s: int = 60, k: int = 4):
    gen = torch.Generator().manual_seed(seed)
    cls = torch.randn(m, 14, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = (torch.randn(m, s, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    owner = torch.randint(0, k, (s,), generator=gen)
    owner[torch.rand(s, generator=gen) < 0.1] = -1          # a few points of no instance
    gt = owner[None] == torch.arange(k)[:, None]
    labels = torch.randint(0, 13, (k,), generator=gen)
    anchors = torch.randint(0, s, (m,), generator=gen)
    return cls, mask, InstanceGT(gt, labels), anchors


# ---- pm3 ---------------------------------------------------------------------------------

def naive_pm3(cls, mask, inst, tau, p, w, root, bg_w):
    m, k = cls.shape[0], len(inst)
    prob = cls.softmax(-1)
    terms, cost = {}, {}
    for q in range(m):
        for g in range(k):
            target = inst.sp_masks[g].double()
            ce = -torch.log(prob[q, inst.labels_3d[g]])
            bce = F.binary_cross_entropy_with_logits(mask[q], target)
            sig = mask[q].sigmoid()
            dice = 1 - (2 * (sig * target).sum() + 1) / (sig.sum() + target.sum() + 1)
            terms[q, g] = (ce, bce, dice)
            cost[q, g] = -w[0] * prob[q, inst.labels_3d[g]] + w[1] * bce + w[2] * dice

    def reduce(raw):
        return raw ** (1 / p) if root else raw
    cov = []
    for g in range(k):
        z = torch.stack([torch.exp(-cost[q, g] / tau) for q in range(m)])
        wts = z / z.sum()
        soft = [sum(wts[q] * terms[q, g][c] for q in range(m)) for c in range(3)]
        cov.append(reduce(sum(w[c] * soft[c] ** p for c in range(3))))
    prec, gate = [], []
    for q in range(m):
        z = torch.stack([torch.exp(-cost[q, g] / tau) for g in range(k)])
        wts = z / z.sum()
        soft = [sum(wts[g] * terms[q, g][c] for g in range(k)) for c in range(3)]
        prec.append(reduce(sum(w[c] * soft[c] ** p for c in range(3))))
        gate.append(1 - wts.max().detach())
    bg = torch.stack([gate[q] * -torch.log(prob[q, -1]) for q in range(m)]).mean()
    return torch.stack(cov).mean() + torch.stack(prec).mean() + bg_w * bg


@pytest.mark.parametrize('seed, root', [(0, False), (1, False), (2, True), (3, True)])
def test_pm3_equals_its_naive_reference(seed, root):
    cls, mask, inst, _ = scene(seed)
    w, tau, p = (0.5, 1.0, 1.0), 0.12, 3.0
    out = PowerSoftMinCriterion([1.0, 0.0], 13, w, tau, p, root, 0.1).scene(cls, None, mask, inst)
    ours = out['cov'] + out['prec'] + 0.1 * out['bg']
    ref = naive_pm3(cls, mask, inst, tau, p, w, root, 0.1)
    assert float(ours) == pytest.approx(float(ref), rel=1e-10)
    for a, b in zip(torch.autograd.grad(ours, (cls, mask)), torch.autograd.grad(ref, (cls, mask))):
        assert torch.allclose(a, b, atol=1e-10)


def test_pm3_weights_carry_gradient_and_one_gt_gates_no_query_to_no_object():
    cls, mask, inst, _ = scene(4)
    one = InstanceGT(inst.sp_masks[:1], inst.labels_3d[:1])
    out = PowerSoftMinCriterion([1.0, 0.5], 13).scene(cls, None, mask, one)
    assert float(out['bg']) == 0.0   # the author's gate: max over one GT of a softmax is 1
    empty = InstanceGT(inst.sp_masks[:0], inst.labels_3d[:0])
    out = PowerSoftMinCriterion([1.0, 0.5], 13).scene(cls, None, mask, empty)
    want = F.cross_entropy(cls, torch.full((len(cls),), 13))
    assert float(out['bg']) == pytest.approx(float(want)) and float(out['cov']) == 0.0


def test_pm3_over_layers_is_finite_with_scores_and_float32():
    cls, mask, inst, _ = scene(5)
    pred = {'cls_preds': [cls.float()], 'scores': [torch.rand(7, 1, requires_grad=True)], 'masks': [mask.float()]}
    pred['aux_outputs'] = [dict(pred)]
    out = PowerSoftMinCriterion([1.0, 0.5], 13, root=True)(pred, [inst])
    assert torch.isfinite(out['inst_loss'])
    out['inst_loss'].backward()
    assert set(out) == {'inst_loss', 'inst_cov', 'inst_prec', 'inst_bg', 'inst_score'}


# ---- influencer-net -----------------------------------------------------------------------

def naive_influencer_net(mask, inst, anchors, knn, m_f=1.0, m_i=1.0):
    """InfluencerNet's three terms on masks, pair by pair (d = 1 - sigmoid; influencer distance 1 - soft IoU)."""
    m, s = mask.shape
    p_owner = [-1] * s
    for k in range(len(inst)):
        for pt in inst.sp_masks[k].nonzero()[:, 0].tolist():
            p_owner[pt] = k
    owner = [p_owner[int(a)] for a in anchors]
    d = 1 - mask.sigmoid()
    pos = []
    for k in range(len(inst)):
        infl = [q for q in range(m) if owner[q] == k]
        if not infl:
            continue
        pts = inst.sp_masks[k].nonzero()[:, 0].tolist()
        a = [torch.stack([d[q, t] ** 2 for t in pts]).mean() / m_f ** 2 for q in infl]
        pos.append(torch.exp(torch.stack([torch.log(x) for x in a]).mean()))
    neg = []
    for t in range(s):
        if p_owner[t] < 0:
            continue
        near = sorted(range(m), key=lambda q: float(d[q, t]))[:min(knn, m)]
        neg += [F.relu(m_f - d[q, t]) ** 2 for q in near if owner[q] != p_owner[t] and float(d[q, t]) < m_f]
    prob = mask.sigmoid()
    ii = []
    for a in range(m):
        dist = {}
        for b in range(m):
            if b != a:
                inter = (prob[a] * prob[b]).sum()
                dist[b] = 1 - inter / (prob[a].sum() + prob[b].sum() - inter)
        near = sorted(dist, key=lambda b: float(dist[b]))[:min(knn, m - 1)]
        ii += [F.relu(m_i - dist[b]) for b in near if float(dist[b]) < m_i]
    return torch.stack(pos).mean(), torch.stack(neg).mean(), torch.stack(ii).mean(), owner


@pytest.mark.parametrize('seed, knn', [(0, 50), (1, 3), (2, 2)])
def test_influencer_net_equals_its_naive_reference(seed, knn):
    cls, mask, inst, anchors = scene(seed)
    owner = candidates(anchors, inst.sp_masks)
    crit = InfluencerNetCriterion([0.5, 1.0, 1.0], 13, 0.05, knn=knn)
    out = crit.scene(cls, None, mask, inst, owner)
    pos, neg, ii, ref_owner = naive_influencer_net(mask, inst, anchors, knn)
    assert owner.tolist() == ref_owner
    for key, ref in (('pos', pos), ('neg', neg), ('ii', ii)):
        assert float(out[key]) == pytest.approx(float(ref), rel=1e-10), key
    ours = out['pos'] + out['neg'] + out['ii']
    assert torch.allclose(torch.autograd.grad(ours, mask)[0], torch.autograd.grad(pos + neg + ii, mask)[0],
                          atol=1e-10)


def test_influencer_net_does_not_reward_splitting_an_instance():
    """InfluencerNet's order of means: a query covering half an instance keeps a large attraction."""
    cls, mask, inst, anchors = scene(6, m=2, k=1)
    inst = InstanceGT(torch.ones(1, 60, dtype=torch.bool), torch.tensor([2]))
    owner = torch.tensor([0, 0])
    crit = InfluencerNetCriterion([0.5, 1.0, 1.0], 13, 0.05)
    whole = torch.full((2, 60), 20.0, dtype=torch.float64)
    split = whole.clone()
    split[0, 30:], split[1, :30] = -20.0, -20.0
    pos_whole = crit.scene(cls, None, whole, inst, owner)['pos']
    pos_split = crit.scene(cls, None, split, inst, owner)['pos']
    assert float(pos_whole) < 1e-9 and float(pos_split) == pytest.approx(0.5, rel=1e-6)
    assert math.isfinite(float(crit.scene(cls, None, whole, inst, owner)['ii']))


def test_influencer_net_duplicates_repel_and_empty_masks_do_not():
    crit = InfluencerNetCriterion([0.5, 1.0, 1.0], 13, 0.05)
    on = torch.full((1, 40), 20.0, dtype=torch.float64)
    off = torch.full((1, 40), -20.0, dtype=torch.float64)
    assert float(crit._repulsion(torch.cat([on, on]).sigmoid())) == pytest.approx(1.0)
    assert float(crit._repulsion(torch.cat([off, off]).sigmoid())) < 1e-6
