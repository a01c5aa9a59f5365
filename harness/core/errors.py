"""The one exception type the CLI turns into a one-line error and exit code 2, and OSErrors said plainly."""
from __future__ import annotations

import errno
import os
from pathlib import Path


class HarnessError(Exception):
    """A problem the user can fix; the message names the file or key and the fix."""


# errno -> what it means for the user and the fix (the catch-all "free space or fix the permissions"
# sent people after the wrong cause: a name too long or a file where a folder should be is neither).
OS_FIXES = {
    errno.ENAMETOOLONG: 'name too long (a file or folder name over the file system\'s limit, usually 255 bytes); '
                        'use a shorter experiment name or path',
    errno.ENOTDIR: 'a part of this path is a file, not a folder; move that file away or choose another path',
    errno.EISDIR: 'is a folder where a file is expected; choose a file path or move the folder away',
    errno.ENOSPC: 'no space left on the device; free space, then run the same command again (runs resume)',
    errno.EDQUOT: 'disk quota exceeded; free space or raise the quota, then run the same command again',
    errno.EROFS: 'read-only file system; choose a writable folder',
    errno.EACCES: 'permission denied; fix the permissions or choose another folder',
    errno.EPERM: 'operation not permitted; fix the permissions or choose another folder',
    errno.ENOENT: 'no such file or folder; check the path',
    errno.ELOOP: 'too many levels of symbolic links (a link loop?); fix the links',
    errno.EEXIST: 'exists already; move it away or choose another path',
}


def os_error_message(err: OSError, where: Path | str | None = None) -> str:
    """One line for an OSError: the path (``err.filename``, else ``where``), the cause by errno, the fix.

    Args:
        err: the error; its ``filename`` is None for a failed write() (a full disk), hence ``where``.
        where: the file or folder being written when the error carries no path.
    """
    path = err.filename if err.filename is not None else where
    head = f'{os.fsdecode(path) if not isinstance(path, Path) else path}: ' if path is not None else ''
    fix = OS_FIXES.get(err.errno)
    if fix is None:
        fix = f'{err.strerror or err}; check the path and the disk, then run again'
    return f'{head}{fix}'
