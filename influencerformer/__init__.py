"""InfluencerFormer criteria: pure PyTorch, no mm* imports.

Every instance criterion is listed once, in :mod:`influencerformer.registry`;
``from influencerformer import <Criterion>`` resolves through it. Import
``influencerformer.mmdet3d_plugin`` (e.g. through mmengine's
``custom_imports``) to register them in mmdet3d's MODELS registry.
"""
from .hungarian import HungarianMatcher
from .loss import MaskInfluencerLoss
from .ops import InstanceGT
from . import registry

__all__ = ['HungarianMatcher', 'MaskInfluencerLoss', 'InstanceGT', *(e.type for e in registry.CRITERIA)]
__version__ = '0.1.0'


def __getattr__(name: str):
    """A registered criterion class by its type name (imported on first use)."""
    for entry in registry.CRITERIA:
        if entry.type == name:
            return entry.load()
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
