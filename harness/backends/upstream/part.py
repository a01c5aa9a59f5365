"""The upstream backend's part of a spec: which OneFormer3D checkout, its schedule, and what runs set."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.backends.upstream.pretrained import Pretrained
from harness.core import schema as sc
from harness.core.errors import HarnessError
from harness.core.schema import check_keys
from harness.study.arms import second_keys
from harness.study.matrix import RunPoint


@dataclass(frozen=True)
class Source:
    """``upstream:``: the OneFormer3D checkout a spec trains with.

    Attributes:
        repo: where it is cloned from; commit: the pinned commit (runs refuse another
        unless allowed, recorded); root: where the images clone it (``--upstream-root``
        and ``$ONEFORMER3D_ROOT`` override); config: upstream's config, relative to root.
    """

    repo: str
    commit: str
    root: str
    config: str


SCHEDULE = {'epochs?': sc.optional(sc.ITERATIONS), 'iters?': sc.optional(sc.ITERATIONS),
            'val_interval?': sc.optional(sc.ITERATIONS)}


@dataclass(frozen=True)
class Schedule:
    """``schedule:``: upstream's epochs (None: its 512), or an iteration schedule (smoke and CI runs)."""

    epochs: int | None = None
    iters: int | None = None
    val_interval: int | None = None   # None: upstream's (16 epochs)


@dataclass(frozen=True)
class UpstreamPart:
    """The upstream backend's part of a spec.

    Attributes:
        randomness: mmengine ``randomness`` keys besides the seed (e.g. deterministic).
        overrides: dotted keys of upstream's config set for every arm (data sizes for CPU runs).
    """

    upstream: Source
    schedule: Schedule
    pretrained: Pretrained | None
    randomness: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    base_config: None = None   # the defaults live in upstream's config

    def planned_iterations(self, point: RunPoint) -> int | None:
        return self.schedule.iters


def parse_part(raw: dict, path: Path) -> UpstreamPart:
    """The spec's ``upstream:``, ``schedule:``, ``pretrained:``, ``randomness:`` and ``overrides:``, checked.

    Raises:
        HarnessError: a key or value out of place (naming file and key), or an arm with a second key.
    """
    check_keys(f'{path}: upstream', raw['upstream'], {'repo', 'commit', 'root', 'config'}, set())
    sc.validate(raw['schedule'], SCHEDULE, f'{path}: schedule')
    if raw['pretrained'] is not None:
        check_keys(f'{path}: pretrained', raw['pretrained'], {'url'}, {'sha256'})
    for arm in raw['arms']:
        if second_keys(arm):
            raise HarnessError(f'{path}: arm {arm} also needs {second_keys(arm)}, which upstream\'s model does '
                               'not have (only criterion-only arms run on the upstream backend)')
    return UpstreamPart(upstream=Source(**raw['upstream']), schedule=Schedule(**raw['schedule']),
                        pretrained=Pretrained(**raw['pretrained']) if raw['pretrained'] else None,
                        randomness=dict(raw.get('randomness') or {}), overrides=dict(raw.get('overrides') or {}))
