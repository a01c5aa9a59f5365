"""Instance AP exactly as OneFormer3D reports it on S3DIS, plus AP@75.

The protocol (docs/evaluator.md) is the ScanNet evaluator as modified by
OneFormer3D (instance_seg_eval -> evaluate_semantic_instance), re-written here
from its documented behaviour: same numbers to 1e-9, every quirk kept, and one
vectorised pass per scene for the intersections instead of a loop over
predictions x GTs x points.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

# Thresholds as upstream generates them (keep np.arange: index 5 is the float
# 0.7500000000000002, and comparisons are strict).
OVERLAPS = np.append(np.arange(0.5, 0.95, 0.05), 0.25)
I50, I75, I25 = 0, 5, 9
MIN_REGION_SIZE = 100   # points; smaller predictions are dropped, smaller GTs ignored
INSTANCE_ID_BASE = 1000  # renamed GT id = 1000 * semantic + raw id


@dataclass
class ClassScene:
    """One class in one scene: what the greedy matching needs, nothing per point.

    Attributes:
        gt_ids: (G,) renamed GT ids of this class, ascending.
        gt_sizes: (G,) points per GT.
        pred_sizes: (P,) points per kept prediction, in prediction order.
        pred_scores: (P,) confidences.
        pred_void: (P,) points of each prediction on void GT labels.
        inter: (P, G) intersections.
    """

    gt_ids: np.ndarray
    gt_sizes: np.ndarray
    pred_sizes: np.ndarray
    pred_scores: np.ndarray
    pred_void: np.ndarray
    inter: np.ndarray


@dataclass
class Tally:
    """Per class and threshold, summed over scenes."""

    true: list = field(default_factory=list)
    score: list = field(default_factory=list)
    hard_fn: int = 0
    n_gt: int = 0          # GTs counted (>= MIN_REGION_SIZE points): each is one true positive or one hard_fn
    has_gt: bool = False
    has_pred: bool = False


def _segments(gt_instance: np.ndarray, gt_semantic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of constant (raw instance id, semantic label): start index and length per run.

    Prepared S3DIS stores each instance as one contiguous block (annotation
    files are concatenated), so a room has tens of runs, not 100k points. An
    instance with two labels becomes two runs, which gt_table rejects.
    """
    n = len(gt_instance)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    change = (gt_instance[1:] != gt_instance[:-1]) | (gt_semantic[1:] != gt_semantic[:-1])
    starts = np.flatnonzero(np.r_[True, change])
    return starts, np.diff(np.r_[starts, n])


def gt_table(gt_semantic: np.ndarray, gt_instance: np.ndarray, seg_ids: np.ndarray,
             seg_sizes: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renamed GT ids as upstream builds them, from segments of constant raw id.

    Upstream renames every raw id i with semantic s to 1000 * s + i (in place;
    here on copies). Raw id 0 means "no instance" (mmdet3d's converter numbers
    instances from 1 and keeps 0 for unannotated points; S3DIS ids are 1..K):
    it stays 0 whatever its label, so it is never a GT. Upstream renames it too,
    which turned a room of id-0 points into one perfectly predictable "instance"
    per class; ids 1..K are renamed exactly as upstream does. Returns per
    distinct raw id, ascending: the renamed id, its point count, and for each
    segment the index of its raw id.

    Raises:
        ValueError: raw ids outside 0..999, or an instance (id > 0) with several semantic labels.
    """
    raw, seg_to_gt = np.unique(gt_instance[seg_ids], return_inverse=True)
    if len(raw) and (raw.min() < 0 or raw.max() >= INSTANCE_ID_BASE):
        raise ValueError(f'raw instance ids must be in 0..999 (S3DIS: 1..K), got {raw.min()}..{raw.max()}')
    seg_sem = gt_semantic[seg_ids]
    sem = np.zeros(len(raw), np.int64)
    sem[seg_to_gt] = seg_sem
    mixed = (sem[seg_to_gt] != seg_sem) & (raw[seg_to_gt] != 0)   # id 0 is no instance: any labels
    if mixed.any():
        raise ValueError(f'instance ids {raw[seg_to_gt[mixed]][:5].tolist()} have several semantic '
                         'labels; each instance needs one')
    valid = (sem >= 0) & (sem < n_classes) & (raw != 0)
    new_ids = np.where(valid, INSTANCE_ID_BASE * sem + raw, raw)
    return new_ids, np.bincount(seg_to_gt, weights=seg_sizes, minlength=len(raw)).astype(np.int64), seg_to_gt


def _segment_sums(masks: np.ndarray, gt_instance: np.ndarray,
                  gt_semantic: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of each prediction in each segment of constant (instance, label).

    Few runs (the S3DIS layout): one ``reduceat`` pass over the masks. Otherwise
    segments are the distinct (instance, label) pairs: one ``bincount`` over the
    True entries of the masks.

    Returns:
        int64 (P, n_segments) sums, one point index per segment, segment sizes.
    """
    starts, lengths = _segments(gt_instance, gt_semantic)
    if len(starts) * 16 <= len(gt_instance):
        # int32 accumulators (counts < 2**31) are ~9x faster than int64 here.
        sums = np.add.reduceat(masks.view(np.uint8), starts, axis=1, dtype=np.int32)
        return sums.astype(np.int64), starts, lengths
    span = int(gt_semantic.max() - gt_semantic.min()) + 1 if len(gt_semantic) else 1
    key = gt_instance.astype(np.int64) * span + (gt_semantic - gt_semantic.min(initial=0))
    _, first, point_seg, lengths = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
    pred, point = np.divmod(np.flatnonzero(masks), masks.shape[1])
    sums = np.bincount(pred * len(first) + point_seg[point], minlength=len(masks) * len(first))
    return sums.reshape(len(masks), len(first)), first, lengths


def scene_tables(scene: Mapping[str, np.ndarray], n_classes: int) -> list[ClassScene | None]:
    """Per-class match tables of one scene (None where the class has neither GT nor prediction).

    Args:
        scene: ``gt_semantic`` int (N,), ``gt_instance`` int (N,), ``pred_masks``
            bool (P, N), ``pred_labels`` int (P,), ``pred_scores`` float (P,).
    """
    sem, inst = np.asarray(scene['gt_semantic']), np.asarray(scene['gt_instance'])
    masks = np.ascontiguousarray(scene['pred_masks'], dtype=bool)
    labels = np.asarray(scene['pred_labels']).astype(np.int64)
    scores = np.asarray(scene['pred_scores'], dtype=np.float64)
    if masks.ndim != 2 or masks.shape[1] != len(inst) or not len(labels) == len(scores) == len(masks):
        raise ValueError(f'pred_masks {masks.shape}, pred_labels {labels.shape}, pred_scores '
                         f'{scores.shape} do not fit a scene of {len(inst)} points')
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f'pred_labels must be in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}')
    if len(inst) == 0:  # an empty room has no GT and no prediction of >= 100 points
        return [None] * n_classes
    seg_sums, seg_ids, seg_sizes = _segment_sums(masks, inst, sem)
    gt_ids, gt_sizes, seg_to_gt = gt_table(sem, inst, seg_ids, seg_sizes, n_classes)
    sizes = seg_sums.sum(1)
    keep = sizes >= MIN_REGION_SIZE
    seg_sums, labels, scores, sizes = seg_sums[keep], labels[keep], scores[keep], sizes[keep]
    onehot = np.zeros((len(seg_to_gt), len(gt_ids)))
    onehot[np.arange(len(seg_to_gt)), seg_to_gt] = 1.0
    inter = (seg_sums @ onehot).astype(np.int64)  # exact: integer counts < 2**53
    gt_label = gt_ids // INSTANCE_ID_BASE
    void = ~np.isin(gt_label, np.arange(n_classes))  # points of void GT labels (none in S3DIS)
    pred_void = inter[:, void].sum(1)
    is_gt = (gt_ids != 0) & ~void
    tables = []
    for c in range(n_classes):
        g, p = np.flatnonzero(is_gt & (gt_label == c)), np.flatnonzero(labels == c)
        tables.append(ClassScene(gt_ids[g], gt_sizes[g], sizes[p], scores[p], pred_void[p],
                                 inter[np.ix_(p, g)]) if len(g) or len(p) else None)
    return tables


def match_class_scene(t: ClassScene, th: float, tally: Tally) -> None:
    """Greedy matching of one class in one scene at threshold ``th``, into ``tally``."""
    big = t.gt_sizes >= MIN_REGION_SIZE
    tally.n_gt += int(big.sum())
    tally.has_gt |= bool(big.any())
    tally.has_pred |= len(t.pred_sizes) > 0
    iou = t.inter / (t.gt_sizes[None, :] + t.pred_sizes[:, None] - t.inter)
    taken = np.zeros(len(t.pred_sizes), bool)
    for g in np.flatnonzero(big):
        score = None
        for p in np.flatnonzero(t.inter[:, g] > 0):
            if taken[p] or not iou[p, g] > th:
                continue
            conf = t.pred_scores[p]
            if score is None:       # the GT takes this prediction
                score, taken[p] = conf, True
            else:                   # a duplicate: the lower score is a false positive
                tally.true.append(0.0)
                tally.score.append(min(score, conf))
                score = max(score, conf)
        if score is None:
            tally.hard_fn += 1
        else:
            tally.true.append(1.0)
            tally.score.append(score)
    _unmatched_false_positives(t, iou, th, tally)


def _unmatched_false_positives(t: ClassScene, iou: np.ndarray, th: float, tally: Tally) -> None:
    """Predictions with no GT over ``th`` count as false positives unless mostly ignored."""
    found = (iou > th).any(axis=1)
    # Quirks kept: every GT with id < 1000 (ceiling) counts as ignored, and so
    # does every GT under 100 points; a GT can count twice.
    weight = (t.gt_ids < INSTANCE_ID_BASE).astype(np.int64) + (t.gt_sizes < MIN_REGION_SIZE)
    ignored = t.pred_void + (t.inter * weight[None, :]).sum(1)
    fp = ~found & (ignored / t.pred_sizes <= th)
    tally.true.extend([0.0] * int(fp.sum()))
    tally.score.extend(t.pred_scores[fp].tolist())


def average_precision(tally: Tally) -> float:
    """Upstream's AP from the scores and true flags; 0 with GT but no prediction, NaN without GT."""
    if not tally.has_gt:
        return float('nan')
    if not tally.has_pred:
        return 0.0
    y_true, y_score = np.asarray(tally.true), np.asarray(tally.score)
    order = np.argsort(y_score)
    cumsum = np.append(np.cumsum(y_true[order]), 0)
    _, first = np.unique(y_score[order], return_index=True)
    n = len(y_score)
    n_true = cumsum[-2] if n else 0
    c = cumsum[first - 1]          # index -1 reads the appended 0
    tp, fp, fn = n_true - c, n - first - (n_true - c), c + tally.hard_fn
    precision = np.append(tp / (tp + fp), 1.0)
    recall = np.append(tp / (tp + fn), 0.0)
    steps = np.convolve(np.concatenate([recall[:1], recall, [0.0]]), [-0.5, 0, 0.5], 'valid')
    return float(np.dot(precision, steps))


def evaluate_instances(scenes: Iterable[Mapping[str, np.ndarray]],
                       class_names: Sequence[str]) -> dict:
    """Instance AP over scenes, as OneFormer3D's S3DIS evaluator, plus AP@75.

    Args:
        scenes: dicts with ``gt_semantic`` int [N] (0..C-1), ``gt_instance``
            int [N] (raw ids), ``pred_masks`` bool [P, N], ``pred_labels``
            int [P], ``pred_scores`` float [P], predictions in the order to
            evaluate (upstream's are sorted by score). Inputs are not modified;
            scenes are consumed one at a time (a generator keeps memory flat).
        class_names: C names, index = label.

    Returns:
        ``ap`` (mean over classes and IoU 0.50:0.95), ``ap50``, ``ap25``,
        ``ap75``, ``per_class`` {name: {ap, ap50, ap25, ap75}}, ``ap_table``
        float [C, 10] (columns = OVERLAPS); NaN where a class has no GT.
    """
    n_classes = len(class_names)
    tallies = [[Tally() for _ in OVERLAPS] for _ in range(n_classes)]
    for scene in scenes:
        for c, table in enumerate(scene_tables(scene, n_classes)):
            if table is not None:
                for oi, th in enumerate(OVERLAPS):
                    match_class_scene(table, th, tallies[c][oi])
    table = np.array([[average_precision(t) for t in row] for row in tallies], dtype=float)
    return summarise(table, class_names, [row[I50].n_gt for row in tallies])


def _nanmean(values: np.ndarray) -> float:
    """np.nanmean, NaN without a warning when everything is NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        return float(np.nanmean(values))


def summarise(table: np.ndarray, class_names: Sequence[str], counts: Sequence[int] | None = None) -> dict:
    """Means and per-class values from the [C, 10] AP table (upstream's compute_averages).

    With ``counts`` (GTs counted per class) also ``gt_counted`` and ``ap50_instance_weighted``:
    the per-class AP50 weighted by counted GTs, so that each GT weighs the same (the
    class mean weighs a class of 3 columns like one of 300 chairs); NaN without GTs.
    """
    span = slice(0, I25)  # the nine thresholds 0.50..0.90
    per_class = {name: {'ap': float(np.mean(row[span])), 'ap50': float(row[I50]),
                        'ap25': float(row[I25]), 'ap75': float(row[I75])}
                 for name, row in zip(class_names, table)}
    # Threshold-major like upstream's aps[0, :, idx] indexing: same summation order.
    out = {'ap': _nanmean(table[:, span].T), 'ap50': _nanmean(table[:, I50]),
           'ap25': _nanmean(table[:, I25]), 'ap75': _nanmean(table[:, I75]),
           'per_class': per_class, 'ap_table': table}
    if counts is not None:
        n = np.asarray(counts, dtype=float)
        out['gt_counted'] = {name: int(c) for name, c in zip(class_names, counts)}
        ap50 = np.nan_to_num(table[:, I50])   # NaN only where a class has no counted GT (weight 0)
        out['ap50_instance_weighted'] = float((n * ap50).sum() / n.sum()) if n.sum() else float('nan')
    return out
