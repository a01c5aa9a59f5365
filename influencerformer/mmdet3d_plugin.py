"""Registers the criteria in mmdet3d's MODELS registry.

Named in a config's ``custom_imports = dict(imports=[..., 'influencerformer.mmdet3d_plugin'])``
so that ``model.criterion.inst_criterion = dict(type='InfluencerCriterion', ...)``
builds without touching upstream code. Upstream's own criterion is called
``InstanceCriterion``; ours are registered under their own names, never over it.
"""
from mmdet3d.registry import MODELS

from .criterion import InfluencerCriterion
from .hungarian import HungarianCriterion
from .seeded import SeededInfluencerCriterion
from .transport import TransportCriterion

REGISTERED = ('InfluencerCriterion', 'HungarianCriterion', 'TransportCriterion', 'SeededInfluencerCriterion')

for _cls in (InfluencerCriterion, HungarianCriterion, TransportCriterion, SeededInfluencerCriterion):
    MODELS.register_module(name=_cls.__name__, module=_cls)
