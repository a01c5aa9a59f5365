"""S3DIS-like synthetic rooms: instances as sampled box and wall surfaces (scanner-like, not volumes).

Deterministic for (seed, area, room index). Used by ``synth`` for smoke runs,
CI and tests, so that every code path that reads real S3DIS runs on data of
the same layout and statistics-shaped content.
"""
from __future__ import annotations

import numpy as np

# Base colours per class (0..12), noise added per point.
COLORS = np.array([[200, 200, 200], [120, 100, 80], [220, 215, 200], [150, 150, 160], [170, 170, 175],
                   [120, 170, 220], [140, 90, 50], [160, 110, 70], [60, 60, 70], [110, 40, 40],
                   [130, 90, 60], [240, 240, 240], [90, 130, 90]], dtype=float)
ROOM_TYPES = ('office', 'conferenceRoom', 'hallway', 'storage', 'lounge', 'pantry', 'copyRoom', 'WC')


def _box(lo, hi, bottom: bool = False) -> list[tuple]:
    """Visible faces of an axis-aligned box as (origin, u, v) rectangles."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    d = hi - lo
    ex, ey, ez = np.diag(d)
    faces = [(lo + [0, 0, d[2]], ex, ey), (lo, ex, ez), (lo + [0, d[1], 0], ex, ez),
             (lo, ey, ez), (lo + [d[0], 0, 0], ey, ez)]
    return faces + ([(lo, ex, ey)] if bottom else [])


def _wall_rect(wall: int, start: float, end: float, z0: float, z1: float, W: float, L: float,
               inset: float = 0.0) -> tuple:
    """A vertical rectangle on wall 0..3 (y=0, x=W, y=L, x=0) from start to end along it."""
    if wall == 0:
        return (np.array([start, inset, z0]), np.array([end - start, 0, 0]), np.array([0, 0, z1 - z0]))
    if wall == 1:
        return (np.array([W - inset, start, z0]), np.array([0, end - start, 0]), np.array([0, 0, z1 - z0]))
    if wall == 2:
        return (np.array([start, L - inset, z0]), np.array([end - start, 0, 0]), np.array([0, 0, z1 - z0]))
    return (np.array([inset, start, z0]), np.array([0, end - start, 0]), np.array([0, 0, z1 - z0]))


def _structure(rng, W, L, H) -> list[tuple[str, list]]:
    """Ceiling, floor, walls split into segments, beams, columns, doors, windows, boards."""
    inst = [('ceiling', [(np.array([0, 0, H]), np.array([W, 0, 0]), np.array([0, L, 0]))]),
            ('floor', [(np.zeros(3), np.array([W, 0, 0]), np.array([0, L, 0]))])]
    for wall in range(4):
        length = W if wall % 2 == 0 else L
        cuts = np.sort(rng.uniform(0, length, rng.integers(0, 3)))
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, length]):
            if b - a > 0.3:
                inst.append(('wall', [_wall_rect(wall, a, b, 0, H, W, L)]))
    if rng.random() < 0.3:
        y = rng.uniform(0.5, L - 0.8)
        inst.append(('beam', _box([0, y, H - 0.4], [W, y + 0.3, H])))
    if rng.random() < 0.4:
        inst.append(('column', _box([0.0, 0.0, 0], [0.4, 0.4, H])))
    for cls, count, (z0, z1), (w0, w1) in (('door', rng.integers(1, 3), (0, 2.1), (0.8, 1.0)),
                                          ('window', rng.integers(0, 4), (0.9, 2.2), (1.0, 2.0)),
                                          ('board', rng.integers(0, 2), (0.9, 2.0), (1.5, 3.0))):
        for _ in range(count):
            wall = int(rng.integers(0, 4))
            length = W if wall % 2 == 0 else L
            width = min(rng.uniform(w0, w1), length - 0.2)
            start = rng.uniform(0.1, length - width - 0.05)
            inst.append((cls, [_wall_rect(wall, start, start + width, z0, z1, W, L, inset=0.02)]))
    return inst


def _furniture(rng, W, L) -> list[tuple[str, list]]:
    """Tables (top + legs), chairs (seat + back), sofas, bookcases, clutter."""
    inst = []
    tables = []
    for _ in range(rng.integers(0, 4)):
        w, d = rng.uniform(1.0, 2.0), rng.uniform(0.6, 1.0)
        x, y = rng.uniform(0.5, max(0.6, W - w - 0.5)), rng.uniform(0.5, max(0.6, L - d - 0.5))
        legs = [f for cx, cy in ((x, y), (x + w - 0.05, y), (x, y + d - 0.05), (x + w - 0.05, y + d - 0.05))
                for f in _box([cx, cy, 0], [cx + 0.05, cy + 0.05, 0.72])]
        inst.append(('table', _box([x, y, 0.72], [x + w, y + d, 0.76], bottom=True) + legs))
        tables.append((x, y, w, d))
    for _ in range(rng.integers(0, 9)):
        x, y = rng.uniform(0.3, W - 0.8), rng.uniform(0.3, L - 0.8)
        inst.append(('chair', _box([x, y, 0.42], [x + 0.45, y + 0.45, 0.47], bottom=True)
                     + _box([x, y + 0.42, 0.47], [x + 0.45, y + 0.47, 0.95])))
    if rng.random() < 0.3:
        x, y = rng.uniform(0.2, max(0.3, W - 2.2)), rng.uniform(0.2, max(0.3, L - 1.1))
        inst.append(('sofa', _box([x, y, 0], [x + 2.0, y + 0.9, 0.8])))
    for _ in range(rng.integers(0, 4)):
        x = rng.uniform(0.1, max(0.2, W - 1.0))
        inst.append(('bookcase', _box([x, 0.02, 0], [x + 0.9, 0.37, 2.0])))
    for _ in range(rng.integers(2, 9)):
        s = rng.uniform(0.1, 0.4, 3)
        if tables and rng.random() < 0.6:
            x, y, w, d = tables[rng.integers(len(tables))]
            lo = [x + rng.uniform(0, max(0.01, w - s[0])), y + rng.uniform(0, max(0.01, d - s[1])), 0.76]
        else:
            lo = [rng.uniform(0.1, W - 0.5), rng.uniform(0.1, L - 0.5), 0.0]
        inst.append(('clutter', _box(lo, np.add(lo, s))))
    return inst


def _sample(rng, rects: list[tuple], n: int) -> np.ndarray:
    """n points on rectangles, chosen by area, with ~5 mm scanner noise."""
    areas = np.array([np.linalg.norm(np.cross(u, v)) for _, u, v in rects])
    pick = rng.choice(len(rects), n, p=areas / areas.sum())
    o = np.stack([rects[i][0] for i in pick])
    u = np.stack([rects[i][1] for i in pick])
    v = np.stack([rects[i][2] for i in pick])
    ab = rng.random((n, 2))
    return o + ab[:, :1] * u + ab[:, 1:] * v + rng.normal(0, 0.005, (n, 3))


def synthetic_room(seed: int, area: int, index: int, n_points: int | None = None,
                   points_per_m2: float | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """One room as annotation files: name -> float64 (n, 6) ``x y z r g b`` (raw coordinates).

    Args:
        n_points: the room's points; None: ``points_per_m2`` times its surface, else 5k-50k at random.
        points_per_m2: a scanner's density instead of a fixed count: a room's points grow with its
            surface, and an instance's points with its own surface, as on S3DIS.

    Returns:
        room name (e.g. ``office_3``) and ``{'<class>_<k>': points}``.
    """
    from harness.data.raw import CLASS_TO_LABEL
    rng = np.random.default_rng([seed, area, index])
    W, L, H = rng.uniform(3.5, 9.0), rng.uniform(3.5, 12.0), rng.uniform(2.7, 3.4)
    instances = _structure(rng, W, L, H) + _furniture(rng, W, L)
    areas = np.array([sum(np.linalg.norm(np.cross(u, v)) for _, u, v in r) for _, r in instances])
    if n_points is None and points_per_m2 is not None:
        total = int(round(points_per_m2 * areas.sum()))
    else:   # the draw happens before the sampling either way, so older datasets are unchanged
        total = int(n_points if n_points else rng.integers(5000, 50001))
    counts = np.maximum(30, np.round(total * areas / areas.sum()).astype(int))
    offset = rng.uniform([-20, -20, 0], [40, 40, 2])  # raw S3DIS coordinates are not at 0
    files, per_class = {}, {}
    for (cls, rects), n in zip(instances, counts):
        per_class[cls] = per_class.get(cls, 0) + 1
        xyz = _sample(rng, rects, int(n)) + offset
        rgb = np.clip(COLORS[CLASS_TO_LABEL[cls]] + rng.normal(0, 12, (int(n), 3)), 0, 255).round()
        files[f'{cls}_{per_class[cls]}'] = np.hstack([np.round(xyz, 3), rgb])
    name = f'{ROOM_TYPES[index % len(ROOM_TYPES)]}_{index // len(ROOM_TYPES) + 1}'
    return name, files
