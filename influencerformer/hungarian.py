"""Reference Hungarian criterion with OneFormer3D's InstanceCriterion semantics.

Written from upstream's documented behaviour and its code as read (filaPro/oneformer3d e2a9dd2, CC BY-NC: nothing copied).
Used by the native backend and as the timing baseline; on the upstream backend
the hungarian arm runs upstream's own InstanceCriterion.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .ops import iter_layers, pair_mask_terms

__all__ = ['HungarianCriterion', 'HungarianMatcher', 'mask_dice_loss']

Indices = tuple[Tensor, Tensor]


def class_cost(x: Tensor, gt_masks: Tensor, labels: Tensor) -> Tensor:
    """(M, K) negative softmax probability of each GT's class; x = class logits (M, C+1)."""
    return -x.softmax(-1)[:, labels]


def mask_bce_cost(x: Tensor, gt_masks: Tensor, labels: Tensor) -> Tensor:
    """(M, K) mean over points of the sigmoid BCE; x = mask logits (M, S)."""
    pos = F.softplus(-x)  # BCE against target 1
    neg = F.softplus(x)   # BCE against target 0
    return (pos @ gt_masks.T + neg @ (1 - gt_masks).T) / x.shape[1]


def mask_dice_cost(x: Tensor, gt_masks: Tensor, labels: Tensor) -> Tensor:
    """(M, K) Dice loss with +1 smoothing; x = mask logits (M, S)."""
    prob = x.sigmoid()
    inter = 2 * prob @ gt_masks.T
    denom = prob.sum(-1)[:, None] + gt_masks.sum(-1)[None, :]
    return 1 - (inter + 1) / (denom + 1)


# Cost type names as upstream's config spells them -> (which input, function).
_COSTS: dict[str, tuple[str, Callable[[Tensor, Tensor, Tensor], Tensor]]] = {
    'QueryClassificationCost': ('cls', class_cost),
    'MaskBCECost': ('mask', mask_bce_cost),
    'MaskDiceCost': ('mask', mask_dice_cost),
}


class HungarianMatcher:
    """One-to-one assignment on the weighted sum of costs (scipy, on CPU).

    Args:
        costs: list of ``dict(type=<name in _COSTS>, weight=float)``.
    """

    def __init__(self, costs: Sequence[Mapping[str, Any]]) -> None:
        self.costs = []
        for cost in costs:
            name = cost.get('type')
            if name not in _COSTS or set(cost) != {'type', 'weight'}:
                raise ValueError(
                    f'matcher cost {dict(cost)} is not supported: use '
                    f'dict(type=one of {sorted(_COSTS)}, weight=float)')
            self.costs.append((*_COSTS[name], float(cost['weight'])))

    @torch.no_grad()
    def __call__(self, cls_pred: Tensor, mask: Tensor, labels: Tensor,
                 gt_masks: Tensor) -> Indices:
        """Match queries to GTs.

        Args:
            cls_pred: float (M, C+1); mask: float (M, S) logits;
            labels: long (K,); gt_masks: bool (K, S).

        Returns:
            long (n,) query ids and long (n,) GT ids, n = min(M, K).
        """
        if len(labels) == 0:
            return labels.new_empty((0,)), labels.new_empty((0,))
        total = self.cost(cls_pred, mask, labels, gt_masks.float())
        rows, cols = linear_sum_assignment(total.cpu().numpy())
        return labels.new_tensor(rows), labels.new_tensor(cols)


    def cost(self, cls_pred: Tensor, mask: Tensor, labels: Tensor, gt: Tensor) -> Tensor:
        """The weighted cost (M, K); gt float (K, S) 0/1.

        BCE and Dice come from one sweep over the logits (``ops.pair_mask_terms``: one
        log-sigmoid, its exponential for Dice, one product with the GT masks) rather
        than the two softplus passes and three products of their definitions above:
        the same values up to float rounding (tests/test_hungarian.py), a third of the
        (M, S) passes.
        """
        fused = {}
        if any(fn in (mask_bce_cost, mask_dice_cost) for _, fn, _ in self.costs):
            fused[mask_bce_cost], fused[mask_dice_cost] = pair_mask_terms(mask, gt)
        return sum(weight * (fused[fn] if fn in fused else fn(cls_pred if src == 'cls' else mask, gt, labels))
                   for src, fn, weight in self.costs)


def build_matcher(cfg: Mapping[str, Any]) -> HungarianMatcher:
    """Matcher from upstream's config dict ``dict(type='HungarianMatcher', costs=[...])``."""
    if cfg.get('type') != 'HungarianMatcher' or set(cfg) != {'type', 'costs'}:
        raise ValueError(
            f'matcher {dict(cfg)} is not supported: the reference criterion takes '
            "dict(type='HungarianMatcher', costs=[...]) (S3DIS's matcher)")
    return HungarianMatcher(cfg['costs'])


def mask_dice_loss(mask: Tensor, target: Tensor) -> Tensor:
    """Mean over rows of the +1-smoothed Dice loss. mask (n, S) logits, target (n, S) 0/1."""
    prob = mask.sigmoid()
    inter = 2 * (prob * target).sum(-1)
    denom = prob.sum(-1) + target.sum(-1)
    return (1 - (inter + 1) / (denom + 1)).mean()


class HungarianCriterion:
    """Hungarian matching + CE / BCE / Dice / objectness MSE, as upstream.

    Per layer: CE over all queries (matched queries take their GT's class, the
    rest no-object, class weights ``[1]*num_classes + [non_object_weight]``),
    mean over the batch; BCE and Dice on matched pairs and the objectness MSE
    against the matched IoU (pairs with IoU > 0.5), each summed over the scenes
    that have GTs and divided by the batch size -- except the final layer's
    Dice, which upstream does NOT divide by the batch size (a quirk kept here).
    Then ``fix_dice_loss_weight`` multiplies Dice by ``4 / batch`` and
    ``fix_mean_loss`` rescales BCE and Dice by ``batch / n_scenes_with_gts``.
    With ``iter_matcher`` every aux layer is matched anew, otherwise it reuses
    the final layer's matching. Total = final layer + sum of aux layers.

    Args:
        matcher: ``dict(type='HungarianMatcher', costs=[dict(type, weight), ...])``.
        loss_weight: 4 weights ``[cls, bce, dice, score]``.
        non_object_weight: CE weight of the no-object class.
        num_classes: number of instance classes.
        fix_dice_loss_weight, iter_matcher, fix_mean_loss: as upstream.
    """

    def __init__(self, matcher: Mapping[str, Any], loss_weight: Sequence[float],
                 non_object_weight: float, num_classes: int,
                 fix_dice_loss_weight: bool, iter_matcher: bool,
                 fix_mean_loss: bool = False) -> None:
        if len(loss_weight) != 4:
            raise ValueError('HungarianCriterion.loss_weight must be '
                             f'[cls, bce, dice, score], got {list(loss_weight)}')
        self.matcher = build_matcher(matcher)
        self.loss_weight = [float(w) for w in loss_weight]
        self.class_weight = [1.0] * num_classes + [float(non_object_weight)]
        self.num_classes = num_classes
        self.fix_dice_loss_weight = fix_dice_loss_weight
        self.iter_matcher = iter_matcher
        self.fix_mean_loss = fix_mean_loss

    def __call__(self, pred: dict, insts: Sequence[Any]) -> dict[str, Tensor]:
        """Loss over all layers. Same ``pred`` / ``insts`` contract as InfluencerCriterion.

        Returns:
            ``inst_loss`` (differentiable) and detached, unweighted parts summed
            over layers: ``inst_cls``, ``inst_bce``, ``inst_dice``, ``inst_score``.
        """
        layers = iter_layers(pred)
        final = self.match(layers[0], insts)
        totals = self._layer(layers[0], insts, final, is_final=True)
        for layer in layers[1:]:
            indices = self.match(layer, insts) if self.iter_matcher else final
            for key, value in self._layer(layer, insts, indices, is_final=False).items():
                totals[key] = totals[key] + value
        out = {'inst_loss': totals.pop('total')}
        out.update({f'inst_{k}': v.detach() for k, v in totals.items()})
        return out

    def match(self, layer: dict, insts: Sequence[Any]) -> list[Indices]:
        """Per-scene (query ids, GT ids) for one layer."""
        return [self.matcher(c, m, inst.labels_3d, inst.sp_masks)
                for c, m, inst in zip(layer['cls_preds'], layer['masks'], insts)]

    def _layer(self, layer: dict, insts: Sequence[Any], indices: list[Indices],
               is_final: bool) -> dict[str, Tensor]:
        """Weighted total and unweighted parts of one layer, with upstream's reductions."""
        batch = len(layer['masks'])
        scores = layer.get('scores') or [None] * batch
        cls_terms, bce, dice, score_terms = [], [], [], []
        for cls_pred, score, mask, inst, (q, g) in zip(
                layer['cls_preds'], scores, layer['masks'], insts, indices):
            cls_terms.append(self._cls_loss(cls_pred, inst.labels_3d, q, g))
            if len(inst) == 0:
                continue
            pred_mask, target = mask[q], inst.sp_masks[g].float()
            bce.append(F.binary_cross_entropy_with_logits(pred_mask, target))
            dice.append(mask_dice_loss(pred_mask, target))
            if score is not None:
                with torch.no_grad():
                    iou = binary_iou_rows(pred_mask, target)
                keep = iou > 0.5
                if bool(keep.any()):
                    score_terms.append(F.mse_loss(score[q][keep, 0], iou[keep]))
        zero = torch.stack(cls_terms).sum() * 0.0
        parts = {'cls': torch.stack(cls_terms).mean(),
                 'score': torch.stack(score_terms).sum() / batch if score_terms else zero}
        parts['bce'], parts['dice'] = self._mask_reductions(bce, dice, batch, is_final, zero)
        w = self.loss_weight
        parts['total'] = (w[0] * parts['cls'] + w[1] * parts['bce']
                          + w[2] * parts['dice'] + w[3] * parts['score'])
        return parts

    def _cls_loss(self, cls_pred: Tensor, labels: Tensor, q: Tensor, g: Tensor) -> Tensor:
        """Weighted CE over all queries; unmatched queries target no-object."""
        target = torch.full((len(cls_pred),), cls_pred.shape[1] - 1,
                            dtype=torch.long, device=cls_pred.device)
        target[q] = labels[g]
        return F.cross_entropy(cls_pred, target, cls_pred.new_tensor(self.class_weight))

    def _mask_reductions(self, bce: list[Tensor], dice: list[Tensor], batch: int,
                         is_final: bool, zero: Tensor) -> tuple[Tensor, Tensor]:
        """Upstream's BCE / Dice reductions, quirks included (see class docstring)."""
        if not bce:
            return zero, zero
        bce_loss = torch.stack(bce).sum() / batch
        dice_loss = torch.stack(dice).sum()
        if not is_final:
            dice_loss = dice_loss / batch
        if self.fix_dice_loss_weight:
            dice_loss = dice_loss / batch * 4
        if self.fix_mean_loss:
            bce_loss = bce_loss * batch / len(bce)
            dice_loss = dice_loss * batch / len(dice)
        return bce_loss, dice_loss


def binary_iou_rows(masks: Tensor, gt: Tensor) -> Tensor:
    """Row-wise IoU of binarised logits with 0/1 targets, both (n, S) -> (n,).

    Binarised as upstream's get_iou does, sigmoid >= 0.5 (not x >= 0: float32
    sigmoid rounds to 0.5 for tiny negative logits), with its +1e-6.
    """
    pred = (masks.sigmoid() >= 0.5).to(gt.dtype)
    inter = (pred * gt).sum(-1)
    union = gt.sum(-1) + pred.sum(-1) - inter
    return inter / (union + 1e-6)
