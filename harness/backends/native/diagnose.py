"""Why an arm's AP is what it is: a native run's queries against the GT of its test rooms.

AP mixes three things, and a criterion can fail at each: whether some query's
mask fits a GT at all, whether that query carries the GT's class, and whether
it ranks above the other queries that claim the same GT (duplicates, which
NMS may or may not remove). This measures each one separately, from a run's
evaluated checkpoint, on the test area, with the inference binarisation
(``test_cfg.sp_score_thr``) and before any top-k, NMS or threshold.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from harness.core.errors import HarnessError
from harness.data.reader import list_rooms, read_room
from harness.evaluation.ap import MIN_REGION_SIZE

HIT_IOU = 0.5   # AP50's threshold: a query "fits" a GT at IoU >= 0.5


def query_stats(mask_probs: Tensor, cls_logits: Tensor, obj_scores: Tensor, instance: Tensor,
                semantic: Tensor, thr: float, anchor_instance: Tensor | None = None) -> dict[str, np.ndarray]:
    """Per GT instance and per query of one scene.

    Args:
        mask_probs: float (M, N) sigmoid of each query's mask at every point.
        cls_logits: float (M, C + 1), the last column no-object; obj_scores: float (M, 1).
        instance: long (N,) instance id per point (< 0: no instance); semantic: long (N,) class per point.
            GTs under ``MIN_REGION_SIZE`` points are left out, as AP leaves them out.
        thr: binarisation of the masks (inference's ``sp_score_thr``).
        anchor_instance: long (M,) instance id at each query's anchor (anchored queries), or None.

    Returns:
        per GT (K,): ``best_iou`` float, ``hits`` int (queries with IoU >= 0.5),
        ``right_class`` bool (the best-IoU query's most likely object class is the GT's),
        ``ranked_first`` bool (among the hit queries, the best-IoU one has the highest
        inference score, class probability x objectness, for the GT's class);
        per query (M,): ``no_object`` bool (no-object is its most likely class),
        ``active`` bool (its binarised mask has a point); with anchors also per GT
        ``anchored`` bool (some query is anchored in it).
    """
    ids, sizes = torch.unique(instance[instance >= 0], return_counts=True)
    ids = ids[sizes >= MIN_REGION_SIZE]   # AP ignores smaller GTs; so does this
    gts = (instance[None, :] == ids[:, None]).float()                       # (K, N)
    labels = torch.stack([torch.mode(semantic[instance == i]).values for i in ids]) if len(ids) else ids
    masks = (mask_probs > thr).float()                                       # (M, N)
    inter = masks @ gts.T                                                    # (M, K)
    iou = inter / (masks.sum(1)[:, None] + gts.sum(1)[None, :] - inter).clamp_min(1)
    probs = torch.softmax(cls_logits, -1)
    best_iou, best = iou.max(0) if len(ids) else (iou.new_zeros(0), ids)
    ranking = probs[:, labels] * obj_scores.reshape(-1, 1)                   # (M, K) score for the GT's class
    hit = iou >= HIT_IOU
    top = torch.where(hit, ranking, torch.full_like(ranking, -1.0)).argmax(0)
    out = {'best_iou': best_iou.numpy(), 'hits': hit.sum(0).numpy(),
           'right_class': (probs[best, :-1].argmax(1) == labels).numpy(),
           'ranked_first': (top == best).numpy(),
           'no_object': (probs.argmax(1) == probs.shape[1] - 1).numpy(),
           'active': (masks.sum(1) > 0).numpy()}
    if anchor_instance is not None:
        out['anchored'] = torch.isin(ids, anchor_instance).numpy()
    return out


def summarise(stats: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Scene stats -> one row: GT-level rates pooled over all GTs, query-level ones over all queries.

    Keys: ``gts``, ``oracle_recall50`` (share of GTs some query fits), ``mean_best_iou``,
    ``right_class`` / ``ranked_first`` / ``duplicates`` (over the fitted GTs; duplicates:
    mean number of further queries that also fit), ``no_object_queries``, ``active_queries``;
    with anchors ``gts_anchored`` and ``fit_if_anchored`` (share of the anchored GTs some query fits).
    """
    cat = {k: np.concatenate([s[k] for s in stats]) for k in stats[0]}
    fit = cat['best_iou'] >= HIT_IOU
    on_fit = (lambda v: float(v[fit].mean())) if fit.any() else (lambda v: float('nan'))
    return {'gts': int(len(fit)), 'oracle_recall50': float(fit.mean()), 'mean_best_iou': float(cat['best_iou'].mean()),
            'right_class': on_fit(cat['right_class']), 'ranked_first': on_fit(cat['ranked_first']),
            'duplicates': on_fit(cat['hits'] - 1), 'no_object_queries': float(cat['no_object'].mean()),
            'active_queries': float(cat['active'].mean()),
            'gts_anchored': float(cat['anchored'].mean()) if 'anchored' in cat else float('nan'),
            'fit_if_anchored': float(fit[cat['anchored']].mean()) if 'anchored' in cat and cat['anchored'].any()
            else float('nan')}


def checkpoint_of(record: dict) -> Path:
    """The run's evaluated checkpoint, once it is there and inside the run's own work dir.

    Raises:
        HarnessError: missing, or outside the work dir (never loaded: loading unpickles it).
    """
    path = Path((record.get('checkpoint') or {}).get('path') or '')
    work_dir = Path(record.get('work_dir') or '/nonexistent')
    if not path.is_file():
        raise HarnessError(f"{record['run_id']}: checkpoint {path} is missing; diagnose needs the run's work dir")
    if not path.resolve().is_relative_to(work_dir.resolve()):
        raise HarnessError(f"{record['run_id']}: checkpoint {path} is outside the run's work dir {work_dir}; "
                           'diagnose reads only checkpoints the harness wrote for that run')
    return path


def load_model(record: dict, config: dict):
    """The run's native model with the weights of its evaluated checkpoint, in eval mode.

    Raises:
        HarnessError: the checkpoint is missing, outside the work dir, unreadable (torn), or its weights
            do not fit this code's model (the run was trained by other model code).
    """
    from harness.backends.native.model import NativeOneFormer3D
    path = checkpoint_of(record)
    model_cfg = {k: v for k, v in config['model'].items() if k != 'type'}
    model = NativeOneFormer3D(**model_cfg)
    # mmengine's checkpoints pickle their message hub (numpy, HistoryBuffer), so a
    # weights-only load refuses them: loaded in full, as resume does, and only from
    # the run's own work dir (the same trust as the runs folder itself)
    try:
        state = torch.load(path, map_location='cpu', weights_only=False)['state_dict']
    except Exception as err:  # noqa: BLE001 - a torn file fails in many ways; all mean "unreadable"
        raise HarnessError(f"{path}: not a readable checkpoint ({_first_line(err)}); restore it from a copy, or "
                           'train the run again under a new experiment name') from err
    try:
        model.load_state_dict(state)
    except RuntimeError as err:   # missing / unexpected keys or shapes: the model code changed since
        sha = ((record.get('env') or {}).get('harness_git') or {}).get('sha') or '<the run\'s commit>'
        raise HarnessError(f"{path}: its weights do not fit this code's model ({_first_line(err)}); diagnose "
                           f'from a checkout of the commit that trained it (git worktree add <dir> {sha[:12]})') from err
    return model.eval()


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return f'{type(err).__name__}: {text.splitlines()[0][:120]}' if text else type(err).__name__


def diagnose_run(record: dict, config: dict, data_root: Path) -> dict[str, float]:
    """One finished native run, from its evaluated checkpoint -> :func:`summarise`'s row."""
    return diagnose_model(load_model(record, config), data_root, config['data']['test_area'])


def diagnose_model(model, data_root: Path, area: int) -> dict[str, float]:
    """A trained native model over the rooms of ``area`` -> :func:`summarise`'s row."""
    from harness.backends.native.predict import normalise
    model.eval()
    n, thr = model.decoder.n_inst, model.test_cfg['sp_score_thr']
    stats = []
    with torch.no_grad():
        for name in list_rooms(data_root, area):
            room = read_room(data_root, name)
            voxels, feats = model._features([{'points': normalise(room.points)}])
            layers, anchors = model.decoder(feats[0])
            cls, score, mask = layers[-1][:3]   # instance queries' mask logits (the semantic ones come last)
            inverse = voxels[0].inverse
            probs = mask.sigmoid()[:, inverse]
            instance = torch.from_numpy(np.array(room.instance))
            anchor_instance = None
            if anchors is not None:   # a point of each anchor voxel (voxels hold one instance's points, mostly)
                point_of = torch.empty(len(voxels[0].coords), dtype=torch.long).scatter_(
                    0, inverse, torch.arange(len(inverse)))
                anchor_instance = instance[point_of[anchors]]
            stats.append(query_stats(probs, cls[:n], score[:n], instance,
                                     torch.from_numpy(np.array(room.semantic)), thr, anchor_instance))
    return summarise(stats)
