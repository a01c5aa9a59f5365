"""TransportCriterion: a matching-free instance criterion, the entropic optimal transport of GTs onto queries.

Pure PyTorch; no mm* imports.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .ops import at_least_fp32, iter_layers, pair_mask_terms

__all__ = ['TransportCriterion', 'sinkhorn_plan', 'pair_costs']


def pair_costs(cls_pred: Tensor, masks: Tensor, gt: Tensor, labels: Tensor,
               weights: Sequence[float]) -> Tensor:
    """Per-pair cost (M, K): ``w_cls * NLL(label_k) + w_bce * BCE(x_m, gt_k) + w_dice * Dice(x_m, gt_k)``.

    Args:
        cls_pred: float (M, C+1) class logits; masks: float (M, S) mask logits;
        gt: float (K, S) 0/1 masks; labels: long (K,);
        weights: ``(w_cls, w_bce, w_dice)``.

    Returns:
        float (M, K), differentiable in ``cls_pred`` and ``masks``. BCE is the
        mean over points, Dice has +1 smoothing (upstream's mask losses).
    """
    nll, bce, dice = _terms(cls_pred, masks, gt, labels)
    return weights[0] * nll + weights[1] * bce + weights[2] * dice


def _terms(cls_pred: Tensor, masks: Tensor, gt: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """NLL, BCE and Dice of every (query, GT) pair, each (M, K)."""
    return (-F.log_softmax(cls_pred, -1)[:, labels], *pair_mask_terms(masks, gt))


@torch.no_grad()
def sinkhorn_plan(cost: Tensor, eps: float, n_iter: int = 50, tol: float = 1e-4) -> Tensor:
    """Entropic transport plan of K GTs (mass 1 each) onto M queries (capacity 1 each).

    Solved as a balanced problem with a zero-cost "no object" row that takes
    the M - K units of query capacity no GT uses; with fewer queries than GTs
    every query's capacity grows to K / M. Log-domain Sinkhorn iterations.

    Args:
        cost: float (M, K).
        eps: entropic regularisation (the temperature); eps -> 0 gives the
            minimum-cost one-to-one assignment (the Hungarian matching).
        n_iter: at most this many Sinkhorn iterations.
        tol: stop when every GT's shipped mass is within ``tol`` of 1 (checked every 10 iterations).

    Returns:
        float (M, K + 1): ``P[m, k]`` the mass of GT k on query m (each of the
        first K columns sums to 1, each row to the query's capacity), the last
        column the mass query m sends to no object.
    """
    m, k = cost.shape
    cap = max(1.0, k / m)
    full = torch.cat([cost, cost.new_zeros(m, 1)], 1)
    log_a = torch.log(cost.new_tensor([1.0] * k + [max(m * cap - k, 1e-12)]))
    log_b = torch.full((m,), float(torch.log(torch.tensor(cap))), dtype=cost.dtype, device=cost.device)
    f = cost.new_zeros(k + 1)
    g = cost.new_zeros(m)
    scaled = -full / eps
    for i in range(n_iter):
        f = eps * (log_a - torch.logsumexp(g[:, None] / eps + scaled, dim=0))
        g = eps * (log_b - torch.logsumexp(f[None, :] / eps + scaled, dim=1))
        # the rows are exact after each g step; stop once the GT columns are too (every 10 steps)
        if i % 10 == 9 and float((torch.exp(f[None, :k] / eps + g[:, None] / eps + scaled[:, :k]).sum(0) - 1)
                                 .abs().max()) < tol:
            break
    return torch.exp((f[None, :] + g[:, None]) / eps + scaled)


class TransportCriterion:
    r"""Matching-free instance criterion with OneFormer3D's ``inst_criterion`` interface.

    Per scene and prediction layer, with mask logits x (M x S), class logits
    and GT masks / labels (K):

    * cost :math:`C_{mk} = w_{cls}\,\mathrm{NLL}_m(y_k) + w_{bce}\,\mathrm{BCE}(x_m, g_k)
      + w_{dice}\,\mathrm{Dice}(x_m, g_k)`, the loss Hungarian applies to a
      matched pair, for every pair;
    * plan :math:`P = \arg\min_{P \ge 0,\ P^\top 1 = 1_K,\ P 1 \le 1_M}
      \langle P, C\rangle - \varepsilon H(P)` (entropic optimal transport: every
      GT ships mass 1, every query carries at most 1; Sinkhorn, no discrete
      assignment anywhere);
    * mask loss :math:`\frac1K \sum_{m,k} P_{mk} (w_{bce}\mathrm{BCE}_{mk} +
      w_{dice}\mathrm{Dice}_{mk})`: the gradient of the transport value
      :math:`W_\varepsilon(C)` (envelope theorem: :math:`\partial W/\partial C = P`),
      a soft minimum over queries that cannot give two GTs the same query;
    * class loss: cross-entropy against the soft targets the plan gives each
      query (its mass on each GT's class, the rest on no-object), with
      upstream's class weights; every query that carries a GT trains the class
      head;
    * score loss: :math:`\sum P_{mk}[\mathrm{IoU}_{mk} > 0.5](s_m -
      \mathrm{IoU}_{mk})^2 / \sum P_{mk}[\mathrm{IoU}_{mk} > 0.5]` (upstream's
      rule, mass-weighted), so inference's class x score ranking is trained.

    Relation to Hungarian: as eps -> 0 the plan becomes the minimum-cost
    one-to-one assignment on C and every term becomes upstream's matched loss
    (with NLL in place of upstream's -p matching cost, and without its Dice
    reduction quirk). At eps > 0 every query near a GT receives gradient in
    proportion to its share, and no argmax or assignment is taken. Pairs whose
    mass is below ``min_mass`` get no gradient (their share is that small).
    BCE anchors the absolute mask logits, so the sigmoid thresholds of the
    decoder's attention masks and of inference keep their meaning.

    Args:
        loss_weight: ``[cls, bce, dice, score]`` (upstream's S3DIS values: 0.5, 1, 1, 0.5).
        num_classes: instance classes (no-object is one more).
        non_object_weight: cross-entropy weight of no-object.
        temperature: eps of the transport, in cost units.
        sinkhorn_iters: Sinkhorn iterations per plan.
        min_mass: pairs with less mass get no mask loss.
        iter_matcher: accepted for config compatibility; every layer gets its own plan.
    """

    def __init__(self, loss_weight: Sequence[float], num_classes: int, non_object_weight: float,
                 temperature: float = 0.05, sinkhorn_iters: int = 50, min_mass: float = 1e-3,
                 iter_matcher: bool = True) -> None:
        if len(loss_weight) != 4:
            raise ValueError(f'TransportCriterion.loss_weight must be [cls, bce, dice, score], got {list(loss_weight)}')
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        self.loss_weight = [float(w) for w in loss_weight]
        self.num_classes = num_classes
        self.class_weight = [1.0] * num_classes + [float(non_object_weight)]
        self.temperature, self.sinkhorn_iters, self.min_mass = temperature, sinkhorn_iters, min_mass
        self.iter_matcher = iter_matcher

    def __call__(self, pred: dict, insts: Sequence[Any]) -> dict[str, Tensor]:
        """Loss over all layers; same ``pred`` / ``insts`` contract as InfluencerCriterion.

        Returns:
            ``inst_loss`` (differentiable) and detached, unweighted parts summed
            over layers: ``inst_cls``, ``inst_bce``, ``inst_dice``, ``inst_score``,
            ``inst_pairs`` (mean pairs with mass >= min_mass per GT).
        """
        totals: dict[str, Tensor] = {}
        for layer in iter_layers(pred):
            for key, value in self._layer(layer, insts).items():
                totals[key] = totals[key] + value if key in totals else value
        out = {'inst_loss': totals.pop('total')}
        out.update({f'inst_{k}': v.detach() for k, v in totals.items()})
        return out

    def _layer(self, layer: dict, insts: Sequence[Any]) -> dict[str, Tensor]:
        """Batch means of each part of one layer, and their weighted total."""
        scores = layer.get('scores') or [None] * len(insts)
        parts: dict[str, list[Tensor]] = {k: [] for k in ('cls', 'bce', 'dice', 'score', 'pairs')}
        for cls_pred, score, mask, inst in zip(layer['cls_preds'], scores, layer['masks'], insts):
            for key, value in self.scene(at_least_fp32(cls_pred), score, at_least_fp32(mask), inst).items():
                parts[key].append(value)
        mean = {k: torch.stack(v).mean() for k, v in parts.items()}
        w = self.loss_weight
        mean['total'] = w[0] * mean['cls'] + w[1] * mean['bce'] + w[2] * mean['dice'] + w[3] * mean['score']
        return mean

    def scene(self, cls_pred: Tensor, score: Tensor | None, mask: Tensor, inst: Any) -> dict[str, Tensor]:
        """Unweighted parts for one scene of one layer (see the class docstring)."""
        labels = inst.labels_3d.to(mask.device)
        gt = inst.sp_masks.to(mask.dtype)
        zero = mask.sum() * 0.0 + cls_pred.sum() * 0.0
        weight = cls_pred.new_tensor(self.class_weight)
        if len(labels) == 0:
            target = torch.full((len(cls_pred),), self.num_classes, dtype=torch.long, device=mask.device)
            return {'cls': F.cross_entropy(cls_pred, target, weight), 'bce': zero, 'dice': zero, 'score': zero,
                    'pairs': zero.detach()}
        w = self.loss_weight
        nll, bce, dice = _terms(cls_pred.detach(), mask, gt, labels)   # the class loss is the plan's, below
        with torch.no_grad():
            plan = sinkhorn_plan(w[0] * nll + w[1] * bce + w[2] * dice, self.temperature, self.sinkhorn_iters)
            mass = plan[:, :-1]
            sub = mass * (mass >= self.min_mass)
        k = len(labels)
        out = {'bce': (sub * bce).sum() / k, 'dice': (sub * dice).sum() / k,
               'cls': self._soft_cls(cls_pred, labels, plan, weight), 'pairs': (sub > 0).sum().to(mask.dtype) / k}
        if score is None:
            out['score'] = zero
        else:   # only queries that carry mass have a score target
            rows = sub.any(1).nonzero()[:, 0]
            hard = (mask.detach() >= 0).index_select(0, rows)   # sigmoid >= 0.5; bytes, not floats, are copied
            out['score'] = self._score(score[rows], hard, gt, sub[rows])
        return out

    def _soft_cls(self, cls_pred: Tensor, labels: Tensor, plan: Tensor, weight: Tensor) -> Tensor:
        """Weighted cross-entropy against each query's soft class target from the plan."""
        target = cls_pred.new_zeros(cls_pred.shape)
        target.index_add_(1, labels, plan[:, :-1])
        target[:, -1] += plan[:, -1]
        target = target / target.sum(1, keepdim=True).clamp_min(1e-12)
        weighted = target * weight[None, :]
        return -(weighted * F.log_softmax(cls_pred, -1)).sum() / weighted.sum().clamp_min(1e-12)

    @staticmethod
    def _score(score: Tensor, hard: Tensor, gt: Tensor, sub: Tensor) -> Tensor:
        """Mass-weighted MSE of the objectness score against the IoU, over pairs with IoU > 0.5.

        score: float (n, 1); hard: bool (n, S) binarised masks; gt: float (K, S); sub: float (n, K) masses.
        """
        score = at_least_fp32(score)[:, 0]
        with torch.no_grad():
            pred = hard.to(gt.dtype)
            inter = pred @ gt.T
            iou = inter / (pred.sum(1)[:, None] + gt.sum(1)[None, :] - inter + 1e-6)
            keep = sub * (iou > 0.5)
        return (keep * (score[:, None] - iou) ** 2).sum() / keep.sum().clamp_min(1e-12)
