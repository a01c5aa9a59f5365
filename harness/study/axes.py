"""A spec's ``ablations:`` block: the axes varied around the defaults, checked as the spec is read.

An axis sets one criterion key (of the spec's non-baseline arms) or one dotted
config key over a list of values; ``matrix`` expands the axes into run points,
one at a time around the defaults or as a grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.schema import check_keys, did_you_mean
from harness.study.arms import BASELINE, block, check_block, load_criteria

MODES = ('one-at-a-time', 'grid')


@dataclass(frozen=True)
class Axis:
    """One ablation axis: ``target`` is ``criterion.<key>`` or ``config.<dotted key>``."""

    name: str
    target: str
    values: tuple[Any, ...]

    @property
    def kind(self) -> str:
        """``criterion`` or ``config``."""
        return self.target.split('.', 1)[0]

    @property
    def key(self) -> str:
        return self.target.split('.', 1)[1]


@dataclass(frozen=True)
class Ablations:
    """``ablations:``: axes varied one at a time around the defaults, or as a grid."""

    axes: tuple[Axis, ...]
    mode: str = 'one-at-a-time'   # the defaults are every axis's reference; a grid multiplies runs


def parse_ablations(path: Path, spec: dict) -> Ablations | None:
    """The spec's ``ablations:`` block, checked; None when it has none.

    A criterion key must belong to a non-baseline arm of the spec, and each of its values must make
    a valid block of every such arm. Config keys are the backend's to check: in its ``parse_spec``
    where it can (native), else when it derives the configs (upstream: against its checkout), before
    training.

    Args:
        path: the spec file (messages name it).
        spec: the spec's raw mapping, its ``arms`` already checked.

    Raises:
        HarnessError: ``<path>: ablations...: <problem>; <fix>``.
    """
    if 'ablations' not in spec:
        return None
    section = spec['ablations']
    check_keys(f'{path}: ablations', section, {'axes'}, {'mode'})
    if section.get('mode', MODES[0]) not in MODES:
        raise HarnessError(f'{path}: ablations.mode {section["mode"]!r}; use one of {list(MODES)}')
    if not isinstance(section['axes'], dict) or not section['axes']:
        raise HarnessError(f'{path}: ablations.axes must map axis names to {{criterion|config: key, values: [...]}}')
    criteria = load_criteria()
    arm_keys = {k for arm in spec['arms'] if arm != BASELINE for k in criteria[arm]} - {'type'}
    axes = []
    for name, axis in section['axes'].items():
        where = f'{path}: ablations.axes.{name}'
        if not isinstance(axis, dict) or len({'criterion', 'config'} & set(axis)) != 1:
            raise HarnessError(f'{where}: give exactly one of criterion: <key> or config: <dotted key>, and values')
        check_keys(where, axis, {'values'}, {'criterion', 'config'})
        if not isinstance(axis['values'], list) or not axis['values']:
            raise HarnessError(f'{where}: values must be a non-empty list')
        kind = 'criterion' if 'criterion' in axis else 'config'
        if kind == 'criterion':
            _check_criterion_axis(where, axis, spec['arms'], criteria, arm_keys)
        target = f'{kind}.{axis[kind]}'
        if twin := next((a.name for a in axes if a.target == target), None):
            raise HarnessError(f'{where}: sets {target} as axis {twin} does (a point would keep one value and '
                               f'lose the other); give all its values to one axis')
        axes.append(Axis(str(name), target, tuple(axis['values'])))
    return Ablations(axes=tuple(axes), mode=section.get('mode', MODES[0]))


def _check_criterion_axis(where: str, axis: dict, arms: list[str], criteria: dict, arm_keys: set[str]) -> None:
    """The key belongs to a non-baseline arm, and every value makes a valid block of each such arm."""
    key = axis['criterion']
    if key not in arm_keys:
        raise HarnessError(f'{where}: no non-baseline arm of the spec has criterion key {key!r}'
                           f'{did_you_mean(str(key), arm_keys)}; keys: {sorted(arm_keys)}')
    for arm in [a for a in arms if a != BASELINE and key in criteria[a]]:
        for value in axis['values']:
            check_block(f'{where} (value {value!r}, arm {arm})', block(arm, {key: value}))
