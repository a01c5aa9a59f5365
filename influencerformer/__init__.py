"""InfluencerFormer criteria: pure PyTorch, no mm* imports.

Import ``influencerformer.mmdet3d_plugin`` (e.g. through mmengine's
``custom_imports``) to register the criteria in mmdet3d's MODELS registry.
"""
from .criterion import InfluencerCriterion
from .hungarian import HungarianCriterion, HungarianMatcher
from .loss import MaskInfluencerLoss
from .ops import InstanceGT
from .seeded import SeededInfluencerCriterion
from .transport import TransportCriterion

__all__ = ['InfluencerCriterion', 'HungarianCriterion', 'HungarianMatcher', 'MaskInfluencerLoss',
           'InstanceGT', 'SeededInfluencerCriterion', 'TransportCriterion']
__version__ = '0.1.0'
