"""Names that must exist for ``import oneformer3d`` but are never used on the S3DIS path."""
from __future__ import annotations


class StandInError(AttributeError):
    """A MinkowskiEngine feature the stand-in does not implement.

    An AttributeError so that ``hasattr``/``getattr(..., default)`` probes
    behave as they would for any missing name.
    """


def unavailable(qualname: str) -> StandInError:
    """The error for any MinkowskiEngine feature outside the S3DIS path."""
    return StandInError(f'{qualname} is not available in the stand-in (it covers the S3DIS path '
                        'only); build the image with --build-arg MINKOWSKI=real')


def module_getattr(module: str):
    """A module ``__getattr__``: dunder probes see AttributeError, anything else the clear error."""
    def __getattr__(name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        raise unavailable(f'{module}.{name}')
    return __getattr__


def placeholder(name: str) -> type:
    """A class that can be named, subclassed and isinstance-checked, never built."""
    def __init__(self, *args, **kwargs):
        raise unavailable(f'MinkowskiEngine.{name}')
    return type(name, (), {'__init__': __init__, '__doc__': f'Placeholder for MinkowskiEngine.{name}.'})
