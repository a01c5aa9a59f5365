"""Registers every criterion of :mod:`influencerformer.registry` in mmdet3d's MODELS registry.

Named in a config's ``custom_imports = dict(imports=[..., 'influencerformer.mmdet3d_plugin'])``
so that ``model.criterion.inst_criterion = dict(type='InfluencerCriterion', ...)``
builds without touching upstream code. Upstream's own criterion is called
``InstanceCriterion``; ours are registered under their own names, never over
it (an entry's aliases are not registered).
"""
from mmdet3d.registry import MODELS

from .registry import CRITERIA

for _entry in CRITERIA:
    MODELS.register_module(name=_entry.type, module=_entry.load())
