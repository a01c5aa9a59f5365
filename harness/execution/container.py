"""Each Slurm job's command inside the harness's image, for clusters without Docker (Apptainer).

``container: apptainer:/path/influencerformer.sif`` (spec or ``--container``)
wraps the job's ``python -m harness run ...`` as::

    apptainer exec --nv --bind <data>:/workspace/data,<work_dirs>:/workspace/work_dirs,
        <results>:/workspace/results --pwd /workspace <image.sif> python -m harness run ...

The same three folders the compose services mount; paths in the command are
translated into the container's, so the image's own code and stack run. The
host environment is passed in (Apptainer's default): the job's SLURM_*
variables reach the run record; the image's own variables (PYTHONPATH,
ONEFORMER3D_ROOT) are set by the image and win.
"""
from __future__ import annotations

from pathlib import Path

from harness.core.errors import HarnessError

WORKSPACE = Path('/workspace')
FOLDERS = ('data', 'work_dirs', 'results')   # the image's volumes (docker/Dockerfile, compose.yaml)


def parse(spec: str | None) -> Path | None:
    """``apptainer:/path/image.sif`` -> the image path (None: no container)."""
    if not spec:
        return None
    kind, _, image = spec.partition(':')
    if kind != 'apptainer' or not image:
        raise HarnessError(f'container {spec!r}: use apptainer:/path/to/image.sif (build it with '
                           '`apptainer build influencerformer.sif docker-daemon://influencerformer:torch2.0.1-cu118`)')
    return Path(image)


def binds(base: Path) -> dict[Path, Path]:
    """Host folder -> container folder for the three volumes, under ``base`` (the checkout)."""
    return {(Path(base) / name).resolve(): WORKSPACE / name for name in FOLDERS}


def inside(path: Path, mounts: dict[Path, Path]) -> Path:
    """Where a host path appears in the container; an error if it lies in no bound folder."""
    path = Path(path).resolve()
    for host, guest in mounts.items():
        if path == host or host in path.parents:
            return guest / path.relative_to(host)
    raise HarnessError(f'{path}: not under {", ".join(str(h) for h in mounts)}; with a container, runs, work '
                       'dirs and data must lie in those folders (they are bound into the image)')


def wrap(command: list[str], paths: set[int], image: Path, base: Path, gpus: int) -> list[str]:
    """``command`` (``python -m harness ...``) run in ``image``; ``paths``: indices of path arguments."""
    mounts = binds(base)
    args = [str(inside(Path(a), mounts)) if i in paths else a for i, a in enumerate(command)]
    args[0] = 'python'   # the image's interpreter, not this one
    bind = ','.join(f'{h}:{g}' for h, g in mounts.items())
    return ['apptainer', 'exec', *(['--nv'] if gpus else []), '--bind', bind,
            '--pwd', str(WORKSPACE), str(image), *args]
