"""Atomic writes that never silently overwrite, and the machine-readable RESULT line."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from harness.core.errors import OS_FIXES, HarnessError


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
        # mkstemp makes the file 0600; give it the mode a plain open() would (shared results stay readable)
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        # a failed write() names no file, a failed rename our temporary one: name the file being written
        raise OSError(err.errno, err.strerror, str(path)) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A temporary folder inside ``out`` for all of a verb's outputs, moved into ``out`` only on success.

    If writing fails (disk full, an error), ``out`` keeps its previous files:
    never a mix of old and new outputs. Each file moves by rename (same
    filesystem, no copy).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix='.staging-'))
    try:
        yield tmp
        for path in sorted(p for p in tmp.rglob('*') if p.is_file()):
            dest = out / path.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def now() -> str:
    """UTC timestamp, ISO 8601 (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec='seconds')


def result_line(verb: str, status: str, **fields: Any) -> str:
    """One machine-readable summary line that ends every command: ``RESULT {json}``."""
    return 'RESULT ' + json.dumps({'verb': verb, 'status': status, **fields}, sort_keys=False)


def writable_folder(folder: Path, fix: str = 'choose another --out') -> None:
    """``folder`` exists (or can be made) and takes a file: checked before compute that would write there.

    Raises:
        HarnessError: ``<folder>: cannot write there (<cause>); <fix>``.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        # mkdir(exist_ok=True) on a regular file says "File exists": the real cause is a file in the path
        known = OS_FIXES.get(errno.ENOTDIR if isinstance(err, FileExistsError) else err.errno)
        cause = known.split(';')[0] if known else err.strerror
        raise HarnessError(f'{folder}: cannot write there ({cause}); {fix}') from err


def check_out_file(out: Path, force: bool) -> None:
    """``--out`` can take a report file: not a folder, not an existing file without ``force``, a writable
    parent. Checked before the compute whose result it takes, not after.

    Raises:
        HarnessError: naming ``out`` and the fix.
    """
    if out.is_dir():   # --force cannot help: a folder is never replaced by a file
        raise HarnessError(f'--out {out}: {OS_FIXES[errno.EISDIR]}')
    if out.exists() and not force:
        raise HarnessError(f'{out} exists; pass --force to replace it or choose another --out')
    writable_folder(out.parent)


def head(path: Path, lines: int = 1) -> list[str]:
    """The first ``lines`` lines of a text file without their line ends ('' past its end); bytes that are not
    UTF-8 are replaced: enough to tell whether the harness wrote the file (its header), whatever the file holds."""
    with open(path, encoding='utf-8', errors='replace') as f:
        return [f.readline().rstrip('\r\n') for _ in range(lines)]
