"""The backends, by the name a spec's ``backend:`` gives: one line each.

A backend subclasses ``harness.study.backend.Backend`` (its contract and
order of calls are documented there); the runner does everything else.
"""
from __future__ import annotations

from pathlib import Path

from harness.backends.native.backend import NativeBackend
from harness.backends.upstream.backend import UpstreamBackend
from harness.core.errors import HarnessError
from harness.study.backend import Backend
from harness.study.spec import Spec, load_spec

BACKENDS: dict[str, type[Backend]] = {
    'native': NativeBackend,
    'upstream': UpstreamBackend,
}


def get(name: str) -> Backend:
    """A new instance of the backend ``name``."""
    if name not in BACKENDS:
        raise HarnessError(f'backend {name!r} unknown; use one of {sorted(BACKENDS)}')
    return BACKENDS[name]()


def load(path: Path) -> tuple[Spec, Backend]:
    """Read a spec (common part and its backend's part, checked); returns (spec, backend)."""
    spec = load_spec(path, {name: cls.parse_spec for name, cls in BACKENDS.items()},
                     {name: cls.spec_keys for name, cls in BACKENDS.items()})
    return spec, get(spec.backend)
