"""InfluencerCriterion: drop-in replacement for OneFormer3D's ``inst_criterion``.

Pure PyTorch; registered in mmdet3d's MODELS only by ``mmdet3d_plugin``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .loss import MaskInfluencerLoss
from .ops import at_least_fp32, iter_layers

__all__ = ['InfluencerCriterion']


class InfluencerCriterion:
    """Matching-free instance criterion with OneFormer3D's ``inst_criterion`` interface.

    Per scene and per prediction layer:

    * mask loss: :class:`MaskInfluencerLoss` on the query masks vs the GT masks;
    * classification: each query's target is the GT instance with the highest
      mean mask logit over that instance's points, if that mean is > 0, else
      no-object; cross-entropy with class weights
      ``[1] * num_classes + [non_object_weight]``;
    * objectness: MSE between the query's score and the IoU of its binarised
      mask with its assigned GT, over assigned queries whose IoU > 0.5 (upstream's
      rule). OneFormer3D's S3DIS inference multiplies class probabilities by this
      score, so an untrained head would make the AP comparison unfair.

    Reductions follow upstream's InstanceCriterion: classification and mask
    losses are means over the batch; the score loss is the sum of the per-scene
    MSEs divided by the batch size. Every ``aux_outputs`` layer gets the same loss,
    summed (deep supervision).

    Args:
        loss_weight: ``[cls, influencer, score]``; a 2-element list means no
            score loss.
        num_classes: number of instance classes (no-object is one more).
        non_object_weight: cross-entropy weight of the no-object class.
        attr_weight, rep_weight, bg_weight, rep_margin, temperature: passed to
            :class:`MaskInfluencerLoss`.
        excl_weight, mask_norm: opt-in variants of :class:`MaskInfluencerLoss`;
            the defaults (0.0, 'sigmoid') are the original formulation.
        iter_matcher: accepted for config compatibility with upstream's
            InstanceCriterion; meaningless here (nothing is matched).
    """

    def __init__(self, loss_weight: Sequence[float], num_classes: int,
                 non_object_weight: float, attr_weight: float = 1.0,
                 rep_weight: float = 1.0, bg_weight: float = 1.0,
                 rep_margin: float = 1.0, temperature: float = 1.0,
                 iter_matcher: bool = True, excl_weight: float = 0.0,
                 mask_norm: str = 'sigmoid') -> None:
        if len(loss_weight) not in (2, 3):
            raise ValueError(
                'InfluencerCriterion.loss_weight must be [cls, influencer] or '
                f'[cls, influencer, score], got {list(loss_weight)}')
        self.loss_weight = [float(w) for w in loss_weight]
        self.num_classes = num_classes
        self.class_weight = [1.0] * num_classes + [float(non_object_weight)]
        self.iter_matcher = iter_matcher
        self.mask_loss = MaskInfluencerLoss(
            attr_weight=attr_weight, rep_weight=rep_weight, bg_weight=bg_weight,
            rep_margin=rep_margin, temperature=temperature, excl_weight=excl_weight,
            mask_norm=mask_norm)

    def __call__(self, pred: dict, insts: Sequence[Any]) -> dict[str, Tensor]:
        """Loss over all prediction layers.

        Args:
            pred: ``cls_preds`` list (B) of float (M, C+1); ``scores`` list of
                float (M, 1) or None (or None itself); ``masks`` list of float
                (M, S_i); optional ``aux_outputs`` list of such dicts.
            insts: B objects with ``sp_masks`` bool (K_i, S_i) and
                ``labels_3d`` long (K_i,).

        Returns:
            ``inst_loss`` (differentiable total) and detached float scalars
            ``inst_cls``, ``inst_attr``, ``inst_rep``, ``inst_bg``,
            ``inst_excl``, ``inst_score`` (unweighted, summed over layers). Their keys avoid
            the word "loss" because mmengine sums every such key.
        """
        totals: dict[str, Tensor] = {}
        for layer in iter_layers(pred):
            for key, value in self._layer(layer, insts).items():
                totals[key] = totals[key] + value if key in totals else value
        loss = totals.pop('total')
        out = {'inst_loss': loss}
        out.update({f'inst_{k}': v.detach() for k, v in totals.items()})
        return out

    def _layer(self, layer: dict, insts: Sequence[Any]) -> dict[str, Tensor]:
        """Weighted total and unweighted parts for one prediction layer."""
        scores = layer.get('scores') or [None] * len(insts)
        parts = {k: [] for k in ('cls', 'attr', 'rep', 'bg', 'excl', 'inf', 'score')}
        for cls_pred, score, mask, inst in zip(layer['cls_preds'], scores, layer['masks'], insts):
            scene = self._scene(at_least_fp32(cls_pred), score, mask, inst)
            for key, value in scene.items():
                parts[key].append(value)
        batch = len(parts['cls'])
        mean = {k: torch.stack(v).mean() for k, v in parts.items() if k != 'score'}
        # Upstream: sum of per-scene score MSEs over the batch size.
        mean['score'] = (torch.stack(parts['score']).sum() / batch
                         if parts['score'] else mean['cls'].detach() * 0.0)
        w = self.loss_weight
        total = w[0] * mean['cls'] + w[1] * mean.pop('inf')
        if len(w) == 3:
            total = total + w[2] * mean['score']
        mean['total'] = total
        return mean

    def _scene(self, cls_pred: Tensor, score: Tensor | None, mask: Tensor,
               inst: Any) -> dict[str, Tensor]:
        """Loss parts for one scene of one layer (score only when trained)."""
        sp_masks, labels = inst.sp_masks, inst.labels_3d
        influencer = self.mask_loss(mask, sp_masks)
        with torch.no_grad():
            assigned, iou = self._assign(at_least_fp32(mask), sp_masks)
        hit = assigned >= 0
        target = (torch.where(hit, labels.to(assigned.device)[assigned.clamp_min(0)], self.num_classes)
                  if len(labels) else torch.full_like(assigned, self.num_classes))
        out = {
            'cls': F.cross_entropy(cls_pred, target, cls_pred.new_tensor(self.class_weight)),
            'inf': influencer['loss'], 'attr': influencer['attractive'],
            'rep': influencer['repulsive'], 'bg': influencer['background'],
            'excl': influencer['exclusive'],
        }
        if score is not None and len(self.loss_weight) == 3:
            # MSE over assigned queries with IoU > 0.5, as a masked mean: a scene
            # with none contributes 0, exactly as upstream skips it in its sum
            # over scenes, and nothing waits for the GPU to decide a branch.
            score = at_least_fp32(score)[:, 0]
            keep = (hit & (iou > 0.5)).to(score.dtype)
            out['score'] = ((score - iou.to(score.dtype)) ** 2 * keep).sum() / keep.sum().clamp_min(1)
        return out

    @staticmethod
    def _assign(mask: Tensor, sp_masks: Tensor) -> tuple[Tensor, Tensor]:
        """Each query's GT (highest mean logit over the GT's points, if > 0).

        Args:
            mask: float (M, S) logits.
            sp_masks: bool (K, S).

        Returns:
            long (M,) GT index or -1 (no-object); float (M,) IoU of the
            binarised query mask with its GT (0 where unassigned).
        """
        n_queries, n_points = mask.shape
        if sp_masks.shape[0] == 0:
            none = torch.full((n_queries,), -1, dtype=torch.long, device=mask.device)
            return none, mask.new_zeros(n_queries)
        # GT rows plus a row of ones: one product then gives per-GT sums and totals.
        gt = torch.cat([sp_masks.to(mask.dtype), mask.new_ones(1, n_points)])
        sizes = gt[:-1].sum(1)
        mean_logit = (mask @ gt[:-1].T) / sizes.clamp_min(1)[None, :]  # (M, K)
        mean_logit = mean_logit.masked_fill(sizes[None, :] == 0, float('-inf'))
        best, assigned = mean_logit.max(1)
        assigned = torch.where(best > 0, assigned, -1)
        # sigmoid(x) >= 0.5 as x >= 0: identical except for |x| < 1e-7, where
        # float32 sigmoid rounds to 0.5.
        counts = (mask >= 0).to(mask.dtype) @ gt.T  # (M, K + 1)
        safe = assigned.clamp_min(0)
        inter = counts.gather(1, safe[:, None])[:, 0]
        iou = inter / (counts[:, -1] + sizes[safe] - inter + 1e-6)
        return assigned, torch.where(assigned >= 0, iou, 0.0)
