"""The one way the harness reads YAML files (specs, baselines/criteria.yaml, published.yaml).

Safe (no tags that run code) and strict: a key given twice or a key that is
not text is an error naming the line. PyYAML keeps the last of two equal keys
without a word, so ``seeds:`` twice silently ran the second list, and an arm
pasted into criteria.yaml under a name already there silently replaced the
first block.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import HarnessError


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses duplicate keys and keys that are not names."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == 'tag:yaml.org,2002:merge':   # `<<: *anchor`: merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, f'key {key!r} is not a name (keys are text; quote it if it is meant as one)',
                    key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'key {key!r} given twice (lines {seen[key]} and {line}); keep one',
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads ``2e-3`` and ``1e5`` as text: a float needs a dot there (``2.0e-3``). Our
# files are written the way papers and Python write numbers, so the exponent form without a dot is a
# float too (YAML 1.2's rule); every other implicit type is PyYAML's.
StrictLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float', re.compile(r'^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$'), list('-+0123456789'))


def read_yaml(path: Path, what: str, fix: str = 'fix it') -> Any:
    """The document in ``path`` (None for an empty file), read with :class:`StrictLoader`.

    Args:
        path: the file.
        what: what the file is, for the message (``experiment spec``, ``criteria file``).
        fix: the message's last words: what the user does about it.

    Raises:
        HarnessError: ``<path>: unreadable <what> (line N: <problem>); <fix>`` for a missing or
            undecodable file, a YAML error, a duplicate key or a key that is not a name.
    """
    try:
        return yaml.load(Path(path).read_text(), Loader=StrictLoader)   # noqa: S506 - a SafeLoader subclass
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise HarnessError(f'{path}: unreadable {what} ({one_line(err)}); {fix}') from err


def one_line(err: Exception) -> str:
    """A YAML error on one line (PyYAML's span several, with a caret drawing)."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        return f'line {err.problem_mark.line + 1}: {err.problem}'
    return ' '.join(str(err).split())
