"""compare's outputs in ``--out``: one experiment's complete set, nothing left from another's.

compare writes ``.compare.json`` (the experiment and every file it wrote) beside its
outputs. The next render removes the files of the previous set that the new set
does not have (an ablation table or plot of another experiment), and only those:
``--out`` is often ``results/``, which holds run records and other studies.
A folder with outputs of another experiment but no such list (rendered before it
existed) is refused rather than mixed, and so is one whose files of those names
compare cannot account for (a user's own notes called comparison.md).
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.io import atomic_write

OWNED = '.compare.json'
TITLE = re.compile(r'# (.+?): instance segmentation, last checkpoint')
# the names compare writes at the top of --out (plots go under plots/)
TABLES = ('comparison.md', 'comparison.csv', 'per_class.md', 'per_class.csv', 'ablations.csv')


def previous_set(out: Path, experiment: str) -> list[str]:
    """The files (relative to ``out``) the previous render wrote; refuses a folder it cannot account for.

    Raises:
        HarnessError: ``out`` is a file; or it holds another experiment's comparison.md and no list of it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise HarnessError(f'--out {out}: a file, not a folder; choose a folder for the tables and plots')
    listed = _read(out / OWNED)
    if listed is not None:
        return listed
    title = _title(out / 'comparison.md')
    if title is not None and title != experiment:
        raise HarnessError(f'--out {out}: holds the comparison of experiment {title!r} (comparison.md, plots/), '
                           f'not of {experiment!r}; choose another --out (e.g. {out / experiment}) or move those '
                           'files away')
    if title is None:   # nothing says compare wrote what is there: never overwrite it
        theirs = [name for name in TABLES if (out / name).exists()]
        theirs += ['plots/'] if (out / 'plots').is_dir() and any((out / 'plots').iterdir()) else []
        if theirs:
            raise HarnessError(f'--out {out}: holds {", ".join(theirs)} that compare did not write (no {OWNED}, '
                               f'no comparison.md of an experiment); choose another --out (e.g. {out / experiment}) '
                               'or move them away')
    return []


def claim(out: Path, experiment: str, written: list[str], previous: list[str], interim: Sequence[str] = ()) -> list[str]:
    """Record the new set (and, for an interim look, the runs still under way), then remove what the
    previous set had and this one has not; returns those removed."""
    owned = {'experiment': experiment, 'files': sorted(written), **({'interim': list(interim)} if interim else {})}
    atomic_write(Path(out) / OWNED, json.dumps(owned, indent=1) + '\n', overwrite=True)
    removed = []
    for rel in sorted(set(previous) - set(written)):
        path = Path(out) / rel
        if _safe(rel) and path.is_file():
            path.unlink()
            removed.append(rel)
    return removed


def _safe(rel: str) -> bool:
    """A relative path inside ``--out`` (a list edited by hand never reaches outside it)."""
    return not Path(rel).is_absolute() and '..' not in Path(rel).parts


def _read(path: Path) -> list[str] | None:
    """The file list of a previous render (None: none, or unreadable: then nothing is removed)."""
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text()).get('files')
    except (OSError, ValueError, AttributeError):
        return None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else None


def _title(path: Path) -> str | None:
    """The experiment a comparison.md was rendered for (its first line), None without one."""
    try:
        first = path.read_text().split('\n', 1)[0]
    except (OSError, UnicodeDecodeError):
        return None
    match = TITLE.fullmatch(first.strip())
    return match.group(1) if match else None
