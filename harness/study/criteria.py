"""The arms' instance criteria from baselines/criteria.yaml, built without mm* packages."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import HarnessError
from harness.core.paths import BASELINES

CRITERIA_FILE = BASELINES / 'criteria.yaml'


def load_criteria(path: Path = CRITERIA_FILE) -> dict[str, dict]:
    """Arm name -> inst_criterion block (a dict with ``type``)."""
    try:
        table = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise HarnessError(f'{path}: unreadable criteria file ({err})') from err
    for arm, block in table.items():
        if not isinstance(block, dict) or 'type' not in block:
            raise HarnessError(f'{path}: arm {arm!r} needs a mapping with a type key')
    return table


def build_criterion(block: dict[str, Any]):
    """Our implementation of an inst_criterion block (upstream's InstanceCriterion -> HungarianCriterion).

    Raises:
        HarnessError: unknown type or keys (named).
    """
    from influencerformer import HungarianCriterion, InfluencerCriterion
    classes = {'InstanceCriterion': HungarianCriterion, 'HungarianCriterion': HungarianCriterion,
               'InfluencerCriterion': InfluencerCriterion}
    kwargs = dict(block)
    name = kwargs.pop('type')
    if name not in classes:
        raise HarnessError(f'criterion type {name!r} unknown; use one of {sorted(classes)}')
    try:
        return classes[name](**kwargs)
    except TypeError as err:
        raise HarnessError(f'criterion {name}: {err}; check its keys in {CRITERIA_FILE.name}') from err
