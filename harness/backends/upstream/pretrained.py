"""The pretrained backbone: downloaded once into a cache, checked against the spec's sha256."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from harness.core.errors import HarnessError

DEFAULT_CACHE = Path('work_dirs/pretrained')  # a volume in the images, so it survives containers


@dataclass(frozen=True)
class Pretrained:
    """A spec's ``pretrained:``: the backbone checkpoint; without sha256 the hash is only recorded and printed."""

    url: str
    sha256: str | None = None


def pretrained_path(pre: Pretrained | None, cache: Path) -> Path | None:
    """Where the spec's pretrained checkpoint lives in ``cache`` (None: random init)."""
    if pre is None:
        return None
    return (Path(cache) / pre.url.rstrip('/').rsplit('/', 1)[-1]).resolve()


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a (large) file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def ensure_pretrained(pre: Pretrained | None, cache: Path) -> dict | None:
    """Download the checkpoint if missing, then check its hash.

    Returns:
        None for random init, else ``{'path', 'url', 'sha256', 'pinned'}``
        (``pinned`` False when the spec has no sha256 yet: the hash is only
        recorded, and printed so that the user can pin it).

    Raises:
        HarnessError: download impossible (says where to put the file by hand)
            or a hash mismatch (the file is left where it is).
    """
    path = pretrained_path(pre, cache)
    if path is None:
        return None
    url, expected = pre.url, pre.sha256
    if not path.exists():
        download(url, path, expected)
    actual = sha256_of(path)
    if expected and actual != expected:
        raise HarnessError(f'{path}: sha256 {actual}, the spec pins {expected}; the file is corrupt or '
                           f'not the one the spec names: move it away and re-run to download {url} again')
    if not expected:
        print(f'warning: the spec pins no sha256 for {path.name}; recorded {actual} '
              '(check it, then set pretrained.sha256 in the spec)')
    return {'path': str(path), 'url': url, 'sha256': actual, 'pinned': bool(expected)}


def download(url: str, path: Path, expected: str | None) -> None:
    """``url`` -> ``path`` through a temporary file (no partial file is ever left at ``path``)."""
    by_hand = (f'download {url} by hand and put it at {path}'
               + (f' (sha256 {expected})' if expected else ''))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.part')
    try:
        with os.fdopen(fd, 'wb') as out, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get('Content-Length') or 0) or None
            with tqdm(total=total, unit='B', unit_scale=True, desc=path.name) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
        os.replace(tmp, path)
    except (urllib.error.URLError, OSError, ValueError) as err:
        Path(tmp).unlink(missing_ok=True)
        raise HarnessError(f'cannot download the pretrained backbone ({err}); {by_hand}') from err
