"""Small tensor helpers shared by the criteria."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ['iter_layers', 'at_least_fp32', 'InstanceGT']


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
