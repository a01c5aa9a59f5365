"""Predict rooms with a trained native model, in the evaluator's format."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from harness.data import read_room
from harness.data.reader import list_rooms
from harness.evaluation.predictions import save_predictions


def normalise(points: np.ndarray) -> torch.Tensor:
    """float32 (N, 6): xyz as stored, rgb -> (rgb - 127.5) / 127.5 (upstream's NormalizePointsColor_)."""
    pts = torch.from_numpy(np.array(points, dtype=np.float32))
    pts[:, 3:] = (pts[:, 3:] - 127.5) / 127.5
    return pts


def predict_rooms(model, root: Path, area: int, bar: bool = True) -> Iterator[tuple[str, dict]]:
    """(room name, prediction) for every room of ``area``; prediction tensors as the evaluator's keys."""
    with torch.no_grad():
        for name in tqdm(list_rooms(root, area), desc='predict', unit='room', leave=False, disable=not bar):
            room = read_room(root, name)
            yield name, model([{'points': normalise(room.points)}], mode='predict')[0]


def predict(model, root: Path, area: int, out: Path) -> Path:
    """Every test room's predictions as ``<out>/<room>.npz`` (rewritten: derived from the checkpoint)."""
    for name, pred in predict_rooms(model, root, area):
        save_predictions(Path(out) / f'{name}.npz', pred['pred_masks'].numpy(), pred['pred_labels'].numpy(),
                         pred['pred_scores'].numpy(), overwrite=True)
    return Path(out)
