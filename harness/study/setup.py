"""What every invocation sets up before runs: the data (generated only where the spec says how) and threads."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from harness.core.errors import HarnessError
from harness.study.spec import Spec


def data_root(spec: Spec, given: Path | None = None) -> Path:
    """``--data`` if given, else the spec's ``data.root`` (a path; nothing is checked or made)."""
    return Path(given if given is not None else spec.data.root)


def ensure_data(spec: Spec, given: Path | None = None) -> Path:
    """The prepared data root the runs use.

    ``--data`` (``given``) must already hold a prepared dataset: it is never
    generated, so a typo cannot silently create and train on new data. The
    spec's own ``data.root`` is generated with synth (once, then cached) when
    the spec has ``data.synth``.

    Raises:
        HarnessError: no prepared dataset there, and none to generate.
    """
    root = data_root(spec, given)
    if (root / 'MANIFEST.json').exists():
        return check_data(spec, root)
    if given is not None:
        raise HarnessError(f'--data {given}: no prepared dataset there (no MANIFEST.json); check the path, or '
                           'leave --data out to use the spec\'s data.root')
    synth = spec.data.synth
    if synth is None:
        raise HarnessError(f'{root}: no prepared dataset (no MANIFEST.json); run prepare-data (real S3DIS) or '
                           f'give {spec.path} a data.synth block')
    from harness.data.synth import generate
    with contextlib.redirect_stdout(io.StringIO()):
        generate(root, rooms_per_area=synth.rooms_per_area, seed=synth.seed, points_per_room=synth.points_per_room,
                 points_per_m2=synth.points_per_m2)
    return check_data(spec, root)


def check_data(spec: Spec, root: Path) -> Path:
    """The data the runs train and test on, checked cheaply against its manifest before any training.

    Raises:
        HarnessError: the first problems found (file, size, fix) and how to check everything.
    """
    from harness.data.verify import quick_check
    areas = [*spec.data.train_areas, spec.data.test_area]
    problems = quick_check(root, areas)
    if problems:
        more = f' (+{len(problems) - 3} more)' if len(problems) > 3 else ''
        raise HarnessError('; '.join(problems[:3]) + more + f'; `python -m harness verify-data {root}` checks all')
    return root


def set_threads(spec: Spec) -> None:
    """``threads:`` of the spec for torch in this process (one thread: spconv on CPU is bitwise reproducible)."""
    if spec.threads:
        import torch
        torch.set_num_threads(spec.threads)
