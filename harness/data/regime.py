"""The regime of a prepared dataset: how many instances a room holds, of which classes, how big.

The numbers that decide how hard set prediction is for a criterion: instances
per room against the model's queries, the class mix (many small clutter and
chairs, a few huge planes) and the spread of instance sizes. Works on real
S3DIS and on synthetic rooms alike (docs/influencer-loss.md compares them).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError
from harness.data.content import room_problems, rooms_vs_manifest
from harness.data.layout import load_manifest
from harness.data.reader import CLASS_NAMES, list_rooms, read_room

PLANAR = ('ceiling', 'floor', 'wall')
# The AP protocol ignores GT instances under 100 points (harness.evaluation.ap.MIN_REGION_SIZE,
# which this layer cannot import): what a class's share of instances means for the metric.
AP_MIN_POINTS = 100


def regime(root: Path, areas: list[int], min_points: int = AP_MIN_POINTS) -> dict:
    """Statistics over every room of ``areas``.

    Returns:
        ``rooms``; ``instances_per_room`` {mean, min, max}; ``class_mix``
        (fraction of instances per class, descending); ``planar_point_fraction``
        (points in ceiling / floor / wall); ``instance_share`` {p5, p50, p95}
        (an instance's fraction of its room's points) and ``size_ratio``
        (largest / smallest instance, in points); ``ap_counted`` (fraction of
        each class's instances with >= ``min_points`` points, those AP counts);
        ``points_per_room`` {mean, min, max}; ``counted`` (instances AP counts, per class and
        ``total``); ``max_gt_influence_ap50``: the most one counted GT can move the class-mean
        AP50, in AP points (100 / (classes with a counted GT x the fewest counted GTs of such a
        class): missing that GT drops its class's AP50 by up to 1 / its count).

    Raises:
        HarnessError: an area without rooms, or a room that verify-data would flag (labels
            outside 0..12, ids, sizes), before any statistic is computed.
    """
    per_room, classes, counted, shares, sizes, planar, points = [], Counter(), Counter(), [], [], [], []
    for name in checked_rooms(root, areas):
        room = read_room(root, name)
        inst, sem = np.asarray(room.instance), np.asarray(room.semantic)
        points.append(len(inst))
        ids, counts = np.unique(inst[inst > 0], return_counts=True)
        per_room.append(len(ids))
        first = {i: sem[inst == i][0] for i in ids}
        classes.update(CLASS_NAMES[first[i]] for i in ids)
        counted.update(CLASS_NAMES[first[i]] for i, n in zip(ids, counts) if n >= min_points)
        shares += list(counts / len(inst))
        sizes += list(counts)
        planar.append(np.isin(sem, [CLASS_NAMES.index(c) for c in PLANAR]).mean())
    total = sum(classes.values())
    return {'rooms': len(per_room),
            'instances_per_room': {'mean': float(np.mean(per_room)), 'min': int(min(per_room)),
                                   'max': int(max(per_room))},
            'class_mix': {c: round(n / total, 3) for c, n in classes.most_common()},
            'planar_point_fraction': float(np.mean(planar)),
            'instance_share': {f'p{q}': float(np.percentile(shares, q)) for q in (5, 50, 95)},
            'size_ratio': float(max(sizes) / min(sizes)),
            'ap_counted': {c: round(counted[c] / n, 3) for c, n in classes.most_common()},
            'points_per_room': {'mean': float(np.mean(points)), 'min': int(min(points)), 'max': int(max(points))},
            'counted': {**{c: counted[c] for c, _ in classes.most_common()}, 'total': sum(counted.values())},
            'max_gt_influence_ap50': _influence(counted)}


def checked_rooms(root: Path, areas: list[int]) -> list[str]:
    """The rooms of ``areas`` (each area once, in the order given), all with valid content.

    Raises:
        HarnessError: an area has no room under ``points/``, a room on disk is not in MANIFEST.json or
            one listed there is missing (where there is one; run and evaluate refuse both), or a room fails
            verify-data's content
            checks (:func:`harness.data.content.room_problems`): a label outside 0..12 would
            otherwise be counted as another class or crash.
    """
    names = []
    for area in dict.fromkeys(areas):   # an area given twice would count its rooms twice
        rooms = list_rooms(root, area)
        if not rooms:
            raise HarnessError(f'{root}: no rooms of Area_{area} under points/; check --areas')
        names += rooms
    manifest = load_manifest(root)   # the data run and evaluate use is the manifest's rooms, all of them
    stray = [] if manifest is None else rooms_vs_manifest(root, manifest, list(dict.fromkeys(areas)), missing=True)
    if stray:
        raise HarnessError(stray[0] + (f' (+{len(stray) - 1} more)' if len(stray) > 1 else ''))
    for name in names:
        problems = room_problems(root, name)
        if problems:
            more = f' (+{len(problems) - 1} more; verify-data {root} lists all)' if len(problems) > 1 else ''
            raise HarnessError(problems[0] + more)
    return names


def _influence(counted: Counter) -> float | None:
    """AP points one counted GT can move the class-mean AP50 by (see :func:`regime`)."""
    present = [n for n in counted.values() if n > 0]
    return round(100 / (len(present) * min(present)), 2) if present else None
