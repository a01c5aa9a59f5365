"""Experiment specs (``baselines/<experiment>.yaml``): read and check the parts every backend shares.

A spec names the experiment, its backend, arms, seeds, data and (optionally)
an ``ablations:`` section; each backend checks its own keys
(``Backend.validate``). Every problem is an error naming the file and the key,
raised before any data is generated or anything trains.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from harness.core import schema as sc
from harness.core.errors import HarnessError
from harness.core.schema import check_keys, did_you_mean
from harness.study.arms import BASELINE, CRITERIA_FILE, check_block, load_criteria

COMMON_REQUIRED = {'experiment', 'backend', 'arms', 'seeds', 'data'}
COMMON_OPTIONAL = {'description', 'threads', 'ablations', 'slurm', 'container'}
DATA = {'root': sc.text, 'train_areas': sc.list_of(sc.area, 1, 5), 'test_area': sc.area,
        'num_points?': sc.optional(sc.positive_int),
        'synth?': {'rooms_per_area': sc.positive_int, 'points_per_room': sc.positive_int, 'seed': sc.non_negative_int}}
# --executor slurm resources (harness.execution.slurm.Resources has the defaults)
SLURM = {'partition?': sc.optional(sc.text), 'account?': sc.optional(sc.text), 'qos?': sc.optional(sc.text),
         'time_min?': sc.positive_int, 'gpus_per_job?': sc.non_negative_int, 'cpus_per_task?': sc.positive_int,
         'mem_gb?': sc.positive_int, 'constraint?': sc.optional(sc.text), 'array_parallelism?': sc.positive_int}
# Experiment and arm names become folder names: no separators, no '..'.
NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.+-]*')


def load_spec(path: Path, backends: list[str]) -> dict:
    """Read a spec and check its common part.

    Args:
        path: the YAML file.
        backends: names of the known backends.

    Returns:
        the spec as a plain dict (``_path`` added: where it was read from).

    Raises:
        HarnessError: unreadable YAML, unknown or missing keys, bad names,
            seeds or ablations; the message names the file and the key.
    """
    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise HarnessError(f'{path}: unreadable experiment spec ({err})') from err
    if not isinstance(spec, dict) or spec.get('backend') not in backends:
        got = spec.get('backend') if isinstance(spec, dict) else None
        raise HarnessError(f'{path}: backend {got!r}; an experiment spec is a mapping with keys '
                           f'{sorted(COMMON_REQUIRED)} and backend one of {sorted(backends)}')
    _check_names(path, spec)
    _check_seeds(path, spec['seeds'] if 'seeds' in spec else None)
    sc.validate(spec.get('data'), DATA, f'{path}: data')
    if spec['data']['test_area'] in spec['data']['train_areas']:
        raise HarnessError(f'{path}: data.test_area {spec["data"]["test_area"]} is also a training area; '
                           'remove it from data.train_areas')
    if 'threads' in spec and sc.positive_int(spec['threads']):
        raise HarnessError(f'{path}: threads: {spec["threads"]!r} {sc.positive_int(spec["threads"])}')
    if 'slurm' in spec:
        sc.validate(spec['slurm'], SLURM, f'{path}: slurm')
    if 'container' in spec and not str(spec['container']).startswith('apptainer:'):
        raise HarnessError(f'{path}: container: {spec["container"]!r}; use apptainer:/path/to/image.sif')
    if 'ablations' in spec:
        from harness.study.matrix import check_ablations
        check_ablations(path, spec)
    return {**spec, '_path': str(path)}


def _check_names(path: Path, spec: dict) -> None:
    """experiment and arms: safe folder names; arms known; the baseline among them."""
    for key in ('experiment', 'arms'):
        if key not in spec:
            raise HarnessError(f'{path}: missing key {key!r}')
    names = [spec['experiment']] + list(spec['arms'] if isinstance(spec['arms'], list) else [None])
    for name in names:
        if not isinstance(name, str) or not NAME.fullmatch(name) or '..' in name:
            raise HarnessError(f'{path}: name {name!r} is not a safe folder name (letters, digits, . _ + -, '
                               'no / and no ..); rename it')
    criteria = load_criteria()
    for arm in spec['arms']:
        if arm not in criteria:
            raise HarnessError(f'{path}: arms: {arm!r} is not in baselines/criteria.yaml'
                               f'{did_you_mean(arm, set(criteria))}')
    for arm in spec['arms']:
        check_block(f'{CRITERIA_FILE}: {arm}', criteria[arm])
    if BASELINE not in spec['arms']:
        raise HarnessError(f'{path}: arms must include {BASELINE} (every arm is compared with it)')
    if len(set(spec['arms'])) != len(spec['arms']):
        raise HarnessError(f'{path}: arms lists an arm twice: {spec["arms"]}')


def _check_seeds(path: Path, seeds: Any) -> None:
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise HarnessError(f'{path}: seeds must be a list of distinct non-negative integers, got {seeds!r}')


def check_backend_keys(path: Path, spec: dict, required: set[str], optional: set[str]) -> None:
    """The top-level keys of a spec for one backend (common + the backend's own)."""
    visible = {k: v for k, v in spec.items() if not k.startswith('_')}
    check_keys(str(path), visible, COMMON_REQUIRED | required, COMMON_OPTIONAL | optional)
