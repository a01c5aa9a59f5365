"""``MinkowskiEngine.MinkowskiOps``: imported by mink_unet.py, used only by ScanNet models."""
from ._placeholders import module_getattr

__getattr__ = module_getattr('MinkowskiEngine.MinkowskiOps')
