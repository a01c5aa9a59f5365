"""What a run record's and a metrics file's fields must be, so that compare never misreads one.

A record or metrics file that parses but holds a wrong type or an impossible value
(``seed: "zero"``, ``ap50: 57.3``) is named with its key and left out of every table.
"""
from __future__ import annotations

from typing import Any

from harness.core.errors import HarnessError


class RecordError(HarnessError):
    """A run.json that parses but whose fields are wrong: compare lists it, never counts it.

    Attributes:
        record: the parsed record (its ``experiment`` may be usable, or not).
    """

    def __init__(self, message: str, record: dict) -> None:
        super().__init__(message)
        self.record = record


def _is_int(x: Any, low: int = 0) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= low


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float('inf')


def _ablation_problem(ablation: Any) -> str | None:
    if not isinstance(ablation, dict):
        return 'is not a mapping of criterion.<key> / config.<key> to values'
    bad = [k for k in ablation if not isinstance(k, str) or k.split('.', 1)[0] not in ('criterion', 'config')
           or '.' not in k]
    return f'has key {bad[0]!r}, not criterion.<key> or config.<dotted key>' if bad else None


# What compare, plan and the runner read from a record, and what each must be (None: the field is fine).
FIELD_CHECKS = {
    'run_id': lambda x: None if isinstance(x, str) and x else 'is not a run id',
    'attempt': lambda x: None if _is_int(x, 1) else 'is not an attempt number >= 1',
    'experiment': lambda x: None if isinstance(x, str) and x else 'is not an experiment name',
    'arm': lambda x: None if isinstance(x, str) and x else 'is not an arm name',
    'seed': lambda x: None if _is_int(x) else 'is not an integer seed >= 0',
    'backend': lambda x: None if isinstance(x, str) and x else 'is not a backend name',
    'ablation': _ablation_problem,
    'iterations_done': lambda x: None if x is None or _is_int(x) else 'is not an iteration count',
    'wall_s': lambda x: None if x is None or _is_number(x) and x >= 0 else 'is not a number of seconds',
    'timing': lambda x: None if x is None or isinstance(x, dict) else 'is not a mapping',
    'env': lambda x: None if x is None or isinstance(x, dict) else 'is not a mapping',
    'data': lambda x: None if x is None or isinstance(x, dict) else 'is not a mapping',
    'config': lambda x: None if isinstance(x, dict) else 'is not a mapping {path, sha256}',
    'location_keys': lambda x: None if isinstance(x, list) and all(isinstance(k, str) for k in x)
    else 'is not a list of config keys',
    'arm_keys': lambda x: None if x is None or isinstance(x, list) and all(isinstance(k, str) for k in x)
    else 'is not a list of config keys',
    'sessions': lambda x: None if isinstance(x, list) and all(isinstance(v, dict) for v in x)
    else 'is not a list of sessions',
}


def field_problems(record: dict) -> list[tuple[str, str]]:
    """(key, what is wrong) for each field of a record that compare or the runner would misread."""
    return [(key, problem) for key, check in FIELD_CHECKS.items()
            if key in record and (problem := check(record[key]))]


def _fraction_problem(x: Any) -> str | None:
    """AP values are fractions (0.573, not 57.3) or null (a class without GT)."""
    if x is None:
        return None
    if not _is_number(x):
        return f'{x!r} is not a number'
    # the evaluator's sums can land a rounding step past 1 (1.0000000000000002): not an error
    return None if -1e-9 <= x <= 1 + 1e-9 else f'{x!r} is outside [0, 1] (AP is a fraction here, not a percentage)'


def metric_problems(metrics: dict) -> list[tuple[str, str]]:
    """(key, what is wrong) for each value of a metrics.json the tables would misread."""
    out = [(k, p) for k in ('ap', 'ap50', 'ap25', 'ap75', 'ap50_instance_weighted')
           if k in metrics and (p := _fraction_problem(metrics[k]))]
    per_class = metrics['per_class']
    if not isinstance(per_class, dict) or not per_class:
        return out + [('per_class', f'{per_class!r} is not a mapping of class -> {{ap, ap50, ap25, ap75}}')]
    for name, values in per_class.items():
        if not isinstance(values, dict) or any(k not in values for k in ('ap', 'ap50', 'ap25', 'ap75')):
            out.append((f'per_class.{name}', f'{values!r} is not a mapping {{ap, ap50, ap25, ap75}}'))
            continue
        out += [(f'per_class.{name}.{k}', p) for k, v in values.items() if (p := _fraction_problem(v))]
    return out
