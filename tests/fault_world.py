"""The fault suite's world: tiny data, a tiny spec and finished runs, and one case registry.

tests/test_faults.py builds the world once per module and runs every registered case
(its own cases and tests/fault_cases_more.py's) on a fresh copy of it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from data_helpers import harness

from harness.evaluation.predictions import save_predictions

BASE = yaml.safe_load(open('baselines/smoke-native.yaml'))


def build_world(root: Path) -> Path:
    """Tiny data, a spec, and finished runs of two arms under ``root``."""
    spec = json.loads(json.dumps(BASE))
    spec['arms'] = ['hungarian', 'influencer']
    spec['data'].update(root=str(root / 'data'), synth={'rooms_per_area': 1, 'points_per_room': 1500, 'seed': 0},
                        num_points=1500)
    spec['config']['train'].update(iters=3, val_interval=3)
    (root / 'spec.yaml').write_text(yaml.safe_dump(spec))
    code, out, err = harness('run', '--spec', root / 'spec.yaml', '--runs', root / 'runs', '--work-dirs', root / 'work')
    assert code == 0, out + err
    return root


@dataclass
class Env:
    """One case's own copy of the world."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / 'data'

    @property
    def runs(self) -> Path:
        return self.root / 'runs'

    def spec(self, change: Callable[[dict], None] | None = None, name: str = 'spec.yaml') -> Path:
        spec = yaml.safe_load((self.root / 'spec.yaml').read_text())
        spec['data']['root'] = str(self.data)
        if change:
            change(spec)
        path = self.root / name
        path.write_text(yaml.safe_dump(spec))
        return path

    def run(self, spec: Path | None = None, *extra) -> list:
        return ['run', '--spec', spec or self.spec(), '--runs', self.runs, '--work-dirs', self.root / 'work', *extra]

    def room(self, area: int = 5) -> str:
        return sorted(p.stem for p in (self.data / 'points').glob(f'Area_{area}_*.bin'))[0]

    def patch(self, owner: object, name: str, value: object) -> None:
        """``owner.name = value`` while the case's command runs in this process; undone afterwards."""
        old, before = getattr(owner, name), self.cleanup
        setattr(owner, name, value)

        def undo() -> None:
            setattr(owner, name, old)
            before()
        self.cleanup = undo

    def predictions(self) -> Path:
        """A folder of valid predictions for Area 5 (all-zero masks, one per room)."""
        out = self.root / 'preds'
        for name in sorted(p.stem for p in (self.data / 'points').glob('Area_5_*.bin')):
            n = (self.data / 'points' / f'{name}.bin').stat().st_size // 24
            save_predictions(out / f'{name}.npz', np.zeros((2, n), bool), np.array([1, 2]), np.array([0.9, 0.5]),
                             overwrite=True)
        return out


def spec_change(**top):
    return lambda s: s.update(top)


def config(path: str, value):
    def change(s):
        node = s['config']
        *head, last = path.split('.')
        for part in head:
            node = node[part]
        node[last] = value
    return change


def npz(path: Path, **fields):
    """Write a prediction file by hand with ``fields`` replacing valid ones."""
    n = 1500
    valid = {'format': np.array('influencerformer-pred-v1'), 'n_points': np.int64(n),
             'masks': np.packbits(np.zeros((2, n), bool), axis=1), 'labels': np.array([1, 2]),
             'scores': np.array([0.9, 0.5], np.float32)}
    np.savez(path, **{**valid, **fields})


CASES: dict[str, Callable[[Env], tuple[list, int, str]]] = {}


def case(name: str):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


def record_path(env: Env, arm: str = 'influencer') -> Path:
    """run.json of one of the world's finished runs."""
    return env.runs / f'smoke-native__{arm}__s0' / 'run.json'


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (locks aside): what a case must leave unchanged."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file() and '.lock' not in p.name}
