"""AnchoredInfluencerCriterion: an Influencer loss on masks with queries anchored at points (influencer-anchored).

The first mask adaptation of Murnane's InfluencerNet loss here (its order of
means and its linear dense hinge differ from InfluencerNet's:
``influencerformer.influencer_net`` is the faithful one, docs/influencer-loss.md).

Pure PyTorch; no mm* imports.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .ops import at_least_fp32, iter_layers

__all__ = ['AnchoredInfluencerCriterion', 'anchors_of', 'candidates', 'class_targets', 'point_owner']


def anchors_of(pred: dict, criterion: str) -> list[Tensor]:
    """``pred['query_anchors']``: per scene, long (M,) the point each instance query is anchored at.

    Raises:
        ValueError: the model does not anchor its queries (names the setting that does).
    """
    anchors = pred.get('query_anchors')
    if anchors is None:
        raise ValueError(f'{criterion} needs pred["query_anchors"]: a model whose instance queries are anchored '
                         'at points (native backend: model.decoder.query_init: anchored)')
    return anchors


def point_owner(sp_masks: Tensor) -> Tensor:
    """long (S,): the GT each point belongs to, -1 where none does; ``sp_masks`` bool (K, S)."""
    owner = torch.full((sp_masks.shape[1],), -1, dtype=torch.long, device=sp_masks.device)
    k, s = sp_masks.nonzero(as_tuple=True)
    owner[s] = k
    return owner


def candidates(anchors: Tensor, sp_masks: Tensor) -> Tensor:
    """Each query's candidate instance: the GT holding its anchor point, -1 where none does.

    Args:
        anchors: long (M,) point (voxel) index each query is anchored at.
        sp_masks: bool (K, S) GT masks.

    Returns:
        long (M,).
    """
    owner = point_owner(sp_masks)
    return owner[anchors.to(owner.device)]


def class_targets(owner: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """long (M,): each query's class target, its candidate GT's class, no-object (``num_classes``) without one."""
    return torch.where(owner >= 0, labels[owner.clamp_min(0)] if len(labels) else owner, num_classes)


class AnchoredInfluencerCriterion:
    r"""Influencer loss with queries as influencers anchored at points (the model must anchor them).

    Query m is anchored at point :math:`v_m`; its candidate instance :math:`c_m`
    is the GT that contains :math:`v_m` (none when no GT does). Distances
    :math:`d_{ms} = 1 - \sigma(x_{ms}) \in [0, 1]`. Per scene and layer:

    * attractive (Murnane's geometric mean): for every GT k with candidates
      :math:`Q_k = \{m : c_m = k\} \ne \emptyset`, the mean over its points s of
      :math:`\exp(\frac{1}{|Q_k|}\sum_{m \in Q_k} \log d_{ms})`, then the mean over
      such GTs. Bounded below by 0, and 0 as soon as ONE influencer covers s:
      no reward for many queries on one instance (the original loss's flaw);
    * repulsive (the negative hinge the mask version had dropped): mean over
      foreground points s (of GT k) and queries m with :math:`c_m \ne k` of
      :math:`\max(0, \mathrm{margin} - d_{ms})`: other instances' influencers
      are pushed off s;
    * background: mean :math:`\sigma(x_{ms})` over all queries and points of no GT;
    * class: query m's target is the class of :math:`c_m` (no-object without
      one), cross-entropy with upstream's class weights: every influencer
      trains the class head;
    * score: MSE of :math:`s_m` against the IoU of query m with :math:`c_m`
      where that IoU > 0.5 (upstream's rule).

    ``loss = w_cls*cls + w_inf*(attr_weight*attractive + rep_weight*repulsive
    + bg_weight*background) + w_score*score``.

    Relation to Hungarian: the assignment is given by where each query was
    anchored, not solved; several queries may share an instance (inference's NMS
    then keeps one). Nothing is matched. A GT no query is anchored in has no
    influencer; its points still repel every query (it cannot be recovered).

    Reads ``pred['query_anchors']`` (list of B long (M,) tensors); a model whose
    queries are not anchored at points cannot use this criterion.

    Args:
        loss_weight: ``[cls, influencer, score]``.
        num_classes, non_object_weight: as upstream's InstanceCriterion.
        attr_weight, rep_weight, bg_weight: term weights.
        rep_margin: hinge margin on d (1.0: the hinge is :math:`\sigma(x)`).
        rep_norm: ``pairs`` (the mean over every (point, other instance's query) pair) or
            ``instance`` (repulsion-balanced: per GT the mean over its points of the mean
            over the other instances' queries, then the mean over GTs, as the attraction
            is normalised: a small instance's repulsion weighs as much as a wall's).
        iter_matcher: accepted for config compatibility; meaningless here.
    """

    def __init__(self, loss_weight: Sequence[float], num_classes: int, non_object_weight: float,
                 attr_weight: float = 1.0, rep_weight: float = 1.0, bg_weight: float = 1.0,
                 rep_margin: float = 1.0, rep_norm: str = 'pairs', iter_matcher: bool = True) -> None:
        if len(loss_weight) != 3:
            raise ValueError(f'AnchoredInfluencerCriterion.loss_weight must be [cls, influencer, score], '
                             f'got {list(loss_weight)}')
        if rep_norm not in ('pairs', 'instance'):
            raise ValueError(f"AnchoredInfluencerCriterion.rep_norm must be 'pairs' or 'instance', got {rep_norm!r}")
        self.rep_norm = rep_norm
        self.loss_weight = [float(w) for w in loss_weight]
        self.num_classes = num_classes
        self.class_weight = [1.0] * num_classes + [float(non_object_weight)]
        self.attr_weight, self.rep_weight, self.bg_weight = attr_weight, rep_weight, bg_weight
        self.rep_margin, self.iter_matcher = rep_margin, iter_matcher

    def __call__(self, pred: dict, insts: Sequence[Any]) -> dict[str, Tensor]:
        """Loss over all layers. ``pred`` as InfluencerCriterion's plus ``query_anchors``.

        Returns:
            ``inst_loss`` and detached unweighted parts summed over layers:
            ``inst_cls``, ``inst_attr``, ``inst_rep``, ``inst_bg``, ``inst_score``.
        """
        anchors = anchors_of(pred, type(self).__name__)
        owners = [candidates(a, inst.sp_masks.bool()) for a, inst in zip(anchors, insts)]
        totals: dict[str, Tensor] = {}
        for layer in iter_layers(pred):
            for key, value in self._layer(layer, insts, owners).items():
                totals[key] = totals[key] + value if key in totals else value
        out = {'inst_loss': totals.pop('total')}
        out.update({f'inst_{k}': v.detach() for k, v in totals.items()})
        return out

    def _layer(self, layer: dict, insts: Sequence[Any], owners: list[Tensor]) -> dict[str, Tensor]:
        scores = layer.get('scores') or [None] * len(insts)
        parts: dict[str, list[Tensor]] = {k: [] for k in ('cls', 'attr', 'rep', 'bg', 'score')}
        for cls_pred, score, mask, inst, owner in zip(layer['cls_preds'], scores, layer['masks'], insts, owners):
            for key, value in self.scene(at_least_fp32(cls_pred), score, at_least_fp32(mask), inst, owner).items():
                parts[key].append(value)
        mean = {k: torch.stack(v).mean() for k, v in parts.items()}
        w = self.loss_weight
        influencer = self.attr_weight * mean['attr'] + self.rep_weight * mean['rep'] + self.bg_weight * mean['bg']
        mean['total'] = w[0] * mean['cls'] + w[1] * influencer + w[2] * mean['score']
        return mean

    def scene(self, cls_pred: Tensor, score: Tensor | None, mask: Tensor, inst: Any,
              owner: Tensor) -> dict[str, Tensor]:
        """Unweighted parts of one scene of one layer; ``owner`` (M,) each query's candidate GT or -1."""
        sp = inst.sp_masks.bool().to(mask.device)
        labels = inst.labels_3d.to(mask.device)
        gt = sp.to(mask.dtype)
        zero = mask.sum() * 0.0
        owner_of = point_owner(sp)
        fg = owner_of >= 0
        log_d = F.logsigmoid(-mask)                                   # log(1 - sigmoid(x)), (M, S)
        attr = zero
        if len(labels):
            member = (owner[None, :] == torch.arange(len(labels), device=mask.device)[:, None]).to(mask.dtype)
            n_inf = member.sum(1)                                      # influencers per GT, (K,)
            has = n_inf > 0
            if bool(has.any()):
                gm = torch.exp((member[has] / n_inf[has, None]) @ log_d)   # (K', S) geometric means
                attr = ((gm * gt[has]).sum(1) / gt[has].sum(1).clamp_min(1)).mean()
        other = fg[None, :] & (owner[:, None] != owner_of[None, :])      # (M, S): s is another instance's
        hinge = F.relu(self.rep_margin - torch.exp(log_d))
        rep = self._repulsion(hinge * other, other, gt) if bool(fg.any()) else zero
        bg = torch.sigmoid(mask[:, ~fg]).mean() if bool((~fg).any()) else zero
        target = class_targets(owner, labels, self.num_classes)
        out = {'attr': attr, 'rep': rep, 'bg': bg,
               'cls': F.cross_entropy(cls_pred, target, cls_pred.new_tensor(self.class_weight))}
        out['score'] = self._score(score, mask, gt, owner) if score is not None and len(labels) else zero
        return out

    def _repulsion(self, hinge: Tensor, other: Tensor, gt: Tensor) -> Tensor:
        """The negative hinge's mean: over all pairs, or per GT then over GTs (``rep_norm``).

        Args:
            hinge: (M, S) hinge values, zero outside ``other``; other: bool (M, S); gt: (K, S) 0/1.
        """
        if self.rep_norm == 'pairs':
            return hinge.sum() / other.sum().clamp_min(1)
        per_point = hinge.sum(0) / other.sum(0).clamp_min(1)             # (S,): mean over other instances' queries
        per_gt = (gt @ per_point) / gt.sum(1).clamp_min(1)               # (K,): mean over the GT's points
        return per_gt[gt.sum(1) > 0].mean()

    @staticmethod
    def _score(score: Tensor, mask: Tensor, gt: Tensor, owner: Tensor) -> Tensor:
        """MSE of the score against the IoU with the candidate, over queries with IoU > 0.5."""
        score = at_least_fp32(score)[:, 0]
        with torch.no_grad():
            pred = (mask.sigmoid() >= 0.5).to(gt.dtype)
            target = gt[owner.clamp_min(0)]
            inter = (pred * target).sum(1)
            iou = inter / (pred.sum(1) + target.sum(1) - inter + 1e-6)
            keep = ((owner >= 0) & (iou > 0.5)).to(score.dtype)
        return ((score - iou) ** 2 * keep).sum() / keep.sum().clamp_min(1)
