"""Options several verbs share (run, plan, status, derive), and the typed values they become.

The command line becomes typed values here, at the verb: :class:`RunRequest`
(everything ``run`` was asked), :class:`Selection` (which runs of the matrix)
and ``RunOptions`` (how they run, with the backend's own options); nothing
past the verb reads ``args``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from harness.backends import BACKENDS
from harness.core.errors import HarnessError
from harness.study.backend import Backend, RunOptions
from harness.study.matrix import Selection


def add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """--arms and --seeds."""
    parser.add_argument('--arms', nargs='+', default=None, help='subset of the spec\'s arms')
    parser.add_argument('--seeds', type=int, nargs='+', default=None, help='subset of the spec\'s seeds')


def selection(args: argparse.Namespace) -> Selection:
    """The runs these arguments select."""
    return Selection(arms=args.arms, seeds=args.seeds, only=getattr(args, 'only', None))


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """Every backend's own options, one group each (a spec names the backend only once it is read)."""
    for name, cls in BACKENDS.items():
        cls.add_arguments(parser.add_argument_group(f'{name} backend'))


@dataclass(frozen=True)
class RunRequest:
    """Everything ``python -m harness run`` was asked, typed once at the verb.

    Attributes:
        spec: the experiment spec's path (read by ``backends.load``).
        selection: which runs of the spec's matrix.
        runs / work_dirs: where run records / logs, checkpoints and predictions go (folders).
        data: a prepared data root instead of the spec's, or None.
        force: new attempts of finished runs.
        executor: ``'local'`` (one after another here) or ``'slurm'`` (one job per run).
        wait: slurm: wait for the jobs.
        container: slurm: the image to run each job in (``kind:path``), or None for the spec's.
        slurm_flags: ``--slurm-*`` values by resource name (``time_min``, ...); None where not given.
        cli: the whole parsed command line by option ``dest``, read-only; each backend types its own
            options from it (``Backend.options``) once the spec names the backend.
    """

    spec: Path
    selection: Selection
    runs: Path
    work_dirs: Path
    data: Path | None = None
    force: bool = False
    executor: str = 'local'
    wait: bool = False
    container: str | None = None
    slurm_flags: Mapping[str, Any] = field(default_factory=dict)
    cli: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunRequest:
        """The run verb's arguments as one typed value.

        Raises:
            HarnessError: ``--runs`` or ``--work-dirs`` names a file (checked before anything is read).
        """
        values = dict(vars(args))
        for flag, key in (('--runs', 'runs'), ('--work-dirs', 'work_dirs')):
            path = values.get(key)
            if path is not None and Path(path).exists() and not Path(path).is_dir():
                raise HarnessError(f'{flag} {path}: a file, not a folder; choose a folder (or move the file away)')
        slurm_flags = {k[len('slurm_'):]: v for k, v in values.items() if k.startswith('slurm_')}
        if values.get('executor', 'local') != 'slurm':
            given = {**{f'--slurm-{k.replace("_", "-")}': v for k, v in slurm_flags.items()},
                     '--container': values.get('container'), '--wait': values.get('wait') or None}
            if flag := next((f for f, v in given.items() if v is not None), None):
                raise HarnessError(f'{flag}: a Slurm option, and runs execute here (--executor local); add '
                                   '--executor slurm or leave it out')
        return cls(spec=values['spec'], selection=selection(args), runs=values['runs'],
                   work_dirs=values.get('work_dirs') or Path('work_dirs'), data=values.get('data'),
                   force=bool(values.get('force')), executor=values.get('executor', 'local'),
                   wait=bool(values.get('wait')), container=values.get('container'),
                   slurm_flags=MappingProxyType(slurm_flags), cli=MappingProxyType(values))


def run_options(request: RunRequest, backend: Backend) -> RunOptions:
    """The RunOptions ``request`` asks for, with ``backend``'s own options.

    Raises:
        HarnessError: a flag of another backend was given (the spec's backend would not read it: an
            ``--epochs`` on a native spec trained the spec's schedule without a word).
    """
    refuse_other_backends(request.cli, backend.name, request.spec)
    return RunOptions(runs=request.runs, work_dirs=request.work_dirs, data=request.data, force=request.force,
                      backend=type(backend).options(request.cli))


def refuse_other_backends(cli: Mapping[str, Any], name: str, spec: Path) -> None:
    """Raise when ``cli`` sets a flag that only backends other than ``name`` define."""
    own = backend_defaults(name)
    for other in BACKENDS:
        for dest, default in backend_defaults(other).items():
            if dest not in own and cli.get(dest, default) != default:
                raise HarnessError(f'--{dest.replace("_", "-")}: an option of the {other} backend, and {spec} runs '
                                   f'on the {name} backend, which does not read it; leave it out')


def backend_defaults(name: str) -> dict[str, Any]:
    """The options backend ``name`` adds to the command line: dest -> the value when the flag is not given."""
    parser = argparse.ArgumentParser(add_help=False)
    BACKENDS[name].add_arguments(parser.add_argument_group())
    return vars(parser.parse_args([]))
