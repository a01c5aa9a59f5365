"""Names that must exist for ``import oneformer3d`` but are never used on the S3DIS path."""
from __future__ import annotations


class StandInError(AttributeError):
    """A MinkowskiEngine feature the stand-in does not implement.

    An AttributeError so that ``hasattr``/``getattr(..., default)`` probes
    behave as they would for any missing name.
    """


def placeholder(name: str) -> type:
    """A class that can be named, subclassed and isinstance-checked, never built."""
    def __init__(self, *args, **kwargs):
        raise StandInError(f'MinkowskiEngine.{name} is not available in the stand-in (it covers '
                           'the S3DIS path only); build the image with --build-arg MINKOWSKI=real')
    return type(name, (), {'__init__': __init__, '__doc__': f'Placeholder for MinkowskiEngine.{name}.'})
