"""PowerSoftMinCriterion: the loss author's Power-SoftMin (PM3) on OneFormer3D's masks. Pure PyTorch.

Written from the formulas of murnanedaniel/InfluencerFormer's DETR criterion
(``_pm3_loss``, the author's newest matching-free candidate; docs/influencer-loss.md),
with its box terms replaced by the mask setting's BCE and Dice: no code copied.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .hungarian import binary_iou_rows
from .ops import at_least_fp32, iter_layers, pair_mask_terms

__all__ = ['PowerSoftMinCriterion']


class PowerSoftMinCriterion:
    r"""Power-SoftMin: soft minima over queries (coverage) and over GTs (precision), raised to a power.

    Per scene and prediction layer, for queries m and GTs g, with class logits
    :math:`z_m`, :math:`p_m = \mathrm{softmax}(z_m)` and the per-pair terms
    :math:`T_{cls} = -\log p_m[y_g]`, :math:`T_{bce}` (mean sigmoid BCE over points),
    :math:`T_{dice}` (+1-smoothed Dice):

    * cost (upstream's Hungarian cost, as the author drives PM3 by DETR's):
      :math:`C_{mg} = -w_{cls} p_m[y_g] + w_{bce} T_{bce} + w_{dice} T_{dice}`;
    * weights, NOT detached: :math:`W^{cov} = \mathrm{softmax}_m(-C/\tau)` per GT,
      :math:`W^{prec} = \mathrm{softmax}_g(-C/\tau)` per query;
    * coverage: :math:`\mathrm{mean}_g \sum_c w_c (\sum_m W^{cov}_{mg} T_{c,mg})^p`;
      precision: :math:`\mathrm{mean}_m \sum_c w_c (\sum_g W^{prec}_{mg} T_{c,mg})^p`
      (every query, no gating); with ``root`` each per-GT (per-query) sum is taken to
      the power 1/p (the author's ``pm3_normalize``: the loss in the units of Hungarian's);
    * background: :math:`\mathrm{mean}_m (1 - \max_g W^{prec}_{mg}) \, \mathrm{CE}(z_m, \varnothing)`,
      the gate detached, unweighted CE (with one GT the gate is 0: no query is pushed to no-object);
    * a scene without GTs: ``bg_weight`` x the mean CE toward no-object.

    ``pm3 = cov + prec + bg_weight * bg``. Beyond the author's DETR loss, for the
    S3DIS model as every arm here: the objectness score is trained with MSE against
    the IoU with each query's soft-nearest GT (argmax of its precision weights)
    where that IoU > 0.5 (upstream's rule; S3DIS inference multiplies it into the
    class scores), and every auxiliary decoder layer gets the same loss (summed,
    as Hungarian's deep supervision). Scenes are averaged as the author does.

    Args:
        loss_weight: ``[pm3, score]``.
        num_classes: instance classes; the last logit is no-object.
        cost_weight: ``[w_cls, w_bce, w_dice]`` in the cost and on the components
            (upstream's Hungarian matcher weights).
        temperature: tau of the soft minima (the author's 0.12).
        power: p (the author's 3).
        root: the p-th root per GT / per query (the author's ``pm3_normalize``); a 1e-12
            floor under the root keeps its gradient finite at an exact 0.
        bg_weight: the no-object coefficient (the author's ``eos_coefficient``, 0.1).
    """

    def __init__(self, loss_weight: Sequence[float], num_classes: int, cost_weight: Sequence[float] = (0.5, 1.0, 1.0),
                 temperature: float = 0.12, power: float = 3.0, root: bool = False, bg_weight: float = 0.1) -> None:
        if len(loss_weight) != 2 or len(cost_weight) != 3:
            raise ValueError(f'PowerSoftMinCriterion: loss_weight is [pm3, score] and cost_weight [cls, bce, dice], '
                             f'got {list(loss_weight)} and {list(cost_weight)}')
        self.loss_weight = [float(w) for w in loss_weight]
        self.cost_weight = [float(w) for w in cost_weight]
        self.num_classes, self.temperature, self.power = num_classes, float(temperature), float(power)
        self.root, self.bg_weight = bool(root), float(bg_weight)

    def __call__(self, pred: dict, insts: Sequence[Any]) -> dict[str, Tensor]:
        """Loss over all prediction layers (upstream's ``inst_criterion`` interface).

        Args:
            pred: ``cls_preds`` list (B) of float (M, C+1); ``scores`` list of (M, 1) or None;
                ``masks`` list of float (M, S_i); optional ``aux_outputs``.
            insts: B objects with ``sp_masks`` bool (K_i, S_i), ``labels_3d`` long (K_i,).

        Returns:
            ``inst_loss`` and detached parts summed over layers: ``inst_cov``, ``inst_prec``,
            ``inst_bg``, ``inst_score``.
        """
        totals: dict[str, Tensor] = {}
        for layer in iter_layers(pred):
            scores = layer.get('scores') or [None] * len(insts)
            parts = [self.scene(at_least_fp32(c), s, at_least_fp32(m), inst)
                     for c, s, m, inst in zip(layer['cls_preds'], scores, layer['masks'], insts)]
            for key in parts[0]:
                value = torch.stack([p[key] for p in parts]).mean()
                totals[key] = totals[key] + value if key in totals else value
        w = self.loss_weight
        loss = w[0] * (totals['cov'] + totals['prec'] + self.bg_weight * totals['bg']) + w[1] * totals['score']
        return {'inst_loss': loss, **{f'inst_{k}': v.detach() for k, v in totals.items()}}

    def scene(self, cls_pred: Tensor, score: Tensor | None, mask: Tensor, inst: Any) -> dict[str, Tensor]:
        """Unweighted ``cov``, ``prec``, ``bg``, ``score`` of one scene and layer."""
        labels = inst.labels_3d.to(cls_pred.device)
        no_object = torch.full((len(cls_pred),), self.num_classes, dtype=torch.long, device=cls_pred.device)
        bg_ce = F.cross_entropy(cls_pred, no_object, reduction='none')
        zero = mask.sum() * 0.0 + cls_pred.sum() * 0.0
        if len(labels) == 0:
            return {'cov': zero, 'prec': zero, 'bg': bg_ce.mean(), 'score': zero}
        gt = inst.sp_masks.to(mask.device, mask.dtype)
        log_p = F.log_softmax(cls_pred, -1)
        bce, dice = pair_mask_terms(mask, gt)
        terms = torch.stack([-log_p[:, labels], bce, dice])                    # (3, M, K)
        w = mask.new_tensor(self.cost_weight)
        cost = -w[0] * log_p.exp()[:, labels] + w[1] * bce + w[2] * dice      # (M, K), differentiable
        w_cov = torch.softmax(-cost / self.temperature, dim=0)
        w_prec = torch.softmax(-cost / self.temperature, dim=1)
        cov = self._power_sum((w_cov[None] * terms).sum(1), w)                  # (K,)
        prec = self._power_sum((w_prec[None] * terms).sum(2), w)                # (M,)
        matched = w_prec.max(1).values.detach().clamp(0, 1)
        out = {'cov': cov.mean(), 'prec': prec.mean(), 'bg': ((1 - matched) * bg_ce).mean()}
        out['score'] = self._score(score, mask, gt, w_prec) if score is not None else zero
        return out

    def _power_sum(self, soft: Tensor, w: Tensor) -> Tensor:
        """``sum_c w_c soft_c^p`` per column of ``soft`` (3, N), with the optional 1/p root."""
        raw = (w[:, None] * soft.clamp_min(0) ** self.power).sum(0)
        return raw.clamp_min(1e-12) ** (1 / self.power) if self.root else raw

    @staticmethod
    def _score(score: Tensor, mask: Tensor, gt: Tensor, w_prec: Tensor) -> Tensor:
        """MSE of the score against the IoU with each query's soft-nearest GT, where that IoU > 0.5."""
        score = at_least_fp32(score)[:, 0]
        with torch.no_grad():
            iou = binary_iou_rows(mask, gt[w_prec.argmax(1)])
            keep = (iou > 0.5).to(score.dtype)
        return ((score - iou) ** 2 * keep).sum() / keep.sum().clamp_min(1)
