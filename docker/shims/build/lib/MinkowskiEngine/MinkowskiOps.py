"""``MinkowskiEngine.MinkowskiOps``: imported by mink_unet.py, used only by ScanNet models."""
from __future__ import annotations

from ._placeholders import StandInError


def __getattr__(name: str):
    if name.startswith('__'):
        raise AttributeError(name)
    raise StandInError(f'MinkowskiEngine.MinkowskiOps.{name} is not available in the stand-in '
                       '(it covers the S3DIS path only); build the image with '
                       '--build-arg MINKOWSKI=real')
