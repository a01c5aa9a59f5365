"""The one registry of instance criteria: every place that needs "which criteria exist" reads it.

The harness's arm checks and derivations, the mmdet3d plugin, the toy study
and the criterion benchmark read :data:`CRITERIA`. Adding a criterion is its
module, one :class:`Entry` here, and its block in ``baselines/criteria.yaml``
(docs/extending.md walks through it). Classes are imported only when asked
for, so reading the registry costs nothing. Pure Python; no mm* imports.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

__all__ = ['Entry', 'CRITERIA', 'FAMILIES', 'entry', 'resolve', 'classes']

#: assignment-based: a (possibly relaxed) assignment of GTs to queries decides what each query is trained on;
#: assignment-free: no assignment anywhere (the research question is about this family).
FAMILIES = ('assignment-based', 'assignment-free')


@dataclass(frozen=True)
class Entry:
    """One criterion.

    Attributes:
        type: the name a config's ``type:`` uses (and the mmdet3d registry name).
        target: ``'module:Class'`` of the implementation, relative to this package.
        family: one of :data:`FAMILIES`.
        arm: its reference arm in ``baselines/criteria.yaml`` (the toy study's and the benchmark's default).
        ranges: criterion key -> range check of the harness's schema (``'positive'``, ``'non_negative'``,
            ``'positive_int'``, ``'fraction'``, ``'boolean'``, ``'non_negative_list'``) or a tuple of allowed values. Keys every
            criterion shares (``*_weight``, ``loss_weight``, ``num_classes``, ``iter_matcher``) are checked
            by the harness without being listed.
        aliases: other ``type:`` names that build this class where the named class is not ours
            (upstream's ``InstanceCriterion`` on the native backend) or an earlier name of it (records
            written before a rename); never registered in mmdet3d.
    """

    type: str
    target: str
    family: str
    arm: str
    ranges: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    def load(self) -> type:
        """The implementation class (imported on first use)."""
        module, name = self.target.split(':')
        return getattr(importlib.import_module(module, __package__), name)


CRITERIA: tuple[Entry, ...] = (
    Entry('HungarianCriterion', '.hungarian:HungarianCriterion', 'assignment-based', 'hungarian',
          aliases=('InstanceCriterion',)),
    Entry('TransportCriterion', '.transport:TransportCriterion', 'assignment-based', 'entropic-ot',
          ranges={'temperature': 'positive', 'sinkhorn_iters': 'positive_int', 'min_mass': 'fraction'}),
    Entry('InfluencerCriterion', '.criterion:InfluencerCriterion', 'assignment-free', 'influencer',
          ranges={'temperature': 'positive', 'rep_margin': 'non_negative', 'mask_norm': ('sigmoid', 'softmax')}),
    Entry('AnchoredInfluencerCriterion', '.anchored:AnchoredInfluencerCriterion', 'assignment-free',
          'influencer-anchored', ranges={'rep_margin': 'non_negative', 'rep_norm': ('pairs', 'instance')},
          aliases=('SeededInfluencerCriterion',)),
    Entry('InfluencerNetCriterion', '.influencer_net:InfluencerNetCriterion', 'assignment-free', 'influencer-net',
          ranges={'follower_margin': 'positive', 'influencer_margin': 'positive', 'neg_ratio': 'non_negative',
                  'knn': 'positive_int'}),
    Entry('PowerSoftMinCriterion', '.pm3:PowerSoftMinCriterion', 'assignment-free', 'pm3',
          ranges={'temperature': 'positive', 'power': 'positive', 'root': 'boolean',
                  'cost_weight': 'non_negative_list'}),
)


def entry(type_name: str) -> Entry | None:
    """The entry a config's ``type:`` names (its own name or an alias); None when unknown."""
    return next((e for e in CRITERIA if type_name == e.type or type_name in e.aliases), None)


def resolve(type_name: str) -> type:
    """The class a config's ``type:`` names.

    Raises:
        KeyError: no criterion is registered under that name.
    """
    found = entry(type_name)
    if found is None:
        raise KeyError(type_name)
    return found.load()


def classes() -> dict[str, type]:
    """Every name a config may use (types and aliases) -> class."""
    return {name: e.load() for e in CRITERIA for name in (e.type, *e.aliases)}
