"""argparse types for command-line counts: a bad value is argparse's one usage line and exit 2."""
from __future__ import annotations

import argparse
from typing import Callable


def at_least(minimum: int, why: str = '') -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum`` (``why``, when given, follows the message).

    Example: ``parser.add_argument('--repeats', type=at_least(1))`` turns ``--repeats 0`` into
    ``argument --repeats: must be an integer >= 1 (got 0)`` before any work starts.
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'must be an integer >= {minimum} (got {text!r})') from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f'must be an integer >= {minimum} (got {value}){why}')
        return value
    parse.__name__ = f'integer >= {minimum}'   # what argparse names in its own messages
    return parse
