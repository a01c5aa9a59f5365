"""``MinkowskiEngine.utils.batch_sparse_collate``."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def batch_sparse_collate(data: Sequence[Sequence], dtype: torch.dtype = torch.int32,
                         device: torch.device | str | None = None):
    """Batch per-sample ``(coords, feats[, labels])`` as MinkowskiEngine does.

    Args:
        data: per sample, coords float or int (N_i, D) and feats (N_i, C)
            (torch tensors or numpy arrays); optional labels (N_i, ...).
        dtype: coordinate dtype (MinkowskiEngine's default int32).
        device: where the outputs go (default: the first sample's device).

    Returns:
        ``coords`` dtype (sum N_i, D + 1): column 0 the sample's index in
        ``data``, the rest ``floor(coords)``; ``feats`` (sum N_i, C) concatenated
        in sample order; plus concatenated labels when every sample has them.
    """
    if len(data) == 0:
        raise ValueError('batch_sparse_collate: empty batch')
    coords, feats, labels = [], [], []
    for b, sample in enumerate(data):
        c, f = (_tensor(x) for x in sample[:2])
        if device is None:
            device = f.device
        if c.dim() != 2 or len(c) != len(f):
            raise ValueError(f'batch_sparse_collate: sample {b} has coords {tuple(c.shape)} '
                             f'and feats {tuple(f.shape)}; expected (N, D) and (N, C)')
        c = torch.floor(c) if c.is_floating_point() else c
        batch = torch.full((len(c), 1), b, dtype=dtype, device=c.device)
        coords.append(torch.cat([batch, c.to(dtype)], dim=1).to(device))
        feats.append(f.to(device))
        if len(sample) > 2:
            labels.append(_tensor(sample[2]).to(device))
    out = (torch.cat(coords), torch.cat(feats))
    if labels and len(labels) == len(data):
        out += (torch.cat(labels),)
    return out


def _tensor(x) -> torch.Tensor:
    return torch.from_numpy(x) if isinstance(x, np.ndarray) else torch.as_tensor(x)
