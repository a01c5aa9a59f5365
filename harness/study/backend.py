"""What a backend is to the runner: the contract, its order of calls, and the values passed between steps.

The runner (``harness.study.runner``) owns the run record from start to
finish; a backend never touches it, and keeps no state on ``self`` between
calls: each step returns what the next one needs. A new backend is one
module with a subclass of :class:`Backend` plus one line in
``harness/backends/__init__.py`` (docs/extending.md; tests/oracle_backend.py
is a working example).

Order of calls, for one invocation of ``run``::

    part    = Backend.parse_spec(raw, path)       # once, by the spec loader: the backend's typed part
    options = Backend.options(values)             # once, by the verb: the backend's own command-line options
    prepared = backend.prepare(spec, options)      # once, before anything is derived
    for each run of the matrix:
        derived = backend.derive(spec, prepared, point, data_root)     # all runs first: refusals before training
    for each run still to do (the runner opens or resumes its record, under its lock):
        trained   = backend.train(ctx)              # ctx: RunContext(spec, point, derived, prepared, ...)
        predicted = backend.predict(ctx, trained)   # <room>.npz predictions of the test area
        # the runner evaluates predicted.folder with the one evaluator
        extra     = backend.check_metrics(ctx, metrics, predicted)    # merged into metrics.json
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

from harness.study.matrix import RunPoint
from harness.study.spec import Spec


@dataclass(frozen=True)
class NoOptions:
    """The options of a backend that adds none to the command line."""

    PATH_FLAGS: ClassVar[tuple[str, ...]] = ()   # flags of argv() whose value is a host path

    def argv(self) -> list[str]:
        """The command-line flags that give these options again (a Slurm job's command)."""
        return []


@dataclass(frozen=True)
class RunOptions:
    """Command-line choices that shape runs (the same for every run of one invocation).

    Attributes:
        runs: folder of run records; work_dirs: logs, checkpoints, predictions.
        data: prepared data root overriding the spec's (None: the spec's).
        force: a new attempt even where one finished.
        backend: the backend's own options (its ``options(values)``; e.g. upstream's GPUs and schedule).
    """

    runs: Path = Path('results/runs')
    work_dirs: Path = Path('work_dirs')
    data: Path | None = None
    force: bool = False
    backend: Any = field(default_factory=NoOptions)


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` found once per invocation.

    Attributes:
        record: fields every run record of this invocation carries (e.g. upstream's commit).
        context: what the backend's later steps need, of the backend's own type (e.g. the checkout).
    """

    record: dict = field(default_factory=dict)
    context: Any = None


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class RunContext:
    """Everything a backend needs for one run (read-only to it).

    Attributes:
        spec / point / derived / options / prepared: as the runner planned them.
        record_dir: the record's folder (backends write nothing there).
        work_dir: the run's own folder for logs, checkpoints and predictions.
        data_root: the prepared data the run trains and is evaluated on.
        resumed: an earlier session of this attempt exists (resume from its checkpoint).
    """

    spec: Spec
    point: RunPoint
    derived: Derived
    options: RunOptions
    prepared: Prepared
    record_dir: Path
    work_dir: Path
    data_root: Path
    resumed: bool


@dataclass(frozen=True)
class Trained:
    """What training produced.

    Attributes:
        iterations: iterations the run has completed (all sessions).
        seconds: training seconds of this session; iters_this_session: its iterations.
        scalars: mmengine-style scalars.json of the whole run (None if not logged).
        checkpoint: the last checkpoint (what is evaluated).
        model: the trained model, where the backend keeps it in memory for ``predict`` (None otherwise).
    """

    iterations: int
    seconds: float
    iters_this_session: int
    scalars: Path | None
    checkpoint: Path | None = None
    model: Any = None


@dataclass(frozen=True)
class Predicted:
    """What ``predict`` produced: the folder of ``<room>.npz``, and anything ``check_metrics`` needs."""

    folder: Path
    extra: Any = None


class Backend:
    """Base class of the backends: ``derive``, ``train`` and ``predict`` are theirs to define.

    Override points (each optional unless marked):
        parse_spec: the backend's own spec keys -> its typed part (:attr:`spec_keys` lists them).
        add_arguments / options: its own command-line options and their typed value.
        prepare: checks and downloads once per invocation.
        derive (required), train (required), predict (required), check_metrics.
    """

    name: ClassVar[str] = ''
    #: top-level spec keys beyond the common ones: (required, optional)
    spec_keys: ClassVar[tuple[frozenset, frozenset]] = (frozenset(), frozenset())
    #: config keys that name places, not settings (compare's fingerprint skips them); '*' matches a part
    location_keys: ClassVar[tuple[str, ...]] = ()
    #: the type of the backend's own options; ``Options()`` holds their defaults
    Options: ClassVar[type] = NoOptions

    @classmethod
    def parse_spec(cls, raw: dict, path: Path) -> Any:
        """The backend's part of a spec, checked (raise HarnessError naming file and key).

        The part must offer ``base_config`` (the config an ablation's ``config:`` axis
        compares against; None where the defaults live elsewhere) and
        ``planned_iterations(point)`` (None when unknown before deriving).
        """
        return NoPart()

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        """The backend's own command-line options (run, plan, status share them)."""

    @classmethod
    def options(cls, values: Mapping[str, Any]) -> Any:
        """The typed value of the backend's own options (``RunOptions.backend``).

        Args:
            values: the parsed command line by option ``dest`` (``vars(args)``), every backend's options included.
        """
        return cls.Options()

    def prepare(self, spec: Spec, options: RunOptions) -> Prepared:
        """Once per invocation, before anything is derived."""
        return Prepared()

    def derive(self, spec: Spec, prepared: Prepared, point: RunPoint, data_root: Path) -> Derived:
        raise NotImplementedError

    def train(self, ctx: RunContext) -> Trained:
        """Train, resuming from the run's own last checkpoint when ``ctx.resumed``."""
        raise NotImplementedError

    def predict(self, ctx: RunContext, trained: Trained) -> Predicted:
        """Predict every test room with the last checkpoint."""
        raise NotImplementedError

    def check_metrics(self, ctx: RunContext, metrics: dict, predicted: Predicted) -> dict[str, Any]:
        """Extra metrics.json entries (e.g. the upstream cross-check); raise to fail the run."""
        return {}


@dataclass(frozen=True)
class NoPart:
    """The part of a backend without spec keys of its own."""

    base_config: dict | None = None

    def planned_iterations(self, point: RunPoint) -> int | None:
        return None
