"""Synthetic criterion inputs in OneFormer3D's layout (benchmarks and tests)."""
from __future__ import annotations

import torch
from torch import Tensor

from influencerformer.ops import InstanceGT as SceneGT


def partition_masks(n_points: int, n_gts: int, bg_frac: float, gen: torch.Generator) -> Tensor:
    """bool (K, S) disjoint masks covering about (1 - bg_frac) of the points; none empty."""
    if n_gts == 0:
        return torch.zeros(0, n_points, dtype=torch.bool)
    owner = torch.randint(0, n_gts, (n_points,), generator=gen)
    owner[:n_gts] = torch.arange(n_gts)  # every instance gets at least one point
    is_bg = torch.rand(n_points, generator=gen) < bg_frac
    is_bg[:n_gts] = False
    owner[is_bg] = -1
    return owner[None, :] == torch.arange(n_gts)[:, None]


def random_gts(sizes: list[int], n_gts: list[int], n_classes: int = 13,
               bg_frac: float = 0.2, seed: int = 0, device: str = 'cpu') -> list[SceneGT]:
    """One SceneGT per scene with random disjoint masks and random labels."""
    gen = torch.Generator().manual_seed(seed)
    return [SceneGT(partition_masks(s, k, bg_frac, gen).to(device),
                    torch.randint(0, n_classes, (k,), generator=gen).to(device))
            for s, k in zip(sizes, n_gts)]


def random_pred(sizes: list[int], n_queries: int, n_classes: int = 13, n_aux: int = 3,
                seed: int = 0, scale: float = 3.0, dtype: torch.dtype = torch.float32,
                device: str = 'cpu') -> dict:
    """Random prediction dict of leaf tensors with grad, as OneFormer3D's decoder returns.

    Returns:
        dict with lists over the batch: ``cls_preds`` (M, n_classes + 1),
        ``scores`` (M, 1), ``masks`` (M, S_i) logits ~ N(0, scale^2),
        ``aux_outputs``: ``n_aux`` dicts with the same three keys, and
        ``query_anchors``: long (M,) a random anchor point per query.
    """
    gen = torch.Generator().manual_seed(seed)

    def leaf(*shape: int, mult: float = 1.0) -> Tensor:
        x = torch.randn(*shape, generator=gen, dtype=dtype)
        return x.mul_(mult).to(device).requires_grad_()

    def layer() -> dict:
        return {'cls_preds': [leaf(n_queries, n_classes + 1) for _ in sizes],
                'scores': [leaf(n_queries, 1) for _ in sizes],
                'masks': [leaf(n_queries, s, mult=scale) for s in sizes]}

    pred = layer()
    pred['aux_outputs'] = [layer() for _ in range(n_aux)]
    # where each query is anchored (read only by the anchored criteria)
    pred['query_anchors'] = [torch.randint(0, s, (n_queries,), generator=gen).to(device) for s in sizes]
    return pred


def pred_leaves(pred: dict) -> list[Tensor]:
    """Every tensor of a prediction dict, aux layers included, in a fixed order."""
    out = []
    for layer in [pred] + list(pred.get('aux_outputs') or []):
        for key in ('cls_preds', 'scores', 'masks'):
            out += [t for t in (layer.get(key) or []) if t is not None]
    return out
