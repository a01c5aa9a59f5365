"""Derive each arm's run config from the spec and prove the arms differ in one block only."""
from __future__ import annotations

import copy

from harness.study.criteria import load_criteria
from harness.core.errors import HarnessError

CRITERION_KEY = 'model.criterion.inst_criterion'


def derive(spec: dict, arm: str, seed: int) -> dict:
    """The run config of (arm, seed): the spec's config + data + seed, the arm's inst_criterion."""
    cfg = copy.deepcopy(spec['config'])
    cfg['model']['criterion']['inst_criterion'] = copy.deepcopy(load_criteria()[arm])
    cfg['randomness'] = {**cfg.get('randomness', {}), 'seed': seed}
    cfg['data'] = {k: v for k, v in spec['data'].items() if k != 'synth'}
    return cfg


def flatten(tree, prefix: str = '') -> dict[str, object]:
    """{'a': {'b': 1}, 'c': [2]} -> {'a.b': 1, 'c.0': 2}."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {prefix: tree}
    out = {}
    for key, value in items:
        out.update(flatten(value, f'{prefix}.{key}' if prefix else str(key)))
    return out or {prefix: tree}


def config_diff(a: dict, b: dict) -> list[str]:
    """Flattened keys whose values differ (or exist on one side only), one line each."""
    fa, fb = flatten(a), flatten(b)
    return [f'{k}: {fa.get(k, "<absent>")!r} -> {fb.get(k, "<absent>")!r}'
            for k in sorted(set(fa) | set(fb)) if fa.get(k, object()) != fb.get(k, object())]


def assert_only_criterion_differs(base: dict, other: dict) -> list[str]:
    """The diff between two arms of one seed; anything outside inst_criterion is an error."""
    diff = config_diff(base, other)
    stray = [line for line in diff if not line.startswith(CRITERION_KEY + '.')]
    if stray:
        raise HarnessError('derived arms differ outside model.criterion.inst_criterion: ' + '; '.join(stray[:5]))
    return diff
