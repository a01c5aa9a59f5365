"""The arms of every experiment: what differs between them, and where that is enforced.

An arm is a name in ``baselines/criteria.yaml``; its block becomes the run
config's ``model.criterion.inst_criterion`` (:data:`ARM_KEY`) and nothing else
changes. Every backend derives each arm's run config from one base config
with :func:`with_arm`, then :func:`one_key_diff` proves, against the baseline
arm at the same seed and ablation point, that the two configs differ under
``ARM_KEY`` only and that the arm's block arrived intact (no keys merged in).
The diff is saved with every run. The baseline (:data:`BASELINE`, upstream's
Hungarian matching + BCE/Dice, as published) is what every other arm is
compared with.
"""
from __future__ import annotations

import copy
import fnmatch
import inspect
from pathlib import Path
from typing import Any

from influencerformer import registry

from harness.core import schema as sc
from harness.core import yamlfile
from harness.core.errors import HarnessError
from harness.core.paths import BASELINES
from harness.core.tree import config_diff, diff_keys, get_dotted, set_dotted, under

CRITERIA_FILE = BASELINES / 'criteria.yaml'
BASELINE = 'hungarian'
ARM_KEY = 'model.criterion.inst_criterion'
# criteria.yaml's entry of arms that need a model setting besides their criterion
# (a second key: recorded in every diff and named in the comparison).
SECOND_KEYS = '_second_keys'
# criteria.yaml's entry of arm names used before a rename -> the current arm (records and old specs keep them)
ALIASES = '_aliases'


def load_criteria(path: Path | None = None) -> dict[str, dict]:
    """Arm name -> inst_criterion block (a mapping with ``type``), from ``path`` (default: :data:`CRITERIA_FILE`).

    Raises:
        HarnessError: unreadable file, no baseline arm, or a block without ``type``.
    """
    path = path or CRITERIA_FILE
    table = _read(path)
    if BASELINE not in table:
        raise HarnessError(f'{path}: a mapping of arm name -> inst_criterion block, with a {BASELINE!r} arm')
    renamed = dict(table.get(ALIASES) or {})
    table = {k: v for k, v in table.items() if k not in (SECOND_KEYS, ALIASES)}
    for arm, block in table.items():
        if not isinstance(block, dict) or 'type' not in block:
            raise HarnessError(f'{path}: arm {arm!r} needs a mapping with a type key')
    for old, new in renamed.items():
        if new not in table:
            raise HarnessError(f'{path}: {ALIASES}: {old} -> {new!r}, which is not an arm of the file')
        table.setdefault(old, table[new])   # an old name reads as its current arm's block
    return table


def _read(path: Path) -> dict:
    """The criteria file's mapping, read strictly (an arm pasted in under a name already there is an
    error, not a silent replacement of the first block)."""
    table = yamlfile.read_yaml(path, 'criteria file', 'fix the file') or {}
    if not isinstance(table, dict):
        raise HarnessError(f'{path}: a mapping of arm name -> inst_criterion block, got {type(table).__name__}; '
                           'fix the file')
    return table


def canonical(arm: str, path: Path | None = None) -> str:
    """The current name of an arm (an arm renamed since a record or spec was written -> its new name)."""
    table = _read(path or CRITERIA_FILE)
    return (table.get(ALIASES) or {}).get(arm, arm)


def family(arm: str) -> str:
    """``assignment-based`` or ``assignment-free`` (its criterion's registry entry), or ``unknown``."""
    block = load_criteria().get(arm)
    entry = registry.entry(str(block.get('type'))) if block else None
    return entry.family if entry else 'unknown'


def second_keys(arm: str, path: Path | None = None) -> dict[str, Any]:
    """The dotted config keys an arm sets besides its criterion (``{}`` for almost every arm)."""
    table = _read(path or CRITERIA_FILE)
    return dict((table.get(SECOND_KEYS) or {}).get(canonical(arm, path), {}) or {})


def arm_keys(arm: str) -> list[str]:
    """Every config key the arm sets: the criterion key, then its second keys."""
    return [ARM_KEY, *second_keys(arm)]


def block(arm: str, overrides: dict[str, Any] | None = None, criteria: dict | None = None) -> dict:
    """The arm's inst_criterion block, with ablation values for keys the block has.

    Args:
        arm: a name in criteria.yaml.
        overrides: criterion key -> value (an ablation point); keys the block
            lacks are ignored (an axis applies to the arms that have the key).
    """
    criteria = criteria or load_criteria()
    if arm not in criteria:
        raise HarnessError(f'arm {arm!r} is not in {CRITERIA_FILE.name}; arms: {sorted(criteria)}')
    out = copy.deepcopy(criteria[arm])
    for key, value in (overrides or {}).items():
        if key in out:
            out[key] = copy.deepcopy(value)
    return out


def with_arm(config: dict, arm: str, overrides: dict[str, Any] | None = None) -> dict:
    """A copy of ``config`` whose ``ARM_KEY`` is the arm's block (the only key an arm sets)."""
    cfg = copy.deepcopy(config)
    set_dotted(cfg, ARM_KEY, block(arm, overrides), where='the run config')
    for key, value in second_keys(arm).items():
        set_dotted(cfg, key, value, where=f'the run config (second key of arm {arm})')
    return cfg


def one_key_diff(baseline: dict, other: dict, expected_block: dict, arm: str | None = None) -> list[str]:
    """The flattened differences between the baseline arm's config and another arm's.

    Args:
        baseline / other: resolved run configs (plain dicts) of the same seed
            and ablation point.
        expected_block: the block ``other`` must carry at ``ARM_KEY``.
        arm: the other arm's name: its second keys may differ too (and must hold its values).

    Returns:
        ``'key: old -> new'`` lines, every key under the arm's keys.

    Raises:
        HarnessError: any difference outside them, or a resolved block that is
            not the arm's (a config merge leaked keys into it).
    """
    extra = second_keys(arm) if arm else {}
    allowed = [ARM_KEY, *extra]
    diff = config_diff(baseline, other)
    stray = [line for line, key in zip(diff, diff_keys(diff)) if not any(under(key, a) for a in allowed)]
    if stray:
        raise HarnessError(f'derived arms differ outside {", ".join(allowed)}: ' + '; '.join(stray[:5]))
    for key, value in extra.items():
        if get_dotted(other, key) != value:
            raise HarnessError(f'{key} is {get_dotted(other, key)!r}, arm {arm} needs {value!r}')
    got = get_dotted(other, ARM_KEY)
    if got != expected_block:
        raise HarnessError(f'resolved {ARM_KEY} {got} is not the arm\'s block {expected_block} '
                           '(a config merge leaked keys; an overlay needs _delete_=True)')
    return diff


def check_baseline_block(resolved_block: dict, source: str) -> None:
    """Upstream's own inst_criterion must be the baseline block we record as published."""
    want = load_criteria()[BASELINE]
    if resolved_block != want:
        raise HarnessError(f'{source}: its {ARM_KEY} differs from {CRITERIA_FILE.name} {BASELINE!r} '
                           f'({resolved_block} vs {want}); wrong upstream commit?')


# Checks of the keys every criterion shares, by name (first match wins); a criterion's own keys are
# checked by its registry entry's ranges (influencerformer.registry), any other key only to exist.
KEY_CHECKS: list[tuple[str, sc.Check]] = [
    ('fix_*', sc.boolean), ('iter_matcher', sc.boolean),
    ('loss_weight', sc.list_of(sc.non_negative, 2, 4)),
    ('*_weight', sc.non_negative),
    ('num_classes', sc.positive_int),
]
# The names a registry entry's ranges may use.
RANGES: dict[str, sc.Check] = {'positive': sc.positive, 'non_negative': sc.non_negative,
                               'positive_int': sc.positive_int, 'fraction': sc.fraction, 'boolean': sc.boolean,
                               'non_negative_list': sc.list_of(sc.non_negative, 1)}


def _rule(entry: registry.Entry, key: str) -> sc.Check | None:
    """The check of one criterion key: the entry's own range, else a shared rule by name."""
    if key in entry.ranges:
        wanted = entry.ranges[key]
        return sc.one_of(*wanted) if isinstance(wanted, tuple) else RANGES[wanted]
    return next((check for pattern, check in KEY_CHECKS if fnmatch.fnmatchcase(key, pattern)), None)


def check_block(where: str, spec_block: dict[str, Any]) -> None:
    """An inst_criterion block against its class's signature and the value ranges above.

    Raises:
        HarnessError: unknown type, unknown or missing keys (did-you-mean), a value out of range.
    """
    name = spec_block.get('type')
    entry = registry.entry(str(name))
    if entry is None:
        known = registry.classes()
        raise HarnessError(f'{where}: criterion type {name!r} unknown{sc.did_you_mean(str(name), known)}; '
                           f'use one of {sorted(known)} (influencerformer/registry.py)')
    params = inspect.signature(entry.load().__init__).parameters
    keys = {k: p for k, p in params.items() if k != 'self'}
    required = {k for k, p in keys.items() if p.default is inspect.Parameter.empty}
    sc.check_keys(where, spec_block, required | {'type'}, set(keys) - required)
    for key, value in spec_block.items():
        rule = _rule(entry, key)
        problem = rule(value) if rule else None
        if problem:
            raise HarnessError(f'{where}.{key}: {value!r} {problem}; fix the value')


def build_criterion(spec_block: dict[str, Any]):
    """Our PyTorch implementation of an inst_criterion block (upstream's InstanceCriterion -> HungarianCriterion).

    Raises:
        HarnessError: unknown type or keys (named).
    """
    kwargs = dict(spec_block)
    name = kwargs.pop('type')
    entry = registry.entry(str(name))
    if entry is None:
        raise HarnessError(f'criterion type {name!r} unknown; use one of {sorted(registry.classes())}')
    try:
        return entry.load()(**kwargs)
    except TypeError as err:
        raise HarnessError(f'criterion {name}: {err}; check its keys in {CRITERIA_FILE.name}') from err
