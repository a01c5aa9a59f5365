"""Small declarative checks for spec sections: unknown keys (with a did-you-mean), types and ranges.

A schema is a dict: key -> check or nested schema; a key ending in ``?`` is
optional. A check takes the value and returns None when it is fine, else what
is wrong ("must be a number > 0").
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Callable

from harness.core.errors import HarnessError

Check = Callable[[Any], 'str | None']


def did_you_mean(key: str, allowed) -> str:
    """' (did you mean 'x'?)' for a close allowed key, else ''."""
    close = difflib.get_close_matches(str(key), sorted(map(str, allowed)), n=1, cutoff=0.6)
    return f' (did you mean {close[0]!r}?)' if close else ''


def check_keys(where: str, block: Any, required: set[str], optional: set[str]) -> None:
    """A mapping with every required key and no unknown one.

    Raises:
        HarnessError: ``<where>: unknown key 'x' (did you mean 'y'?); allowed: [...]``.
    """
    if not isinstance(block, dict):
        raise HarnessError(f'{where}: expected a mapping with keys {sorted(required | optional)}, got {block!r}')
    unknown = sorted(set(block) - required - optional, key=str)
    if unknown:
        raise HarnessError(f'{where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], required | optional)}; '
                           f'allowed: {sorted(required | optional)}')
    missing = sorted(required - set(block))
    if missing:
        raise HarnessError(f'{where}: missing key(s) {missing}')


def validate(tree: Any, schema: dict, where: str) -> None:
    """Check ``tree`` against ``schema`` (recursively); the first problem is raised, naming the key.

    Raises:
        HarnessError: ``<where>.<key>: <value> <problem>``.
    """
    required = {k for k in schema if not k.endswith('?')}
    optional = {k[:-1] for k in schema if k.endswith('?')}
    check_keys(where, tree, required, optional)
    for key, value in tree.items():
        rule = schema.get(key, schema.get(f'{key}?'))
        if isinstance(rule, dict):
            validate(value, rule, f'{where}.{key}')
            continue
        problem = rule(value)
        if problem:
            raise HarnessError(f'{where}.{key}: {value!r} {problem}; fix the value')


def _number(x: Any) -> bool:
    """A finite int or float: YAML reads ``.inf`` and ``.nan`` (and ``1.0e400``) as floats, and an infinite
    learning rate or weight trains on (to NaN) instead of failing here."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    return isinstance(x, int) or math.isfinite(x)   # an int is finite (and may be too large for a float)


def _wants(rule: str, x: Any) -> str:
    """'must be a number <rule>', saying 'finite' when the value is an infinite or NaN float."""
    infinite = isinstance(x, float) and not math.isfinite(x)
    return f'must be a {"finite " if infinite else ""}number {rule}'


def positive(x: Any) -> str | None:
    return None if _number(x) and x > 0 else _wants('> 0', x)


def non_negative(x: Any) -> str | None:
    return None if _number(x) and x >= 0 else _wants('>= 0', x)


def fraction(x: Any) -> str | None:
    return None if _number(x) and 0 <= x <= 1 else _wants('in [0, 1]', x)


def positive_int(x: Any) -> str | None:
    return None if isinstance(x, int) and not isinstance(x, bool) and x > 0 else 'must be an integer > 0'


def int_in(low: int, high: int, why: str) -> Check:
    """An integer in ``low..high``; ``why`` says where the upper bound comes from (shown with it)."""
    def run(x: Any) -> str | None:
        if not isinstance(x, int) or isinstance(x, bool) or x < low:
            return 'must be an integer > 0' if low == 1 else f'must be an integer >= {low}'
        return None if x <= high else f'must be an integer in {low}..{high:,} ({why})'
    return run


# Upper bounds that mean something: past them a value is a typo, and torch or numpy would
# fail deep inside training (an int64 overflow, an allocation of petabytes) instead of here.
ITERATIONS = int_in(1, 10**8, "upstream's 512 epochs are ~52k iterations; past 10**8 a counter overflows "
                              'or the run never ends')
QUERIES = int_in(1, 10**4, 'upstream uses 400 queries; each holds a mask over every voxel, so 10**4 already '
                           'needs GBs per scene')
THREADS = int_in(1, 1024, 'more threads than any machine has cores; torch would start them all')


def exactly(value: int, why: str) -> Check:
    """The integer ``value`` and no other; ``why`` says what fixes it (shown with it)."""
    return lambda x: (None if isinstance(x, int) and not isinstance(x, bool) and x == value
                      else f'must be {value} ({why})')


def non_negative_int(x: Any) -> str | None:
    return None if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else 'must be an integer >= 0'


def boolean(x: Any) -> str | None:
    return None if isinstance(x, bool) else 'must be true or false'


def text(x: Any) -> str | None:
    return None if isinstance(x, str) and x else 'must be a non-empty string'


def one_of(*choices: Any) -> Check:
    return lambda x: None if x in choices else f'must be one of {list(choices)}'


def list_of(check: Check, min_len: int = 1, max_len: int | None = None) -> Check:
    def run(x: Any) -> str | None:
        if not isinstance(x, list) or len(x) < min_len or (max_len is not None and len(x) > max_len):
            size = f'{min_len}' if max_len == min_len else f'{min_len}..{max_len or "n"}'
            return f'must be a list of {size} items'
        bad = [v for v in x if check(v)]
        return f'has bad items {bad}: each {check(bad[0])}' if bad else None
    return run


def optional(check: Check) -> Check:
    """``check``, or null."""
    return lambda x: None if x is None else check(x)


def area(x: Any) -> str | None:
    return None if isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 6 else 'must be an S3DIS area 1..6'
