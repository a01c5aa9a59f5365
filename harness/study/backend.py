"""What a backend is to the runner: derive a run's config, train it, predict the test rooms.

The runner (harness.study.runner) owns the run record from start to finish;
a backend never touches it. A new backend is one module with a subclass of
:class:`Backend` plus one line in ``harness/backends/__init__.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.study.matrix import RunPoint


@dataclass
class RunOptions:
    """Command-line choices that shape runs (same for every run of one invocation).

    Attributes:
        runs: folder of run records; work_dirs: logs, checkpoints, predictions.
        data: prepared data root overriding the spec's (None: the spec's).
        force: a new attempt even where one finished.
        gpus / epochs / iters / upstream_root / allow_other_commit / cache:
            upstream backend options (the native backend ignores them).
    """

    runs: Path = Path('results/runs')
    work_dirs: Path = Path('work_dirs')
    data: Path | None = None
    force: bool = False
    gpus: int = 1
    epochs: int | None = None
    iters: int | None = None
    upstream_root: Path | None = None
    allow_other_commit: bool = False
    cache: Path = Path('work_dirs/pretrained')


@dataclass
class Derived:
    """A run's derived config.

    Attributes:
        config: the resolved run config, plain JSON types (hashed; saved as config.json).
        diff: flattened ``'key: baseline -> arm'`` lines (all under the arm key).
        files: name -> text of files the backend trains from (written by the
            runner into ``<work_dir>/configs/`` and the record's ``configs/``).
        iterations: planned training iterations, when known from the config.
    """

    config: dict
    diff: list[str]
    files: dict[str, str] = field(default_factory=dict)
    iterations: int | None = None


@dataclass
class RunContext:
    """Everything a backend needs for one run (read-only to it).

    Attributes:
        spec / point / derived / options: as the runner derived them.
        record_dir: the record's folder (backends may only write files they own there: none today).
        work_dir: the run's own folder for logs, checkpoints and predictions.
        data_root: the prepared data the run trains and is evaluated on.
        resumed: an earlier session of this attempt exists (resume from its checkpoint).
    """

    spec: dict
    point: RunPoint
    derived: Derived
    options: RunOptions
    record_dir: Path
    work_dir: Path
    data_root: Path
    resumed: bool


@dataclass
class Trained:
    """What training produced.

    Attributes:
        iterations: iterations the run has completed (all sessions).
        seconds: training seconds of this session; iters_this_session: its iterations.
        scalars: mmengine-style scalars.json of the whole run (None if not logged).
        checkpoint: the last checkpoint (what is evaluated).
    """

    iterations: int
    seconds: float
    iters_this_session: int
    scalars: Path | None
    checkpoint: Path | None = None


class Backend:
    """Base class of the backends; ``derive``, ``train`` and ``predict`` are theirs to define."""

    name: ClassVar[str] = ''
    #: top-level spec keys beyond the common ones: (required, optional)
    spec_keys: ClassVar[tuple[frozenset, frozenset]] = (frozenset(), frozenset())
    #: config keys that name places, not settings (compare's fingerprint skips them); '*' matches a part
    location_keys: ClassVar[tuple[str, ...]] = ()

    def validate(self, spec: dict) -> None:
        """Check the backend's own part of the spec (raise HarnessError naming file and key)."""

    def prepare(self, spec: dict, options: RunOptions) -> dict[str, Any]:
        """Once per invocation, before anything is derived; returns fields every run record carries."""
        return {}

    def derive(self, spec: dict, point: RunPoint, options: RunOptions, data_root: Path) -> Derived:
        raise NotImplementedError

    def train(self, ctx: RunContext) -> Trained:
        """Train, resuming from the run's own last checkpoint when ``ctx.resumed``."""
        raise NotImplementedError

    def predict(self, ctx: RunContext, trained: Trained) -> Path:
        """Predict every test room with the last checkpoint; returns the folder of ``<room>.npz``."""
        raise NotImplementedError

    def check_metrics(self, ctx: RunContext, metrics: dict) -> dict[str, Any]:
        """Extra metrics.json entries (e.g. the upstream cross-check); raise to fail the run."""
        return {}
