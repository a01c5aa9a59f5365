"""The run matrix of a spec: arms x seeds x ablation points, as :class:`RunPoint` s.

``ablations:`` in a spec::

    ablations:
      mode: one-at-a-time        # or grid (every combination of the axes)
      axes:
        temperature: {criterion: temperature, values: [0.05, 0.1, 0.5]}
        queries: {config: model.decoder.n_inst, values: [16, 64]}

A ``criterion:`` axis sets a key of the arms' inst_criterion blocks; it applies
to the non-baseline arms whose block has the key (the baseline stays as
published and is the reference at the default point). A ``config:`` axis sets
a dotted key of the run config (native: the spec's ``config``; upstream:
upstream's config, like ``overrides``) for every arm, the baseline included,
so the baseline is the reference at each such point. Either way the arms of
one point differ in ``model.criterion.inst_criterion`` only.

An arm's *effective* ablation drops values equal to its defaults, so a point
that changes nothing for an arm is that arm's main run (one run id, run once).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

from harness.core.errors import HarnessError
from harness.core.tree import get_dotted
from harness.study import records
from harness.study.arms import BASELINE, load_criteria
from harness.study.spec import Spec

CRITERION, CONFIG = 'criterion', 'config'


@dataclass(frozen=True)
class RunPoint:
    """One run of the matrix.

    Attributes:
        experiment / arm / seed: what runs.
        ablation: sorted ``(target, value)`` pairs, target ``criterion.<key>``
            or ``config.<dotted key>``; empty for a main run.
    """

    experiment: str
    arm: str
    seed: int
    ablation: tuple[tuple[str, Any], ...] = ()

    @property
    def run_id(self) -> str:
        return records.run_id(self.experiment, self.arm, self.seed, self.ablation_dict)

    @property
    def ablation_dict(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.ablation}

    def overrides(self, kind: str) -> dict[str, Any]:
        """``criterion`` or ``config`` values of this point, keyed without the prefix."""
        return {k.split('.', 1)[1]: v for k, v in self.ablation_dict.items() if k.startswith(kind + '.')}

    def baseline(self) -> 'RunPoint':
        """The baseline arm's run that this point is compared with (same seed, same config values)."""
        return RunPoint(self.experiment, BASELINE, self.seed,
                        tuple((k, v) for k, v in self.ablation if k.startswith(CONFIG + '.')))


@dataclass(frozen=True)
class Selection:
    """Which runs of a spec's matrix: subsets of its arms and seeds, and run ids (None: all)."""

    arms: list[str] | None = None
    seeds: list[int] | None = None
    only: list[str] | None = None


def make_point(experiment: str, arm: str, seed: int, ablation: dict[str, Any] | None = None) -> RunPoint:
    """A RunPoint with a canonical ablation (values stored as JSON so points hash and compare)."""
    items = tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in (ablation or {}).items()))
    return RunPoint(experiment, arm, int(seed), items)


def default_value(arm: str, target: str, criteria: dict, config: dict | None) -> Any:
    """The value ``target`` has for ``arm`` without ablation (a missing key: a sentinel)."""
    kind, key = target.split('.', 1)
    if kind == CRITERION:
        return criteria[arm].get(key, _MISSING)
    if config is None:
        return _MISSING   # upstream: the default lives in upstream's config; never equal
    try:
        return get_dotted(config, key)
    except KeyError:
        return _MISSING


_MISSING = object()


def effective(spec: Spec, arm: str, point: dict[str, Any], criteria: dict) -> dict[str, Any]:
    """What ``point`` changes for ``arm`` (its values that differ from the arm's defaults)."""
    config = spec.part.base_config   # None where the defaults live upstream
    out = {}
    for target, value in point.items():
        kind, key = target.split('.', 1)
        if kind == CRITERION and (arm == BASELINE or key not in criteria[arm]):
            continue
        if value != default_value(arm, target, criteria, config):
            out[target] = value
    return out


def points(spec: Spec) -> list[dict[str, Any]]:
    """Ablation points as ``{target: value}``: ``{}`` (the main runs) first."""
    if spec.ablations is None:
        return [{}]
    axes = spec.ablations.axes
    if spec.ablations.mode == 'grid':
        combos = [dict(zip([a.target for a in axes], vals)) for vals in itertools.product(*[a.values for a in axes])]
    else:
        combos = [{a.target: v} for a in axes for v in a.values]
    return [{}] + combos


def run_matrix(spec: Spec, selection: Selection = Selection()) -> list[RunPoint]:
    """Every run of the spec, point-major, then seed-major (both arms of a seed finish close together).

    Args:
        selection: ``arms`` / ``seeds``: subsets of the spec's (``--arms`` / ``--seeds``), anything else
            is an error; ``only``: run ids to keep (a Slurm job's one run), an id not in the matrix is an error.
    """
    arms = selection.arms or list(spec.arms)
    seeds = selection.seeds if selection.seeds is not None else list(spec.seeds)
    only = selection.only
    unknown = sorted(set(arms) - set(spec.arms))
    if unknown:
        raise HarnessError(f'--arms {unknown} not in the spec\'s arms {list(spec.arms)}')
    extra = sorted(set(seeds) - set(spec.seeds))
    if extra:
        raise HarnessError(f'--seeds {extra} not in the spec\'s seeds {list(spec.seeds)}; add them to '
                           f'{spec.path} (the spec is the study\'s record of what ran)')
    criteria = load_criteria()
    out, seen = [], set()
    for point in points(spec):
        for seed in seeds:
            for arm in arms:
                change = effective(spec, arm, point, criteria)
                run = make_point(spec.experiment, arm, seed, change)
                if run not in seen:
                    seen.add(run)
                    out.append(run)
    if only is not None:
        missing = sorted(set(only) - {r.run_id for r in out})
        if missing:
            raise HarnessError(f'--only {missing}: not in the run matrix of {spec.path}; '
                               '`python -m harness plan` lists its run ids')
        out = [r for r in out if r.run_id in only]
    return out
