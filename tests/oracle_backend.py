"""A third backend in one module: trains nothing and predicts the ground truth (docs/extending.md).

It proves the backend contract (``harness.study.backend``): registered with
one line in ``harness.backends.BACKENDS``, it runs through the real runner,
records, evaluator and compare. Every counted GT is predicted exactly, so
every class present scores AP 1.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from harness.core.schema import check_keys
from harness.data.reader import list_rooms, read_room
from harness.evaluation.predictions import save_predictions
from harness.study.arms import BASELINE, block, one_key_diff, with_arm
from harness.study.backend import Backend, Derived, Predicted, Prepared, RunContext, Trained
from harness.study.matrix import RunPoint
from harness.study.spec import Spec


@dataclass(frozen=True)
class OraclePart:
    """``oracle: {score: ...}``: the score every predicted instance gets."""

    score: float
    base_config = None

    def planned_iterations(self, point: RunPoint) -> int:
        return 0


@dataclass(frozen=True)
class OracleOptions:
    """``--oracle-drop N``: leave out the N largest GTs of each room (a worse oracle)."""

    drop: int = 0

    def argv(self) -> list[str]:
        return ['--oracle-drop', str(self.drop)] if self.drop else []


class OracleBackend(Backend):
    """Ground truth as predictions; the arms' configs still differ in their criterion only."""

    name = 'oracle'
    spec_keys = (frozenset({'oracle'}), frozenset())
    Options = OracleOptions

    @classmethod
    def parse_spec(cls, raw: dict, path: Path) -> OraclePart:
        check_keys(f'{path}: oracle', raw['oracle'], {'score'}, set())
        return OraclePart(float(raw['oracle']['score']))

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument('--oracle-drop', type=int, default=0, help='oracle: GTs left out per room')

    @classmethod
    def options(cls, values: Mapping[str, Any]) -> OracleOptions:
        return OracleOptions(values['oracle_drop'])

    def prepare(self, spec: Spec, options) -> Prepared:
        return Prepared(record={'oracle_drop': options.backend.drop}, context=options.backend)

    def derive(self, spec: Spec, prepared: Prepared, point: RunPoint, data_root: Path) -> Derived:
        cfg = {'model': {'criterion': {'inst_criterion': None}}, 'seed': point.seed, 'data': str(data_root)}
        mine = with_arm(cfg, point.arm)
        return Derived(config=mine, diff=one_key_diff(with_arm(cfg, BASELINE), mine, block(point.arm), point.arm),
                       iterations=0)

    def train(self, ctx: RunContext) -> Trained:
        return Trained(iterations=0, seconds=0.0, iters_this_session=0, scalars=None)

    def predict(self, ctx: RunContext, trained: Trained) -> Predicted:
        out = ctx.work_dir / 'predictions'
        for name in list_rooms(ctx.data_root, ctx.spec.data.test_area):
            room = read_room(ctx.data_root, name)
            ids = [i for i in np.unique(room.instance) if i > 0]
            ids = sorted(ids, key=lambda i: -int((room.instance == i).sum()))[ctx.prepared.context.drop:]
            masks = np.stack([room.instance == i for i in ids]) if ids else np.zeros((0, len(room.instance)), bool)
            labels = np.array([np.bincount(room.semantic[m]).argmax() for m in masks], dtype=np.int64)
            save_predictions(out / f'{name}.npz', masks, labels, np.full(len(ids), ctx.spec.part.score),
                             overwrite=True)
        return Predicted(out)
