"""The native backend: a compact OneFormer3D-family model trained here, through mmengine (CPU or GPU)."""
from __future__ import annotations

import copy
from pathlib import Path

from harness.core.tree import set_dotted
from harness.study.arms import BASELINE, block, one_key_diff, with_arm
from harness.study.backend import Backend, Derived, RunContext, RunOptions, Trained
from harness.study.matrix import RunPoint
from harness.study.spec import check_backend_keys, check_keys


class NativeBackend(Backend):
    """Derives from the spec's ``config:`` block; trains and predicts in this process."""

    name = 'native'
    spec_keys = (frozenset({'config'}), frozenset())
    location_keys = ('data.root',)

    def validate(self, spec: dict) -> None:
        path = spec['_path']
        check_backend_keys(path, spec, set(self.spec_keys[0]), set(self.spec_keys[1]))
        check_keys(f'{path}: config', spec['config'], {'model', 'train'}, {'randomness'})

    def derive(self, spec: dict, point: RunPoint, options: RunOptions, data_root: Path) -> Derived:
        """The spec's config + data + seed + the point's config values, then the arm's criterion."""
        cfg = copy.deepcopy(spec['config'])
        cfg['randomness'] = {'deterministic': False, **cfg.get('randomness', {}), 'seed': point.seed}
        cfg['data'] = {**{k: v for k, v in spec['data'].items() if k != 'synth'}, 'root': str(data_root)}
        for key, value in point.overrides('config').items():
            set_dotted(cfg, key, value, where=f'{spec["_path"]}: config (ablation axis)')
        criterion = point.overrides('criterion')
        mine = with_arm(cfg, point.arm, criterion)
        diff = one_key_diff(with_arm(cfg, BASELINE), mine, block(point.arm, criterion))
        return Derived(config=mine, diff=diff, iterations=int(cfg['train']['iters']))

    def train(self, ctx: RunContext) -> Trained:
        from mmengine.config import Config

        from harness.backends.native.train import train
        out = train(Config(ctx.derived.config), ctx.work_dir / 'work_dir')
        self._model = out['model']
        return Trained(iterations=out['iterations'], seconds=out['seconds'],
                       iters_this_session=out['iters_this_session'], scalars=out['scalars'],
                       checkpoint=out['checkpoint'])

    def predict(self, ctx: RunContext, trained: Trained) -> Path:
        from harness.backends.native.train import predict
        return predict(self._model, ctx.data_root, ctx.spec['data']['test_area'], ctx.work_dir / 'predictions')
