"""Small tensor helpers shared by the criteria."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ['iter_layers', 'at_least_fp32', 'InstanceGT', 'pair_mask_terms']


def at_least_fp32(x: Tensor) -> Tensor:
    """fp16/bf16 -> float32; float32/float64 unchanged (gradcheck runs in float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def iter_layers(pred: dict) -> list[dict]:
    """The final prediction followed by every auxiliary (deep-supervision) one.

    Args:
        pred: dict with lists ``cls_preds``, ``scores``, ``masks`` and an
            optional ``aux_outputs`` list of dicts with the same three keys.
    """
    return [pred] + list(pred.get('aux_outputs') or [])



@dataclass
class InstanceGT:
    """The GT a criterion reads for one scene (like upstream's InstanceData_).

    Any object with these attributes and ``len()`` works; this is the plain one.

    Attributes:
        sp_masks: bool (K, S) instance masks over points/voxels.
        labels_3d: long (K,) class ids.
    """

    sp_masks: Tensor
    labels_3d: Tensor

    def __len__(self) -> int:
        return len(self.labels_3d)


def pair_mask_terms(masks: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
    """BCE (mean over points) and Dice (+1 smoothing) of every (query, GT) pair, each float (M, K).

    Args:
        masks: float (M, S) logits; gt: float (K, S) 0/1.
    """
    return _PairMaskTerms.apply(masks, gt)


class _PairMaskTerms(torch.autograd.Function):
    """All pairs' BCE and Dice in one sweep of the (M, S) logits; backward only on rows with gradient.

    BCE(x, g) per point is softplus(x) - x g for g in {0, 1}, and softplus(x) =
    x - log sigmoid(x), so one log-sigmoid pass gives the BCE of all pairs (with
    one product with the GT masks) and, exponentiated in place, the sigmoid for
    Dice. The Hungarian matcher's costs are these (without gradient). The
    transport loss weights the pairs by the plan, where most queries
    carry no mass: backward sweeps only the rows that receive gradient, as
    Hungarian's loss touches only its matched rows. The (M, S) temporaries cost
    more than the arithmetic here (S ~ 50k voxels, M = 400, every layer).
    """

    @staticmethod
    def forward(ctx, masks: Tensor, gt: Tensor) -> tuple[Tensor, Tensor]:
        log_sig = F.softplus(masks, beta=-1.0)            # log sigmoid(x)
        softplus_sum = masks.sum(1) - log_sig.sum(1)      # (M,)
        prob = log_sig.exp_()                             # sigmoid(x), in place
        den = prob.sum(1)[:, None] + gt.sum(1)[None, :] + 1
        num = 2 * (prob @ gt.T) + 1
        bce = (softplus_sum[:, None] - masks @ gt.T) / masks.shape[1]
        ctx.save_for_backward(prob, gt, num, den)
        return bce, 1 - num / den

    @staticmethod
    @once_differentiable
    def backward(ctx, d_bce: Tensor, d_dice: Tensor) -> tuple[Tensor, None]:
        prob, gt, num, den = ctx.saved_tensors
        rows = ((d_bce != 0) | (d_dice != 0)).any(1).nonzero()[:, 0]
        # index_select copies whole rows (x[rows] gathers element-wise: several times slower here)
        p, b, e, num, den = (x.index_select(0, rows) for x in (prob, d_bce, d_dice, num, den))
        b = b / prob.shape[1]
        # d BCE_mk / dx_m = (p_m - g_k) / S;  d Dice_mk / dp_m = num_mk / den_mk^2 - 2 g_k / den_mk
        b_g, e_g = (torch.cat([b, e / den]) @ gt).split(len(rows))
        dice_part = e_g.mul_(-2).add_((e * num / den ** 2).sum(1, keepdim=True))
        grad_rows = dice_part.mul_(torch.addcmul(p, p, p, value=-1.0))   # x p (1 - p)
        grad_rows.addcmul_(p, b.sum(1, keepdim=True)).sub_(b_g)
        if len(rows) == len(prob):
            return grad_rows, None
        return prob.new_zeros(prob.shape).index_copy_(0, rows, grad_rows), None
