"""prepare-data: raw S3DIS -> mmdet3d's prepared layout; defects, resume, read-only raw."""
import hashlib
import os
import pickle
import shutil

import numpy as np
import pytest

from harness.data import layout, read_room
from harness.data.raw import list_raw_rooms

from data_helpers import harness, synth_raw
from upstream_ref import mmdet3d_converters


def tree_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('prep')
    raw = synth_raw(tmp / 'raw', rooms=2)
    before = tree_digest(raw)
    for p in raw.rglob('*'):
        p.chmod(0o555 if p.is_dir() else 0o444)   # read-only raw tree (as users have it)
    code, out, err = harness('prepare-data', '--raw', raw, '--out', tmp / 'out', '--workers', 2)
    assert code == 0, err
    return raw, tmp / 'out', out, before


def test_round_trip_verifies_and_raw_is_untouched(prepared):
    raw, out, _, before = prepared
    assert tree_digest(raw) == before
    code, stdout, _ = harness('verify-data', out)
    assert code == 0, stdout
    manifest = layout.load_manifest(out)
    assert len(manifest['rooms']) == 12 and manifest['warnings'] == [] and manifest['source'] == str(raw.resolve())


def test_info_pkl_structure_key_by_key(prepared):
    raw, out, _, _ = prepared
    blob = (out / 's3dis_infos_Area_1.pkl').read_bytes()
    assert blob[:2] == b'\x80\x02'  # pickle protocol 2
    info = pickle.loads(blob)
    assert info['metainfo'] == {'categories': {'table': 0, 'chair': 1, 'sofa': 2, 'bookcase': 3, 'board': 4},
                                'dataset': 's3dis', 'info_version': '1.1'}
    rooms = [d for d in os.listdir(raw / 'Area_1')]  # mmdet3d's order: os.listdir
    for i, (entry, room) in enumerate(zip(info['data_list'], rooms)):
        name = f'Area_1_{room}.bin'
        assert list(entry) == ['sample_idx', 'lidar_points', 'instances', 'pts_semantic_mask_path',
                               'pts_instance_mask_path']
        assert entry['sample_idx'] == i and entry['lidar_points'] == {'num_pts_feats': 6, 'lidar_path': name}
        assert entry['pts_semantic_mask_path'] == entry['pts_instance_mask_path'] == name
        data = read_room(out, name[:-4])
        furniture = [k for k in np.unique(data.instance) if 7 <= data.semantic[data.instance == k][0] <= 11]
        assert len(entry['instances']) == len(furniture)
        for box in entry['instances']:
            assert list(box) == ['bbox_3d', 'bbox_label_3d']
            assert type(box['bbox_label_3d']) is np.int64 and 0 <= box['bbox_label_3d'] <= 4
            assert len(box['bbox_3d']) == 6 and all(type(v) is float for v in box['bbox_3d'])


def test_points_are_shifted_float32_and_ids_follow_sorted_names(prepared):
    raw, out, _, _ = prepared
    room = sorted(os.listdir(raw / 'Area_2'))[0]
    data = read_room(out, f'Area_2_{room}')
    assert np.allclose(data.points[:, :3].min(axis=0), 0)
    files = sorted(os.listdir(raw / 'Area_2' / room / 'Annotations'))
    for k, f in enumerate(files, 1):  # instance k = k-th file by name
        n = sum(1 for _ in open(raw / 'Area_2' / room / 'Annotations' / f))
        assert (data.instance == k).sum() == n


def test_rerun_skips_and_force_reconverts(prepared):
    _, out, _, _ = prepared
    code, stdout, _ = harness('prepare-data', '--raw', prepared[0], '--out', out)
    assert code == 0 and '"converted": 0, "skipped": 12' in stdout
    code, stdout, _ = harness('prepare-data', '--raw', prepared[0], '--out', out, '--areas', '3', '--force')
    assert code == 0 and '"converted": 2' in stdout


def test_defects_are_repaired_or_dropped_and_reported(tmp_path):
    raw = synth_raw(tmp_path / 'raw', defects=True)
    code, stdout, err = harness('prepare-data', '--raw', raw, '--out', tmp_path / 'out')
    assert code == 0, err
    warnings = layout.load_manifest(tmp_path / 'out')['warnings']
    text = '\n'.join(warnings)
    assert 'ceiling_1.txt:3: repaired: replaced stray character(s) U+0010 with a space' in text
    assert "wall_1.txt:2: dropped: expected 6 numbers, got non-numeric ['abc']" in text
    assert 'wall_1.txt:4: dropped: expected 6 numbers, got 5 numbers' in text
    assert "unknown class name(s) ['stairs'] mapped to clutter" in text
    assert 'clutter_99.txt: empty annotation file, skipped' in text
    assert f'{len(warnings)} warning(s):' in stdout
    assert harness('verify-data', tmp_path / 'out')[0] == 0
    room = sorted(os.listdir(raw / 'Area_5'))[0]
    lines = sum(1 for _ in open(raw / 'Area_5' / room / 'Annotations' / 'ceiling_1.txt'))
    data = read_room(tmp_path / 'out', f'Area_5_{room}')
    assert (data.semantic == 0).sum() == lines  # the repaired line is kept


def test_room_without_annotations_is_an_error_naming_it(tmp_path):
    raw = synth_raw(tmp_path / 'raw')
    room = sorted((raw / 'Area_4').iterdir())[0]
    (room / 'Annotations').rename(room / 'Annotations_gone')
    code, _, err = harness('prepare-data', '--raw', raw, '--out', tmp_path / 'out')
    assert code == 2 and f'{room}: no Annotations/ folder' in err


def test_out_inside_raw_is_refused(tmp_path):
    raw = synth_raw(tmp_path / 'raw')
    code, _, err = harness('prepare-data', '--raw', raw, '--out', raw / 'prepared')
    assert code == 2 and 'inside the raw tree' in err


def test_interrupted_run_then_rerun_is_complete(tmp_path, monkeypatch):
    raw = synth_raw(tmp_path / 'raw', rooms=2)
    real, calls = layout.atomic_write, {'n': 0}

    def dies_mid_room(path, data, overwrite=False):
        calls['n'] += 1
        if calls['n'] == 10:  # 4 writes per room: 3rd room, after its points file
            raise KeyboardInterrupt('killed')
        return real(path, data, overwrite)

    monkeypatch.setattr(layout, 'atomic_write', dies_mid_room)
    code, stdout, stderr = harness('prepare-data', '--raw', raw, '--out', tmp_path / 'out', '--workers', 1)
    assert code == 130 and 'interrupted (Ctrl-C)' in stderr and 'Traceback' not in stderr   # one line, exit 130
    assert '"status": "interrupted"' in stdout
    monkeypatch.setattr(layout, 'atomic_write', real)
    out = tmp_path / 'out'
    crashed = f'Area_2_{list_raw_rooms(raw, 2)[0]}'  # 3rd room submitted
    journal = {p.stem for p in (out / layout.JOURNAL).glob('*.json')}
    assert not list(out.rglob('*.tmp')) and not (out / 'MANIFEST.json').exists()
    assert (out / 'points' / f'{crashed}.bin').exists() and crashed not in journal
    assert 2 <= len(journal) < 12
    code, stdout, _ = harness('prepare-data', '--raw', raw, '--out', out)
    assert code == 0 and f'"converted": {12 - len(journal)}, "skipped": {len(journal)}' in stdout
    assert harness('verify-data', out)[0] == 0


def test_equals_mmdet3d_converters(tmp_path):
    """Same raw input: points and semantic masks byte-identical, instances equal up to
    renumbering, info pkls equal in keys, types and values (boxes as a multiset)."""
    from harness.bench.data import run_mmdet3d
    root = mmdet3d_converters()
    raw = synth_raw(tmp_path / 'raw', rooms=2, points=4000)
    assert harness('prepare-data', '--raw', raw, '--out', tmp_path / 'ours')[0] == 0
    run_mmdet3d(root, raw, tmp_path / 'mm', workers=1)
    ours, mm = tmp_path / 'ours', tmp_path / 'mm'
    for path in sorted((mm / 'points').glob('*.bin')):
        name = path.name
        assert (ours / 'points' / name).read_bytes() == path.read_bytes()
        assert (ours / 'semantic_mask' / name).read_bytes() == (mm / 'semantic_mask' / name).read_bytes()
        a = np.fromfile(ours / 'instance_mask' / name, np.int64)
        b = np.fromfile(mm / 'instance_mask' / name, np.int64)
        pairs = set(zip(a.tolist(), b.tolist()))
        assert len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))  # a bijection
    for area in range(1, 7):
        o = pickle.loads((ours / f's3dis_infos_Area_{area}.pkl').read_bytes())
        m = pickle.loads((mm / 'v2' / f's3dis_infos_Area_{area}.pkl').read_bytes())
        assert o['metainfo'] == m['metainfo'] and len(o['data_list']) == len(m['data_list'])
        for eo, em in zip(o['data_list'], m['data_list']):
            assert list(eo) == list(em)
            for key in eo:
                if key != 'instances':
                    assert eo[key] == em[key] and type(eo[key]) is type(em[key])

            def boxes(entry):
                return sorted((int(b['bbox_label_3d']), tuple(b['bbox_3d']), type(b['bbox_label_3d']).__name__)
                              for b in entry['instances'])
            assert boxes(eo) == boxes(em)


def _manifest_rooms(out):
    return layout.load_manifest(out)['rooms']


def test_preparing_more_areas_merges_the_manifest(tmp_path):
    """Area by area into one folder: every prepared room stays listed; an area done again replaces only its own."""
    raw, out = synth_raw(tmp_path / 'raw'), tmp_path / 'out'
    every = {f'Area_{a}_{r}' for a in range(1, 7) for r in list_raw_rooms(raw, a)}
    assert harness('prepare-data', '--raw', raw, '--out', out, '--areas', 1, 2)[0] == 0
    code, _, err = harness('prepare-data', '--raw', raw, '--out', out, '--areas', 3, 4, 5, 6)
    assert code == 0, err
    assert set(_manifest_rooms(out)) == every
    assert harness('verify-data', out)[0] == 0
    before = _manifest_rooms(out)
    code, stdout, _ = harness('prepare-data', '--raw', raw, '--out', out, '--areas', 5, '--force')
    area5 = {n for n, e in before.items() if e['area'] == 5}
    assert code == 0 and f'"converted": {len(area5)}' in stdout
    after = _manifest_rooms(out)
    assert set(after) == every
    assert {n: e for n, e in after.items() if n not in area5} == {n: e for n, e in before.items() if n not in area5}
    assert harness('verify-data', out)[0] == 0


def test_out_prepared_from_another_raw_is_refused_unless_force(tmp_path):
    raw, out = synth_raw(tmp_path / 'raw'), tmp_path / 'out'
    other = tmp_path / 'other'
    shutil.copytree(raw, other)
    assert harness('prepare-data', '--raw', raw, '--out', out)[0] == 0
    before = tree_digest(out)
    code, _, err = harness('prepare-data', '--raw', other, '--out', out)
    assert code == 2 and f'was prepared from {raw.resolve()}' in err and '--force' in err
    assert tree_digest(out) == before   # refused before anything is written
    code, stdout, _ = harness('prepare-data', '--raw', other, '--out', out, '--force')
    assert code == 0 and f'"converted": {len(_manifest_rooms(out))}, "skipped": 0' in stdout
    assert layout.load_manifest(out)['source'] == str(other.resolve())


def test_an_edited_or_renamed_raw_room_is_converted_again(tmp_path):
    raw, out = synth_raw(tmp_path / 'raw'), tmp_path / 'out'
    assert harness('prepare-data', '--raw', raw, '--out', out)[0] == 0
    total = len(_manifest_rooms(out))
    room = list_raw_rooms(raw, 3)[0]
    name, anno = f'Area_3_{room}', raw / 'Area_3' / room / 'Annotations'
    first = sorted(anno.glob('*.txt'))[0]
    n_before = read_room(out, name).points.shape[0]
    with open(first, 'a') as f:   # one more point
        f.write(open(first).readline())
    code, stdout, _ = harness('prepare-data', '--raw', raw, '--out', out)
    assert code == 0 and f'"converted": 1, "skipped": {total - 1}' in stdout
    assert read_room(out, name).points.shape[0] == n_before + 1
    # a relabelled instance (same bytes, another class name): its points get the new label
    lines = sum(1 for _ in open(first))
    clutter = (np.asarray(read_room(out, name).semantic) == 12).sum()
    assert not first.name.startswith('clutter')
    first.rename(anno / 'clutter_999.txt')
    code, stdout, _ = harness('prepare-data', '--raw', raw, '--out', out)
    assert code == 0 and f'"converted": 1, "skipped": {total - 1}' in stdout
    assert (np.asarray(read_room(out, name).semantic) == 12).sum() == clutter + lines


def test_colours_outside_0_255_are_dropped_naming_file_and_line(tmp_path):
    raw = synth_raw(tmp_path / 'raw')
    room = list_raw_rooms(raw, 2)[0]
    path = sorted((raw / 'Area_2' / room / 'Annotations').glob('*.txt'))[0]
    with open(path, 'a') as f:
        f.write('1.0 2.0 1.0 300 -5 10\n')
    line = sum(1 for _ in open(path))
    code, _, err = harness('prepare-data', '--raw', raw, '--out', tmp_path / 'out')
    assert code == 0, err
    warnings = layout.load_manifest(tmp_path / 'out')['warnings']
    assert f"{path}:{line}: dropped: colour(s) -5..300 outside 0..255: '1.0 2.0 1.0 300 -5 10'" in warnings
    assert (read_room(tmp_path / 'out', f'Area_2_{room}').semantic.shape[0]
            == sum(1 for _ in open(path)) - 1 + sum(1 for f in path.parent.glob('*.txt') if f != path
                                                    for _ in open(f)))
    assert harness('verify-data', tmp_path / 'out')[0] == 0


def test_an_out_with_files_prepare_data_did_not_write_is_refused_unless_force(tmp_path):
    """An mmdet3d-prepared S3DIS has the same folder and file names: rooms of the same name would overwrite it."""
    raw, out = synth_raw(tmp_path / 'raw'), tmp_path / 'out'
    (out / 'points').mkdir(parents=True)
    (out / 'points' / 'Area_1_office_1.bin').write_bytes(b'theirs')
    (out / 's3dis_infos_Area_1.pkl').write_bytes(b'theirs')
    before = tree_digest(out)
    code, _, err = harness('prepare-data', '--raw', raw, '--out', out)
    assert code == 2 and f'--out {out.resolve()} holds files prepare-data did not write' in err and '--force' in err
    assert tree_digest(out) == before and not (out / layout.JOURNAL).exists()   # refused before any write
    assert harness('prepare-data', '--raw', raw / 'Area_1', '--out', tmp_path / 'new')[0] == 2   # a wrong --raw
    assert not (tmp_path / 'new').exists()   # leaves no journal that would later pass for prepare-data's
    code, _, err = harness('prepare-data', '--raw', raw, '--out', out, '--force')
    assert code == 0, err
    assert harness('verify-data', out)[0] == 0


def test_an_interrupted_first_run_resumes_and_rooms_gone_from_raw_are_named_not_deleted(tmp_path, monkeypatch):
    raw, out = synth_raw(tmp_path / 'raw'), tmp_path / 'out'
    real = layout.atomic_write

    def dies_at_the_first_write(path, data, overwrite=False):
        real(path, data, overwrite)
        raise KeyboardInterrupt('killed')   # the first room's points file written, no journal entry yet

    monkeypatch.setattr(layout, 'atomic_write', dies_at_the_first_write)
    code, _, _ = harness('prepare-data', '--raw', raw, '--out', out, '--areas', 1, '--workers', 1)
    assert code == 130 and not (out / layout.MANIFEST).exists() and list((out / 'points').glob('*.bin'))
    assert not list((out / layout.JOURNAL).glob('*.json'))
    monkeypatch.setattr(layout, 'atomic_write', real)
    code, _, err = harness('prepare-data', '--raw', raw, '--out', out, '--areas', 1, '--workers', 1)
    assert code == 0, err   # an interrupted first run is ours, not a foreign folder
    gone = list_raw_rooms(raw, 1)[0]
    shutil.rmtree(raw / 'Area_1' / gone)
    code, stdout, err = harness('prepare-data', '--raw', raw, '--out', out, '--areas', 1)
    assert code == 0, err
    assert f'Area_1_{gone}' in stdout and 'no longer in the raw tree' in stdout
    assert f'Area_1_{gone}' not in _manifest_rooms(out) and not (out / 'points' / f'Area_1_{gone}.bin').exists()
    aside = sorted((out / 'removed-rooms').glob(f'*/*/Area_1_{gone}.bin'))   # kept, out of the readers' way
    assert [p.parent.name for p in aside] == ['instance_mask', 'points', 'semantic_mask']
    assert str(aside[0].parents[1]) in stdout
    code, _, err = harness('verify-data', out)
    assert code == 0, err   # run and evaluate apply the same checks
