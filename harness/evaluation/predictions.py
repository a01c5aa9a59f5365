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


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    """One room's predictions as the evaluator's keys.

    Returns:
        ``pred_masks`` bool (P, N), ``pred_labels`` int64 (P,), ``pred_scores`` float32 (P,).

    Raises:
        HarnessError: not a readable file of this format (names the file).
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f['format']) != FORMAT:
                raise HarnessError(f'{path}: format {f["format"]!s}, expected {FORMAT}; re-dump the predictions')
            n = int(f['n_points'])
            masks = np.unpackbits(f['masks'], axis=1, count=n).astype(bool)
            return {'pred_masks': masks, 'pred_labels': f['labels'], 'pred_scores': f['scores']}
    except (OSError, KeyError, ValueError) as err:
        raise HarnessError(f'{path}: not a prediction file ({err}); re-dump the predictions '
                           f'(format {FORMAT}, see harness/predictions.py)') from err


def prediction_files(folder: Path) -> dict[str, Path]:
    """Room name -> file for every ``*.npz`` in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HarnessError(f'{folder}: no such prediction folder; pass the folder of <room>.npz files')
    return {p.stem: p for p in sorted(folder.glob('*.npz'))}
