"""The native backend: a compact OneFormer3D-family model trained here, through mmengine (CPU or GPU)."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from harness.core import schema as sc
from harness.core.tree import set_dotted
from harness.data import CLASS_NAMES
from harness.study.arms import BASELINE, block, one_key_diff, with_arm
from harness.core.errors import HarnessError
from harness.study.backend import Backend, Derived, Predicted, Prepared, RunContext, Trained
from harness.study.matrix import RunPoint
from harness.study.spec import Spec


def _null(x) -> str | None:
    return None if x is None else 'must be null: each arm sets it from baselines/criteria.yaml'


# What the data fixes: every room has S3DIS's 13 classes (labels 0..12, harness.data.CLASS_NAMES) and
# 6 input channels per point (xyz + rgb, docs/data.md). Another count fails inside training
# (n_sem 5: "Target 9 is out of bounds"; in_channels 3: a channel mismatch) or trains a model with
# classes no label ever has (num_classes 20), so each run was recorded as failed or wrong.
CLASSES = sc.exactly(len(CLASS_NAMES), f"S3DIS's {len(CLASS_NAMES)} classes, harness.data.CLASS_NAMES")
IN_CHANNELS = sc.exactly(6, 'each point is xyz + rgb')

# The native model's config (NativeOneFormer3D and its training); upstream's key names where they exist.
CONFIG = {
    'model': {
        'type': sc.one_of('NativeOneFormer3D'), 'voxel_size': sc.positive, 'num_classes': CLASSES,
        'backbone': {'in_channels': IN_CHANNELS, 'channels': sc.list_of(sc.positive_int, 1)},
        'decoder': {'d_model': sc.positive_int, 'n_inst': sc.QUERIES, 'n_sem': CLASSES,
                    'n_layers': sc.positive_int, 'n_heads': sc.positive_int, 'hidden': sc.positive_int,
                    'query_init?': sc.one_of('learned', 'anchored', 'seeded')},   # seeded: anchored's old name
        'criterion': {'sem_loss_weight': sc.non_negative, 'inst_criterion': _null},
        'test_cfg': {'topk_insts': sc.QUERIES, 'obj_normalization_thr': sc.fraction,
                     'sp_score_thr': sc.fraction, 'inst_score_thr': sc.fraction, 'npoint_thr': sc.non_negative_int},
    },
    'train': {'iters': sc.ITERATIONS, 'batch_size': sc.positive_int, 'lr': sc.positive,
              'weight_decay': sc.non_negative, 'val_interval?': sc.ITERATIONS},
    'randomness?': {'deterministic': sc.boolean},
}


def _check_config(cfg: dict, where: str) -> None:
    """``cfg`` against :data:`CONFIG`, and the attention heads' split of ``d_model``."""
    sc.validate(cfg, CONFIG, where)
    decoder = cfg['model']['decoder']
    if decoder['d_model'] % decoder['n_heads']:
        raise HarnessError(f'{where}.model.decoder.d_model {decoder["d_model"]} is not divisible by '
                           f'n_heads {decoder["n_heads"]}; change one of them')


def _config_axis_values(ablations: dict | None) -> list[tuple[str, str, object]]:
    """(axis name, dotted config key, value) of every ``config:`` axis value of the spec's
    ``ablations:`` block (its shape already checked by the common spec loader)."""
    axes = (ablations or {}).get('axes', {})
    return [(str(name), str(axis['config']), value) for name, axis in axes.items() if 'config' in axis
            for value in axis['values']]


@dataclass(frozen=True)
class NativePart:
    """The native backend's part of a spec.

    Attributes:
        base_config: the spec's ``config:`` tree (model, train, randomness), checked against
            :data:`CONFIG`; each run's config is a copy of it with the data, seed, ablation
            values and the arm's criterion set.
    """

    base_config: dict

    def planned_iterations(self, point: RunPoint) -> int:
        """``train.iters``, or the point's value of it."""
        return int(point.overrides('config').get('train.iters', self.base_config['train']['iters']))


class NativeBackend(Backend):
    """Derives from the spec's ``config:`` block; trains and predicts in this process."""

    name = 'native'
    spec_keys = (frozenset({'config'}), frozenset())
    location_keys = ('data.root',)

    @classmethod
    def parse_spec(cls, raw: dict, path: Path) -> NativePart:
        """The ``config:`` block checked, and each value of a ``config:`` ablation axis in it, so that
        ``plan`` and ``status --spec`` refuse what ``run`` would (a grid's combinations: at derive)."""
        _check_config(raw['config'], f'{path}: config')
        for name, key, value in _config_axis_values(raw.get('ablations')):
            cfg = copy.deepcopy(raw['config'])
            set_dotted(cfg, key, value, where=f'{path}: ablations.axes.{name}')
            _check_config(cfg, f'{path}: ablations.axes.{name} (value {value!r}) config')
        return NativePart(base_config=copy.deepcopy(raw['config']))

    def derive(self, spec: Spec, prepared: Prepared, point: RunPoint, data_root: Path) -> Derived:
        """The spec's config + data + seed + the point's config values, then the arm's criterion."""
        cfg = copy.deepcopy(spec.part.base_config)
        for key, value in point.overrides('config').items():
            set_dotted(cfg, key, value, where=f'{spec.path}: config (ablation axis)')
        if point.overrides('config'):
            _check_config(cfg, f'{spec.path}: config at ablation point {point.ablation_dict}')
        cfg['randomness'] = {'deterministic': False, **cfg.get('randomness', {}), 'seed': point.seed}
        cfg['data'] = spec.data.as_config(data_root)
        criterion = point.overrides('criterion')
        mine = with_arm(cfg, point.arm, criterion)
        diff = one_key_diff(with_arm(cfg, BASELINE), mine, block(point.arm, criterion), point.arm)
        return Derived(config=mine, diff=diff, iterations=int(cfg['train']['iters']))

    def train(self, ctx: RunContext) -> Trained:
        from mmengine.config import Config

        from harness.backends.native.train import train
        return train(Config(ctx.derived.config), ctx.work_dir / 'work_dir')

    def predict(self, ctx: RunContext, trained: Trained) -> Predicted:
        """The test rooms' predictions; the model travels on (``extra``) for :meth:`check_metrics`."""
        from harness.backends.native.predict import predict
        folder = predict(trained.model, ctx.data_root, ctx.spec.data.test_area, ctx.work_dir / 'predictions')
        return Predicted(folder, extra=trained.model)

    def check_metrics(self, ctx: RunContext, metrics: dict, predicted: Predicted) -> dict:
        """``diagnosis``: what the queries do on the test area (``diagnose_model``'s keys), kept in the
        record because checkpoints live in work dirs that a study across sessions and machines loses."""
        from harness.backends.native.diagnose import diagnose_model
        row = diagnose_model(predicted.extra, ctx.data_root, ctx.spec.data.test_area)
        return {'diagnosis': {k: None if v != v else v for k, v in row.items()}}   # NaN -> null: plain JSON
