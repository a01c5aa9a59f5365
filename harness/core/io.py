"""Atomic writes that never silently overwrite, and the machine-readable RESULT line."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError


def atomic_write(path: Path, data: str | bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder + rename.

    A reader (or an interrupted run) never sees a partial file.

    Args:
        path: destination; parent folders are created.
        data: text (written as UTF-8) or bytes.
        overwrite: replace an existing file; otherwise an existing file is an error.

    Raises:
        HarnessError: the file exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise HarnessError(f'{path} exists; pass --force to replace it or choose another --out')
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def result_line(verb: str, status: str, **fields: Any) -> str:
    """One machine-readable summary line that ends every command: ``RESULT {json}``."""
    return 'RESULT ' + json.dumps({'verb': verb, 'status': status, **fields}, sort_keys=False)
