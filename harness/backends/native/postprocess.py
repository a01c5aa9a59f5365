"""Inference post-processing as upstream's S3DIS test_cfg (S3DISOneFormer3D.pred_inst)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def matrix_nms_linear(masks: Tensor, labels: Tensor, scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Matrix NMS with the linear kernel (SOLOv2) on soft masks, as upstream's mask_matrix_nms.

    Outputs are in descending order of the scores *before* the decay (upstream
    does not re-sort afterwards, and the evaluator matches in this order).

    Each mask's score decays by min over higher-scored same-class masks j of
    (1 - IoU_ij) / (1 - max IoU of j with any higher-scored same-class mask).

    Args:
        masks: float (P, V) mask probabilities; labels: long (P,); scores: float (P,).
    """
    if len(scores) == 0:
        return scores, labels, masks
    scores, order = scores.sort(descending=True)
    masks, labels = masks[order], labels[order]
    inter = masks @ masks.T
    area = masks.sum(1)
    iou = (inter / (area[:, None] + area[None, :] - inter).clamp_min(1e-6)).triu(diagonal=1)
    same = (labels[:, None] == labels[None, :]).triu(diagonal=1)
    decay_iou = iou * same
    compensate = decay_iou.max(0).values[:, None]  # row i: j's own worst overlap, per column
    decay = ((1 - decay_iou) / (1 - compensate).clamp_min(1e-6)).min(0).values
    return scores * decay, labels, masks


def predict_instances(cls_logits: Tensor, obj_scores: Tensor | None, mask_logits: Tensor,
                      inverse: Tensor, cfg: dict) -> dict[str, Tensor]:
    """Instance predictions over all raw points of one scene.

    Args:
        cls_logits: (M, C + 1); obj_scores: (M, 1) or None; mask_logits: (M, V);
        inverse: long (N,) voxel of each point; cfg: upstream's test_cfg keys
        (topk_insts, obj_normalization_thr, sp_score_thr, inst_score_thr, npoint_thr).

    Returns:
        ``pred_masks`` bool (P, N), ``pred_labels`` long (P,), ``pred_scores`` float (P,)
        in upstream's order (the evaluator's prediction format).
    """
    n_classes = cls_logits.shape[1] - 1
    scores = F.softmax(cls_logits, -1)[:, :-1]
    if obj_scores is not None:
        scores = scores * obj_scores
    scores, top = scores.flatten().topk(min(cfg['topk_insts'], scores.numel()))
    labels, query = top % n_classes, top // n_classes
    probs = mask_logits[query].sigmoid()
    above = probs > cfg['obj_normalization_thr']
    scores = scores * (probs * above).sum(1) / (above.sum(1) + 1e-6)
    scores, labels, probs = matrix_nms_linear(probs, labels, scores)
    masks = (probs > cfg['sp_score_thr'])[:, inverse]
    keep = (scores > cfg['inst_score_thr']) & (masks.sum(1) > cfg['npoint_thr'])
    return {'pred_masks': masks[keep], 'pred_labels': labels[keep], 'pred_scores': scores[keep]}
