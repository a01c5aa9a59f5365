"""The backends, by the name a spec's ``backend:`` gives: one line each.

A backend subclasses ``harness.study.backend.Backend`` (derive, train,
predict); the runner does everything else.
"""
from __future__ import annotations

from pathlib import Path

from harness.backends.native.backend import NativeBackend
from harness.backends.upstream.backend import UpstreamBackend
from harness.core.errors import HarnessError
from harness.study.backend import Backend
from harness.study.spec import load_spec

BACKENDS: dict[str, type[Backend]] = {
    'native': NativeBackend,
    'upstream': UpstreamBackend,
}


def get(name: str) -> Backend:
    """A new instance of the backend ``name``."""
    if name not in BACKENDS:
        raise HarnessError(f'backend {name!r} unknown; use one of {sorted(BACKENDS)}')
    return BACKENDS[name]()


def load(path: Path) -> tuple[dict, Backend]:
    """Read a spec, check its common part and its backend's part; returns (spec, backend)."""
    spec = load_spec(path, sorted(BACKENDS))
    backend = get(spec['backend'])
    backend.validate(spec)
    return spec, backend
