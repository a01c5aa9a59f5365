"""Writer of the prepared S3DIS layout: the one code path for prepare-data, synth and subset.

Byte layout and info-pkl structure as mmdet3d (commit 22aaa47) writes them,
documented in docs/data.md: headerless little-endian .bin files and
``s3dis_infos_Area_N.pkl`` (v2 format, pickle protocol 2).
"""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np

from harness.core.errors import HarnessError
from harness.core.io import atomic_write, now

# Semantic ids of the five furniture classes mmdet3d boxes (table..board) -> box label 0..4.
FURNITURE = {7: 0, 8: 1, 9: 2, 10: 3, 11: 4}
INFO_CATEGORIES = {'table': 0, 'chair': 1, 'sofa': 2, 'bookcase': 3, 'board': 4}
SUBDIRS = ('points', 'instance_mask', 'semantic_mask')
JOURNAL = '.prepare'   # per-room records of completed rooms (resume after interruption)
MANIFEST = 'MANIFEST.json'
FORMAT_VERSION = 1


def room_arrays(points: np.ndarray, semantic: np.ndarray, instance: np.ndarray) -> dict[str, bytes]:
    """The three files of a room as bytes: float32 [N,6], int64 [N], int64 [N] (little-endian)."""
    return {'points': np.ascontiguousarray(points, dtype='<f4').tobytes(),
            'instance_mask': np.ascontiguousarray(instance, dtype='<i8').tobytes(),
            'semantic_mask': np.ascontiguousarray(semantic, dtype='<i8').tobytes()}


def write_room(out: Path, name: str, points: np.ndarray, semantic: np.ndarray,
               instance: np.ndarray, area: int, warnings: list[str] = (), source: dict | None = None) -> dict:
    """Write one room's three files atomically, then its journal entry (marks it complete).

    Args:
        source: what the room was made from (prepare-data: ``{'raw': root, 'files': fingerprint}``);
            stored in the entry, and a rerun skips the room only when it is unchanged.

    Returns:
        the room's manifest entry: area, n_points, n_instances, sha256 per file, warnings[, source].
    """
    files = room_arrays(points, semantic, instance)
    entry = {'area': area, 'n_points': int(len(points)),
             'n_instances': int(len(np.unique(instance[instance > 0]))), 'sha256': {},
             'warnings': list(warnings)}
    if source is not None:
        entry['source'] = source
    for sub, data in files.items():
        atomic_write(Path(out) / sub / f'{name}.bin', data, overwrite=True)
        entry['sha256'][sub] = hashlib.sha256(data).hexdigest()
    # Written last: a room without its journal entry is incomplete and gets redone.
    atomic_write(Path(out) / JOURNAL / f'{name}.json', json.dumps(entry) + '\n', overwrite=True)
    return entry


def journal_entry(out: Path, name: str, source: dict | None = None) -> dict | None:
    """The room's completion record if its files still have the recorded sizes (and, when
    ``source`` is given, the record says the room was made from that source)."""
    path = Path(out) / JOURNAL / f'{name}.json'
    if not path.exists():
        return None
    try:
        entry = json.loads(path.read_text())
        entry['n_points']
    except (OSError, ValueError, KeyError, TypeError) as err:   # ValueError: not JSON, or not UTF-8
        print(f'note: {path}: unreadable journal entry ({err}); the room is converted again')
        return None
    if source is not None and entry.get('source') != source:
        return None
    sizes = {'points': 24 * entry['n_points'], 'instance_mask': 8 * entry['n_points'],
             'semantic_mask': 8 * entry['n_points']}
    for sub, size in sizes.items():
        f = Path(out) / sub / f'{name}.bin'
        if not f.exists() or f.stat().st_size != size:
            return None
    return entry


def furniture_boxes(points: np.ndarray, semantic: np.ndarray, instance: np.ndarray) -> list[dict]:
    """Info-pkl ``instances``: axis-aligned boxes of furniture instances, in instance-id order.

    As mmdet3d's S3DISData.get_bboxes + update_infos_to_v2: float32 min/max of
    xyz, centre (min+max)/2 and size max-min in float32, ``bbox_3d`` as a list of
    Python floats, ``bbox_label_3d`` a numpy int64.
    """
    boxes = []
    xyz = np.asarray(points[:, :3], dtype=np.float32)
    for i in range(1, int(instance.max(initial=0)) + 1):
        ids = instance == i
        if not ids.any():
            continue
        label = int(semantic[ids][0])
        if label in FURNITURE:
            pts = xyz[ids]
            low, high = pts.min(axis=0), pts.max(axis=0)
            box = np.concatenate(((low + high) / 2, high - low))
            boxes.append({'bbox_3d': box.tolist(), 'bbox_label_3d': np.int64(FURNITURE[label])})
    return boxes


def info_entry(sample_idx: int, name: str, boxes: list[dict]) -> dict:
    """One ``data_list`` item of the v2 info pkl (key order as mmdet3d leaves it)."""
    return {'sample_idx': sample_idx,
            'lidar_points': {'num_pts_feats': 6, 'lidar_path': f'{name}.bin'},
            'instances': boxes,
            'pts_semantic_mask_path': f'{name}.bin',
            'pts_instance_mask_path': f'{name}.bin'}


def write_infos(out: Path, area: int, entries: list[dict]) -> Path:
    """``s3dis_infos_Area_<area>.pkl`` (pickle protocol 2, as mmengine.dump writes it)."""
    data = {'metainfo': {'categories': dict(INFO_CATEGORIES), 'dataset': 's3dis', 'info_version': '1.1'},
            'data_list': entries}
    return atomic_write(Path(out) / f's3dis_infos_Area_{area}.pkl', pickle.dumps(data, protocol=2),
                        overwrite=True)


# What an mmdet3d v2 S3DIS info pkl may contain besides plain Python types:
# numpy scalars (bbox_label_3d is a numpy int64), the dtypes they carry, and
# _codecs.encode, which pickle protocol 2 uses to rebuild their bytes.
_PICKLE_ALLOWED = {('_codecs', 'encode'), ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'), ('numpy', 'dtype'),
                   ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
                   ('numpy', 'ndarray')}


class _InfoUnpickler(pickle.Unpickler):
    """Refuses every class or function outside the plain types of an info pkl: data never runs code."""

    def find_class(self, module: str, name: str):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refused {module}.{name}: an S3DIS info file holds only plain data')


def read_infos(path: Path) -> dict:
    """An ``s3dis_infos_Area_N.pkl``, read without executing anything it names.

    Raises:
        HarnessError: unreadable, not a pickle, or it names a class or function
            an info file never holds (a crafted file); the message names the file.
    """
    import io
    try:
        info = _InfoUnpickler(io.BytesIO(Path(path).read_bytes())).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise HarnessError(f'{path}: not a plain S3DIS info file ({err}); re-create it with prepare-data '
                           '(never load a pkl from an untrusted source)') from err
    if not isinstance(info, dict) or not isinstance(info.get('data_list'), list):
        raise HarnessError(f'{path}: not a v2 S3DIS info file (no data_list); re-create it with prepare-data')
    return info


def write_manifest(out: Path, rooms: dict[str, dict], source: str, warnings: list[str], tool: str) -> Path:
    """MANIFEST.json: per room counts and hashes, info-pkl hashes, source, tool, warnings."""
    from harness import __version__ as harness_version  # noqa: PLC0415 - avoid an import cycle
    infos = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(Path(out).glob('s3dis_infos_Area_*.pkl'))}
    manifest = {'format': FORMAT_VERSION, 'tool': tool, 'tool_version': harness_version,
                'created_at': now(), 'source': source, 'rooms': dict(sorted(rooms.items())),
                'infos': infos, 'warnings': warnings}
    return atomic_write(Path(out) / MANIFEST, json.dumps(manifest, indent=1) + '\n', overwrite=True)


def load_manifest(out: Path) -> dict | None:
    """MANIFEST.json or None when there is none.

    Raises:
        HarnessError: not JSON, or without its ``rooms`` mapping (names the file and the fix).
    """
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:   # ValueError: not JSON, or not UTF-8
        raise HarnessError(f'{path}: not JSON ({err}); rerun prepare-data (or synth/subset) to rewrite it') from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get('rooms'), dict):
        raise HarnessError(f'{path}: no "rooms" mapping; rerun prepare-data (or synth/subset) to rewrite it')
    for name, entry in manifest['rooms'].items():
        problem = _entry_problem(entry)
        if problem:
            raise HarnessError(f'{path}: rooms.{name}: {problem}; rerun prepare-data (or synth/subset) to rewrite it')
    return manifest


def _entry_problem(entry: object) -> str | None:
    """What is wrong with one room entry of a manifest (None: fine)."""
    if not isinstance(entry, dict):
        return f'{entry!r} is not a mapping {{area, n_points, sha256, ...}}'
    if not isinstance(entry.get('area'), int) or isinstance(entry.get('area'), bool):
        return f'area {entry.get("area")!r} is not an area number'
    sha = entry.get('sha256')
    if not isinstance(sha, dict) or any(not isinstance(sha.get(sub), str) for sub in SUBDIRS):
        return f'sha256 {sha!r} is not a mapping of {list(SUBDIRS)} to hashes'
    return None


def content_sha256(manifest: dict) -> str:
    """The data's identity: a hash of its rooms' names, areas, sizes and file hashes, nothing else.

    The same rooms prepared (or generated) twice, at another time or into another folder, hash
    the same; MANIFEST.json's own bytes (creation time, source path, tool version) do not enter.
    """
    rooms = {name: {'area': e.get('area'), 'n_points': e.get('n_points'),
                    'sha256': {sub: e['sha256'][sub] for sub in SUBDIRS}}
             for name, e in sorted(manifest['rooms'].items())}
    return hashlib.sha256(json.dumps(rooms, sort_keys=True, separators=(',', ':')).encode()).hexdigest()
