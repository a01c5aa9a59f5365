"""Nested config trees (dicts and lists): flatten, diff, set a dotted key.

Used by every backend for derived run configs and by compare for fingerprints.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from harness.core.errors import HarnessError


def flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
    """{'a': {'b': 1}, 'c': [2]} -> {'a.b': 1, 'c.0': 2}; an empty dict/list stays a leaf."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f'{prefix}.{key}' if prefix else str(key)))
    return out or {prefix: tree}


def config_diff(a: dict, b: dict) -> list[str]:
    """Flattened keys whose values differ (or exist on one side only): ``'key: old -> new'`` each."""
    fa, fb = flatten(a), flatten(b)
    missing = object()
    return [f'{k}: {fa.get(k, "<absent>")!r} -> {fb.get(k, "<absent>")!r}'
            for k in sorted(set(fa) | set(fb)) if fa.get(k, missing) != fb.get(k, missing)]


def diff_keys(lines: list[str]) -> list[str]:
    """The keys of :func:`config_diff` lines."""
    return [line.split(':', 1)[0] for line in lines]


def under(key: str, prefix: str) -> bool:
    """``key`` is ``prefix`` itself or lies below it (``a.b`` is under ``a``, ``ab`` is not)."""
    return key == prefix or key.startswith(prefix + '.')


def canonical_hash(tree: Any) -> str:
    """sha256 of the tree as sorted, compact JSON: equal trees, equal hashes."""
    text = json.dumps(tree, sort_keys=True, separators=(',', ':'), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def get_dotted(tree: Any, key: str) -> Any:
    """The value at ``a.b.0.c``; KeyError naming the missing part."""
    node = tree
    for part in key.split('.'):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(f'{key}: no {part!r}')
    return node


def set_dotted(tree: Any, key: str, value: Any, where: str = 'the config', _full: str | None = None) -> None:
    """``a.b.0.c`` = value in place, ``*`` meaning every element of a list.

    Only the last part may be a new key, so a typo fails loudly.

    Raises:
        HarnessError: a path element that does not exist, naming ``where``.
    """
    full = _full or key
    head, _, rest = key.partition('.')
    for parent, index in _children(tree, head, last=not rest, full=full, where=where):
        if rest:
            set_dotted(parent[index], rest, value, where, full)
        else:
            parent[index] = copy.deepcopy(value)


def _children(node: Any, head: str, last: bool, full: str, where: str) -> list[tuple[Any, Any]]:
    """(container, index) pairs that ``head`` names in ``node``; a new key only as the last part."""
    if isinstance(node, list):
        if head == '*':
            return [(node, i) for i in range(len(node))]
        if head.isdigit() and int(head) < len(node):
            return [(node, int(head))]
    elif isinstance(node, dict) and (head in node or last):
        return [(node, head)]
    raise HarnessError(f'{full!r}: no {head!r} there in {where}; check the key')


def without(tree: dict, patterns: list[str] | tuple[str, ...]) -> dict:
    """The flattened tree minus keys matching any fnmatch pattern (e.g. places that are not settings)."""
    import fnmatch
    return {k: v for k, v in flatten(tree).items() if not any(fnmatch.fnmatchcase(k, p) for p in patterns)}
