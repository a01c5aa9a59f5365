"""Run the data verbs quietly inside tests."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from harness.cli import main


def harness(*args: str) -> tuple[int, str, str]:
    """``python -m harness ...`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def synth_raw(path: Path, rooms: int = 1, points: int = 3000, defects: bool = False) -> Path:
    code, _, err = harness('synth', '--out', path, '--raw', '--rooms-per-area', rooms,
                           '--points-per-room', points, *(['--defects'] if defects else []))
    assert code == 0, err
    return path
