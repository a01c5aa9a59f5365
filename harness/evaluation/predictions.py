"""Dumped instance predictions: one ``<room>.npz`` per room, the evaluator's input.

Format ``influencerformer-pred-v1`` (numpy .npz, uncompressed):

* ``format``: the string above;
* ``n_points``: int64 scalar, points of the room (all raw points, as evaluated);
* ``masks``: uint8 (P, ceil(n_points / 8)), ``np.packbits(bool_masks, axis=1)``
  (big bit order): 200 masks over 100k points take 2.5 MB;
* ``labels``: int64 (P,) class ids 0..12; ``scores``: float32 (P,).

Predictions keep the order the model produced them in (upstream's S3DIS
post-processing sorts by score, descending); the evaluator uses that order.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError
from harness.core.io import atomic_write

FORMAT = 'influencerformer-pred-v1'


def save_predictions(path: Path, masks: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                     overwrite: bool = False) -> Path:
    """Write one room's predictions atomically.

    Args:
        path: ``<folder>/<room>.npz``.
        masks: bool (P, N); labels: int (P,); scores: float (P,).
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 2 or not len(masks) == len(labels) == len(scores):
        raise ValueError(f'masks {masks.shape}, labels {np.shape(labels)}, scores '
                         f'{np.shape(scores)}: expected (P, N), (P,), (P,)')
    buf = io.BytesIO()
    np.savez(buf, format=np.array(FORMAT), n_points=np.int64(masks.shape[1]),
             masks=np.packbits(masks, axis=1), labels=np.asarray(labels, dtype=np.int64),
             scores=np.asarray(scores, dtype=np.float32))
    return atomic_write(path, buf.getvalue(), overwrite=overwrite)


def load_predictions(path: Path, num_classes: int = 13) -> dict[str, np.ndarray]:
    """One room's predictions as the evaluator's keys, every field checked.

    Returns:
        ``pred_masks`` bool (P, N), ``pred_labels`` int64 (P,), ``pred_scores`` float32 (P,).

    Raises:
        HarnessError: not a readable file of this format, or a field with the
            wrong dtype, shape or values (unpacked masks, float labels, labels
            out of range, non-finite scores, lengths that disagree); names the
            file and the field.
    """
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):   # np.save writes one bare array, even under a .npz name
            raise ValueError(f'one {f.dtype} array {f.shape} written by np.save, not an np.savez archive')
        with f:
            if str(f['format']) != FORMAT:
                raise HarnessError(f'{path}: format {f["format"]!s}, expected {FORMAT}; re-dump the predictions')
            n, packed, labels, scores = _n_points(f['n_points']), f['masks'], f['labels'], f['scores']
    # BadZipFile: a truncated or damaged archive (np.load opens it as a zip; also raised reading a member)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise HarnessError(f'{path}: not a prediction file ({err}); re-dump the predictions '
                           f'(format {FORMAT}, see harness/evaluation/predictions.py)') from err
    problem = _check_fields(n, packed, labels, scores, num_classes)
    if problem:
        raise HarnessError(f'{path}: {problem}; re-dump the predictions with save_predictions')
    masks = np.unpackbits(packed, axis=1, count=n).astype(bool)
    return {'pred_masks': masks, 'pred_labels': labels.astype(np.int64), 'pred_scores': scores}


def _n_points(value: np.ndarray) -> int:
    """The ``n_points`` field as an int; ValueError unless it is one non-negative integer."""
    numeric = np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)
    if value.size != 1 or not numeric or not np.isfinite(value).all() or value.item() < 0:
        raise ValueError(f'n_points is {value.dtype} {value.shape} {value.ravel()[:3].tolist()}, '
                         'expected one integer >= 0')
    return int(value.item())


def _check_fields(n: int, packed: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                  num_classes: int) -> str | None:
    """What is wrong with a file's fields, or None."""
    width = (n + 7) // 8
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != width:
        return (f'masks are {packed.dtype} {packed.shape}, expected uint8 (P, {width}) bit-packed over '
                f'{n} points (np.packbits(masks, axis=1))')
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        return f'labels are {labels.dtype} {labels.shape}, expected integer class ids (P,)'
    if scores.ndim != 1 or not np.issubdtype(scores.dtype, np.floating):
        return f'scores are {scores.dtype} {scores.shape}, expected floats (P,)'
    if not len(packed) == len(labels) == len(scores):
        return f'{len(packed)} masks, {len(labels)} labels and {len(scores)} scores: one each per prediction'
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        return f'labels {labels.min()}..{labels.max()} outside 0..{num_classes - 1}'
    if not np.isfinite(scores).all():
        return f'{int((~np.isfinite(scores)).sum())} scores are NaN or infinite'
    return None


def prediction_files(folder: Path) -> dict[str, Path]:
    """Room name -> file for every ``*.npz`` in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HarnessError(f'{folder}: no such prediction folder; pass the folder of <room>.npz files')
    return {p.stem: p for p in sorted(folder.glob('*.npz'))}
