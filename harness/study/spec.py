"""Experiment specs (baselines/<experiment>.yaml) -> the run matrix (arms x seeds)."""
from __future__ import annotations

from pathlib import Path

import yaml

from harness.study.criteria import load_criteria
from harness.core.errors import HarnessError

COMMON = {'experiment', 'backend', 'arms', 'seeds', 'data'}
# Required and optional keys per backend.
BACKEND_KEYS = {
    'native': ({'config'}, {'threads', 'description'}),
    'upstream': ({'upstream', 'schedule', 'pretrained'},
                 {'threads', 'description', 'randomness', 'overrides'}),
}


def load_spec(path: Path) -> dict:
    """Read and validate a spec; unknown or missing keys and unknown arms are errors naming the file."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise HarnessError(f'{path}: unreadable experiment spec ({err})') from err
    if not isinstance(spec, dict) or spec.get('backend') not in BACKEND_KEYS:
        raise HarnessError(f'{path}: an experiment spec is a mapping with keys {sorted(COMMON)} and '
                           f'backend one of {sorted(BACKEND_KEYS)}')
    required, optional = BACKEND_KEYS[spec['backend']]
    required = COMMON | required
    missing, unknown = required - set(spec), set(spec) - required - optional
    if missing or unknown:
        raise HarnessError(f'{path}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}; '
                           f'allowed for backend {spec["backend"]}: {sorted(required | optional)}')
    arms = set(spec['arms']) - set(load_criteria())
    if arms:
        raise HarnessError(f'{path}: arms {sorted(arms)} are not in baselines/criteria.yaml')
    if 'hungarian' not in spec['arms']:
        raise HarnessError(f'{path}: arms must include hungarian (every arm is compared with it)')
    return spec


def run_matrix(spec: dict, arms: list[str] | None = None, seeds: list[int] | None = None) -> list[tuple[str, int]]:
    """(arm, seed) pairs, seed-major so that both arms of a seed finish close together."""
    arms = arms or spec['arms']
    seeds = seeds if seeds is not None else spec['seeds']
    unknown = set(arms) - set(spec['arms'])
    if unknown:
        raise HarnessError(f'--arms {sorted(unknown)} not in the spec\'s arms {spec["arms"]}')
    return [(arm, seed) for seed in seeds for arm in arms]
