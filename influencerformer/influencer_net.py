"""InfluencerNetCriterion: Murnane's InfluencerNet loss, point by point, on masks with anchored queries.

Written from the formulas of murnanedaniel/InfluencerNet (``src/losses/influencer_loss.py``
and how its model builds the loss's edges; docs/influencer-loss.md lists every
adaptation): no code copied. Pure PyTorch.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .anchored import AnchoredInfluencerCriterion, anchors_of, candidates, class_targets, point_owner
from .ops import at_least_fp32, iter_layers

__all__ = ['InfluencerNetCriterion']


class InfluencerNetCriterion:
    r"""InfluencerNet's three terms with queries as influencers and voxels as followers.

    In InfluencerNet every point has a follower and an influencer embedding, and
    the loss pulls an instance's followers onto (at least one of) its influencers,
    pushes other instances' followers off them, and pushes influencers apart. On
    masks: follower s, influencer (query) m, distance :math:`d_{ms} = 1 - \sigma(x_{ms})`
    (what a mask says: 0 on its points, 1 off them); query m belongs to the instance
    :math:`c_m` holding its anchor point (the model anchors queries at points, as
    InfluencerNet's influencers are points); :math:`m_f`, :math:`m_I` the margins.

    * attraction (InfluencerNet's order of means): per influencer m of instance k,
      :math:`A_m = \mathrm{mean}_{s \in k} d_{ms}^2 / m_f^2`; per instance the geometric mean
      over its influencers, :math:`P_k = \exp(\mathrm{mean}_{m: c_m = k} \log A_m)`; then the
      mean over instances with an influencer. Two queries splitting an instance both keep a
      large :math:`A_m`, so the product does not reward the split;
    * follower negatives (squared hinge over InfluencerNet's neighbour edges): each
      foreground point's ``knn`` nearest influencers within radius :math:`m_f`; over the
      edges to another instance's influencer, the mean of :math:`\max(0, m_f - d)^2`;
    * influencer repulsion (linear hinge, every instance, as InfluencerNet's HEAD): the
      distance of two influencers is :math:`1 - \mathrm{IoU}` of their soft masks (two empty
      masks are far apart, where their mask logits would coincide); over each query's ``knn``
      nearest other queries within radius :math:`m_I`, the mean of :math:`\max(0, m_I - d)`;
      duplicates of one instance repel each other;
    * class: query m's target is the class of :math:`c_m` (no-object without one), CE with
      upstream's class weights; score: MSE against the IoU with :math:`c_m` where > 0.5
      (upstream's rule; InfluencerNet has neither: the S3DIS model needs both).

    ``loss = w_cls cls + w_inf (fi_weight (neg_ratio neg + pos) + ii_weight ii) + w_score score``;
    auxiliary layers summed. InfluencerNet has no background term (every hit is some
    track's): none here either (on S3DIS every point is some instance's).

    Args:
        loss_weight: ``[cls, influencer, score]``.
        num_classes, non_object_weight: as upstream's InstanceCriterion.
        follower_margin, influencer_margin: InfluencerNet's margins (1.0: on masks the
            whole range of d, so every pair is within the radius).
        neg_ratio, fi_weight, ii_weight: InfluencerNet's weights (applied once; its code
            applies the two weights twice, the same at their default 1).
        knn: neighbours per follower / influencer (InfluencerNet's 50).
    """

    def __init__(self, loss_weight: Sequence[float], num_classes: int, non_object_weight: float,
                 follower_margin: float = 1.0, influencer_margin: float = 1.0, neg_ratio: float = 1.0,
                 fi_weight: float = 1.0, ii_weight: float = 1.0, knn: int = 50) -> None:
        if len(loss_weight) != 3:
            raise ValueError(f'InfluencerNetCriterion.loss_weight must be [cls, influencer, score], '
                             f'got {list(loss_weight)}')
        self.loss_weight = [float(w) for w in loss_weight]
        self.num_classes = num_classes
        self.class_weight = [1.0] * num_classes + [float(non_object_weight)]
        self.m_f, self.m_i = float(follower_margin), float(influencer_margin)
        self.neg_ratio, self.fi_weight, self.ii_weight, self.knn = neg_ratio, fi_weight, ii_weight, int(knn)

    def __call__(self, pred: dict, insts: Sequence[Any]) -> dict[str, Tensor]:
        """Loss over all layers; ``pred`` as upstream's plus ``query_anchors`` (see ``anchored.anchors_of``).

        Returns:
            ``inst_loss`` and detached unweighted parts summed over layers:
            ``inst_cls``, ``inst_pos``, ``inst_neg``, ``inst_ii``, ``inst_score``.
        """
        owners = [candidates(a, inst.sp_masks.bool()) for a, inst in zip(anchors_of(pred, 'InfluencerNetCriterion'),
                                                                         insts)]
        totals: dict[str, Tensor] = {}
        for layer in iter_layers(pred):
            scores = layer.get('scores') or [None] * len(insts)
            parts = [self.scene(at_least_fp32(c), s, at_least_fp32(m), inst, o)
                     for c, s, m, inst, o in zip(layer['cls_preds'], scores, layer['masks'], insts, owners)]
            for key in parts[0]:
                value = torch.stack([p[key] for p in parts]).mean()
                totals[key] = totals[key] + value if key in totals else value
        w = self.loss_weight
        influencer = self.fi_weight * (self.neg_ratio * totals['neg'] + totals['pos']) + self.ii_weight * totals['ii']
        loss = w[0] * totals['cls'] + w[1] * influencer + w[2] * totals['score']
        return {'inst_loss': loss, **{f'inst_{k}': v.detach() for k, v in totals.items()}}

    def scene(self, cls_pred: Tensor, score: Tensor | None, mask: Tensor, inst: Any,
              owner: Tensor) -> dict[str, Tensor]:
        """Unweighted parts of one scene and layer; ``owner`` (M,) each query's instance or -1."""
        sp = inst.sp_masks.bool().to(mask.device)
        labels = inst.labels_3d.to(mask.device)
        gt = sp.to(mask.dtype)
        zero = mask.sum() * 0.0
        prob = torch.sigmoid(mask)
        target = class_targets(owner, labels, self.num_classes)
        out = {'pos': self._attraction(prob, gt, owner) if len(labels) else zero,
               'neg': self._negatives(prob, owner, point_owner(sp)),
               'ii': self._repulsion(prob),
               'cls': F.cross_entropy(cls_pred, target, cls_pred.new_tensor(self.class_weight))}
        out['score'] = (AnchoredInfluencerCriterion._score(score, mask, gt, owner)
                        if score is not None and len(labels) else zero)
        return out

    def _attraction(self, prob: Tensor, gt: Tensor, owner: Tensor) -> Tensor:
        """Mean over instances of the geometric mean over their influencers of the mean squared distance."""
        has = owner >= 0
        if not bool(has.any()):
            return prob.sum() * 0.0
        d2 = (1 - prob[has]) ** 2 / self.m_f ** 2                                  # (M', S)
        a = (d2 @ gt.T).gather(1, owner[has, None])[:, 0] / gt.sum(1)[owner[has]].clamp_min(1)   # A_m, (M',)
        log_a = a.clamp_min(1e-12).log()   # InfluencerNet has no floor; an exact 0 would give -inf
        k = owner[has]
        n = torch.zeros(len(gt), dtype=prob.dtype, device=prob.device).index_add_(0, k, torch.ones_like(log_a))
        mean_log = torch.zeros_like(n).index_add_(0, k, log_a) / n.clamp_min(1)
        return torch.exp(mean_log[n > 0]).mean()

    def _negatives(self, prob: Tensor, owner: Tensor, owner_of: Tensor) -> Tensor:
        """Squared hinge over each foreground point's nearest influencers of other instances."""
        fg = owner_of >= 0
        if not bool(fg.any()):
            return prob.sum() * 0.0
        d = 1 - prob[:, fg]                                                       # (M, S_fg)
        k = min(self.knn, len(d))
        nearest = d.detach().topk(k, dim=0, largest=False).indices                # (k, S_fg): the neighbour edges
        d_edge = d.gather(0, nearest)
        edge = (d_edge.detach() < self.m_f) & (owner[nearest] != owner_of[fg][None, :])
        return (F.relu(self.m_f - d_edge) ** 2 * edge).sum() / edge.sum().clamp_min(1)

    def _repulsion(self, prob: Tensor) -> Tensor:
        """Linear hinge on 1 - soft IoU over each influencer's nearest other influencers."""
        inter = prob @ prob.T                                                     # (M, M)
        size = prob.sum(1)
        iou = inter / (size[:, None] + size[None, :] - inter).clamp_min(1e-6)
        d = 1 - iou
        m = len(d)
        if m < 2:
            return prob.sum() * 0.0
        d = d + torch.eye(m, dtype=d.dtype, device=d.device) * 1e6              # no self edge
        k = min(self.knn, m - 1)
        nearest = d.detach().topk(k, dim=1, largest=False).indices                # (M, k)
        d_edge = d.gather(1, nearest)
        edge = d_edge.detach() < self.m_i
        return (F.relu(self.m_i - d_edge) * edge).sum() / edge.sum().clamp_min(1)
