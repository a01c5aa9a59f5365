"""Experiment specs (baselines/<experiment>.yaml) -> the run matrix (arms x seeds)."""
from __future__ import annotations

from pathlib import Path

import yaml

from .criteria import load_criteria
from .errors import HarnessError

REQUIRED = {'experiment', 'backend', 'arms', 'seeds', 'data', 'config'}
OPTIONAL = {'threads', 'description'}


def load_spec(path: Path) -> dict:
    """Read and validate a spec; unknown or missing keys and unknown arms are errors naming the file."""
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise HarnessError(f'{path}: unreadable experiment spec ({err})') from err
    if not isinstance(spec, dict):
        raise HarnessError(f'{path}: an experiment spec is a mapping with keys {sorted(REQUIRED)}')
    missing, unknown = REQUIRED - set(spec), set(spec) - REQUIRED - OPTIONAL
    if missing or unknown:
        raise HarnessError(f'{path}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}; '
                           f'allowed: {sorted(REQUIRED | OPTIONAL)}')
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
