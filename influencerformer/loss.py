"""Mask-matrix Influencer Loss: a matching-free instance mask loss.

Pure PyTorch; no mm* imports (the criterion must load in any environment).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .ops import at_least_fp32

__all__ = ['MaskInfluencerLoss', 'mask_log_sums', 'pairwise_hinge']


class _MaskLogSums(torch.autograd.Function):
    """Sums of log sigmoid over GT masks and of sigmoid over background points.

    Fused so that the (M, S) logits are swept once forward and once backward:
    the criterion runs on every query of every layer (S ~ 50k voxels, M = 400),
    where each full-size temporary costs more than the arithmetic. Backward
    uses d log sigmoid(x) / dx = sigmoid(-x) = -expm1(log sigmoid(x)), so no
    second transcendental pass over x is needed.
    """

    @staticmethod
    def forward(ctx, masks: Tensor, gt: Tensor, bg_idx: Tensor) -> tuple[Tensor, Tensor]:
        # softplus with beta=-1 is log sigmoid exactly (same float result as
        # F.logsigmoid, without its extra backward buffer).
        log_sig = F.softplus(masks, beta=-1.0)
        gt_sums = gt @ log_sig.T                          # (K, M)
        bg_sums = log_sig[:, bg_idx].exp().sum(1)         # (M,)
        ctx.save_for_backward(log_sig, gt, bg_idx)
        return gt_sums, bg_sums

    @staticmethod
    @once_differentiable
    def backward(ctx, d_gt_sums: Tensor, d_bg_sums: Tensor) -> tuple[Tensor, None, None]:
        log_sig, gt, bg_idx = ctx.saved_tensors
        d_log_sig = d_gt_sums.T @ gt                      # (M, S)
        if bg_idx.numel():
            # d exp(log_sig) / d log_sig = exp(log_sig) = sigmoid
            d_log_sig[:, bg_idx] += d_bg_sums[:, None] * log_sig[:, bg_idx].exp()
        return d_log_sig.mul_(torch.expm1(log_sig)).neg_(), None, None


def mask_log_sums(masks: Tensor, gt: Tensor, bg_idx: Tensor) -> tuple[Tensor, Tensor]:
    """Differentiable GT and background sums of one scene's masks.

    Args:
        masks: float (M, S) mask logits.
        gt: float (K, S) 0/1 GT masks (same dtype as masks).
        bg_idx: long (n_bg,) indices of points in no GT instance.

    Returns:
        float (K, M) ``sum_{s in S_k} log sigmoid(masks[m, s])`` and float (M,)
        ``sum_{s in bg} sigmoid(masks[m, s])``.
    """
    return _MaskLogSums.apply(masks, gt, bg_idx)


def pairwise_hinge(profiles: Tensor, margin: float) -> Tensor:
    """Mean hinge ``max(0, margin - ||p_k - p_l||_2)`` over ordered pairs k != l.

    Distances are exact (explicit differences, not the Gram-matrix shortcut,
    which loses precision for near-identical profiles), and the square root
    has a zero sub-gradient at distance 0 instead of NaN.

    Args:
        profiles: float (K, M), K >= 2.
        margin: hinge margin.

    Returns:
        float scalar.
    """
    k = profiles.shape[0]
    sq = (profiles[:, None, :] - profiles[None, :, :]).pow(2).sum(-1)  # (K, K)
    nonzero = sq > 0
    # Double-where: sqrt never sees 0, so its gradient stays finite.
    dist = torch.where(nonzero, torch.where(nonzero, sq, 1.0).sqrt(), 0.0)
    hinge = F.relu(margin - dist)
    off_diag = ~torch.eye(k, dtype=torch.bool, device=profiles.device)
    return hinge[off_diag].mean()


class MaskInfluencerLoss(nn.Module):
    r"""Influencer Loss on a mask matrix, for one scene.

    For mask logits ``masks`` (M queries x S points) and boolean GT masks
    ``sp_masks`` (K instances x S points), with temperature T:

    * log geometric mean of query m over instance k:
      :math:`lg_{km} = \frac{1}{|S_k|}\sum_{s \in S_k} \log\sigma(x_{ms})`;
    * attractive: :math:`\frac{1}{K}\sum_k -T \log\sum_m \exp(lg_{km}/T)`,
      a soft maximum over queries: each instance is pulled towards the query
      that already covers it best, without any matching;
    * repulsive: profiles :math:`p_k = \exp(lg_{k,:})` (an M-vector: how much
      each query covers instance k); mean over ordered pairs k != l of
      :math:`\max(0, \mathrm{margin} - \lVert p_k - p_l\rVert_2)`, pushing
      different instances to be covered by different queries; 0 when K < 2;
    * background: mean of :math:`\sigma(x_{ms})` over all queries and the
      points that belong to no GT instance; 0 when there are none;
    * ``loss = attr_weight*attractive + rep_weight*repulsive + bg_weight*background``.

    Property users will trip over: ``-T*logsumexp`` is NOT bounded below by 0.
    If all M queries cover instance k perfectly (lg = 0), the attractive term
    is ``-T*log(M)``, lower than one perfect query (0). The loss therefore
    rewards several queries claiming the same instance, and optimised alone it
    drifts to masks that are high everywhere; the repulsive hinge costs at most
    ``margin``. The defaults reproduce this original formulation exactly (see
    docs/ for the measurements and the variants).

    Empty GT rows (an instance with no point in this scene, e.g. after voxel
    majority voting) have no geometric mean; they are left out of the
    attractive and repulsive terms (their points, none, cannot matter to the
    background term).

    Opt-in variants (docs/influencer-loss.md measures them; the defaults keep
    the original formulation exact):

    * ``excl_weight > 0`` adds ``excl_weight * exclusive`` with
      :math:`exclusive = \mathrm{mean}_{s \in fg} (\sum_m \sigma(x_{ms}) - 1)^2`:
      every foreground point should be claimed by exactly one query in total,
      which removes the many-queries-claim-everything optimum;
    * ``mask_norm='softmax'`` uses a per-point softmax over queries instead of
      the sigmoid inside ``lg`` (the background term keeps the sigmoid).

    All arithmetic runs in at least float32, also under autocast (fp16/bf16
    inputs are upcast; float64 stays float64).
    """

    def __init__(self, attr_weight: float = 1.0, rep_weight: float = 1.0,
                 bg_weight: float = 1.0, rep_margin: float = 1.0,
                 temperature: float = 1.0, excl_weight: float = 0.0,
                 mask_norm: str = 'sigmoid') -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'temperature must be > 0, got {temperature}')
        if mask_norm not in ('sigmoid', 'softmax'):
            raise ValueError(f"mask_norm must be 'sigmoid' or 'softmax', got {mask_norm!r}")
        self.attr_weight = attr_weight
        self.rep_weight = rep_weight
        self.bg_weight = bg_weight
        self.rep_margin = rep_margin
        self.temperature = temperature
        self.excl_weight = excl_weight
        self.mask_norm = mask_norm

    def forward(self, masks: Tensor, sp_masks: Tensor) -> dict[str, Tensor]:
        """Compute the loss for one scene.

        Args:
            masks: float (M, S) mask logits (any float dtype).
            sp_masks: bool (K, S) GT instance masks (K may be 0).

        Returns:
            dict of float32 scalars (float64 for float64 input): ``loss``
            (differentiable) and the unweighted, detached parts
            ``attractive``, ``repulsive``, ``background``, ``exclusive``
            (0 unless ``excl_weight`` > 0).

        Raises:
            ValueError: masks and sp_masks disagree on the number of points.
        """
        if masks.dim() != 2 or sp_masks.dim() != 2 or masks.shape[1] != sp_masks.shape[1]:
            raise ValueError(
                f'masks {tuple(masks.shape)} and sp_masks {tuple(sp_masks.shape)} '
                'must be (n_queries, n_points) and (n_gts, n_points) with the same n_points')
        with torch.autocast(device_type=masks.device.type, enabled=False):
            parts = self._parts(at_least_fp32(masks), sp_masks.bool())
        loss = (self.attr_weight * parts['attractive']
                + self.rep_weight * parts['repulsive']
                + self.bg_weight * parts['background'])
        if self.excl_weight:
            loss = loss + self.excl_weight * parts['exclusive']
        out = {'loss': loss}
        out.update({k: v.detach() for k, v in parts.items()})
        return out

    def _parts(self, masks: Tensor, sp_masks: Tensor) -> dict[str, Tensor]:
        """Unweighted attractive / repulsive / background / exclusive terms."""
        gt = sp_masks.to(masks.dtype)
        sizes = gt.sum(1)
        keep = sizes > 0
        gt, sizes = gt[keep], sizes[keep]
        fg = sp_masks.any(0)
        bg_idx = (~fg).nonzero()[:, 0]
        if self.mask_norm == 'sigmoid':
            gt_sums, bg_sums = mask_log_sums(masks, gt, bg_idx)
        else:  # per-point softmax over queries inside lg; background keeps the sigmoid
            gt_sums = gt @ torch.log_softmax(masks, dim=0).T
            bg_sums = torch.sigmoid(masks[:, bg_idx]).sum(1)
        # Empty terms are 0 but stay connected to the graph, so backward works.
        zero = gt_sums.sum() * 0.0 + bg_sums.sum() * 0.0
        attractive = repulsive = exclusive = zero
        if gt.shape[0] > 0:
            lg = gt_sums / sizes[:, None]  # (K, M) log geometric means
            t = self.temperature
            attractive = (-t * torch.logsumexp(lg / t, dim=1)).mean()
            if gt.shape[0] > 1:
                repulsive = pairwise_hinge(lg.exp(), self.rep_margin)
        n_bg = bg_idx.numel()
        background = bg_sums.sum() / (masks.shape[0] * n_bg) if n_bg else zero
        if self.excl_weight and bool(fg.any()):
            exclusive = ((torch.sigmoid(masks[:, fg]).sum(0) - 1) ** 2).mean()
        return {'attractive': attractive, 'repulsive': repulsive,
                'background': background, 'exclusive': exclusive}
