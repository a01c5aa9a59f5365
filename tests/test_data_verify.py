"""verify-data finds every kind of damage and names the file and the fix; subset stays valid."""
import json
import pickle
import shutil

import numpy as np
import pytest

from harness.data import read_room
from harness.data.layout import load_manifest
from harness.data.verify import entry_problems, quick_check

from data_helpers import harness


@pytest.fixture
def prepared(tmp_path):
    code, _, err = harness('synth', '--out', tmp_path / 'd', '--rooms-per-area', 1, '--points-per-room', 2000)
    assert code == 0, err
    return tmp_path / 'd'


def problems(root):
    code, out, _ = harness('verify-data', root)
    return code, [line for line in out.splitlines() if line.startswith('PROBLEM')]


def test_clean_dataset_passes(prepared):
    assert problems(prepared) == (0, [])


def test_changed_file_fails_the_hash(prepared):
    path = next((prepared / 'points').glob('Area_3_*.bin'))
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    code, found = problems(prepared)
    assert code == 1 and any(f'{path}: sha256 differs' in p and 'rerun prepare-data for Area_3' in p for p in found)


def test_truncated_mask_and_bad_labels(prepared):
    sem = next((prepared / 'semantic_mask').glob('Area_2_*.bin'))
    sem.write_bytes(sem.read_bytes()[:-8])
    other = next((prepared / 'semantic_mask').glob('Area_4_*.bin'))
    labels = np.fromfile(other, np.int64)
    labels[:3] = 13
    labels.tofile(other)
    code, found = problems(prepared)
    text = '\n'.join(found)
    assert code == 1 and 'semantic_mask/' + sem.name in text and 'labels 0..13 outside 0..12' in text


def test_instance_with_two_labels(prepared):
    path = next((prepared / 'semantic_mask').glob('Area_6_*.bin'))
    sem = np.fromfile(path, np.int64)
    sem[0] = (sem[0] + 1) % 13
    sem.tofile(path)
    assert any('several semantic labels' in p for p in problems(prepared)[1])


def test_pkl_and_files_disagree(prepared):
    pkl = prepared / 's3dis_infos_Area_1.pkl'
    info = pickle.loads(pkl.read_bytes())
    info['data_list'][0]['lidar_points']['lidar_path'] = 'Area_1_ghost.bin'
    pkl.write_bytes(pickle.dumps(info, protocol=2))
    found = '\n'.join(problems(prepared)[1])
    assert 'Area_1_ghost.bin: listed in s3dis_infos_Area_1.pkl but missing' in found
    assert 'in no s3dis_infos_Area_N.pkl' in found


def test_subset_is_valid_and_compact(prepared, tmp_path):
    code, _, err = harness('subset', '--src', prepared, '--out', tmp_path / 's', '--rooms-per-area', 1,
                           '--max-points', 500)
    assert code == 0, err
    assert problems(tmp_path / 's') == (0, [])
    room = read_room(tmp_path / 's', next((tmp_path / 's' / 'points').glob('*.bin')).stem)
    assert len(room.points) == 500
    ids = np.unique(room.instance)
    assert ids.tolist() == list(range(1, len(ids) + 1))


def test_subset_says_when_an_area_has_fewer_rooms_than_asked(prepared, tmp_path):
    code, out, err = harness('subset', '--src', prepared, '--out', tmp_path / 's', '--rooms-per-area', 3)
    assert code == 0, err
    assert 'note: Area_5 has 1 room(s), fewer than --rooms-per-area 3: all of them are kept' in out


def edit_manifest(root, edit):
    path = root / 'MANIFEST.json'
    manifest = json.loads(path.read_text())
    name = sorted(manifest['rooms'])[0]
    edit(manifest['rooms'][name])
    path.write_text(json.dumps(manifest))
    return name


@pytest.mark.parametrize('edit', [lambda e: e.update(n_points=e['n_points'] + 1),
                                  lambda e: e.update(n_points=e['n_points'] + 0.5),
                                  lambda e: e.update(n_points=str(e['n_points'])),
                                  lambda e: e.update(area=e['area'] % 6 + 1)],
                         ids=['n_points-off-by-one', 'n_points-float', 'n_points-str', 'other-area'])
def test_manifest_entries_that_disagree_with_the_files_fail_as_run_sees_them(prepared, edit):
    """The hashes still match; what `run` refuses (quick_check), verify-data reports: the same lines."""
    name = edit_manifest(prepared, edit)
    entry = load_manifest(prepared)['rooms'][name]
    room_lines = set(entry_problems(prepared, name, entry))
    assert room_lines and room_lines <= set(quick_check(prepared, [1, 2, 3, 4, 5, 6]))
    code, found = problems(prepared)
    assert code == 1 and room_lines <= {p.removeprefix('PROBLEM ') for p in found}


@pytest.mark.parametrize('damage', [lambda info: info['data_list'][0].pop('lidar_points'),
                                    lambda info: info['data_list'].__setitem__(0, 'Area_1_x.bin'),
                                    lambda info: info['data_list'][0].update(pts_semantic_mask_path=None),
                                    lambda info: info.__setitem__('metainfo', ['s3dis'])],
                         ids=['no-lidar_points', 'entry-a-str', 'mask-path-none', 'metainfo-a-list'])
def test_malformed_info_pkl_is_a_problem_line(prepared, damage):
    pkl = prepared / 's3dis_infos_Area_1.pkl'
    info = pickle.loads(pkl.read_bytes())
    damage(info)
    pkl.write_bytes(pickle.dumps(info, protocol=2))
    code, found = problems(prepared)
    assert code == 1 and any(p.startswith(f'PROBLEM {pkl}: ') and 'rerun prepare-data' in p for p in found)


@pytest.mark.parametrize('stray, subs', [('README', ('points',)),
                                         ('README', ('points', 'semantic_mask', 'instance_mask')),
                                         ('Area_x_office_1', ('points', 'semantic_mask', 'instance_mask'))])
def test_stray_files_are_problem_lines(prepared, stray, subs):
    room = next((prepared / 'points').glob('*.bin')).stem
    for sub in subs:
        shutil.copy(prepared / sub / f'{room}.bin', prepared / sub / f'{stray}.bin')
    code, found = problems(prepared)
    assert code == 1 and any(f'points/{stray}.bin: not a room' in p for p in found)


@pytest.mark.parametrize('args, message', [(['--rooms-per-area', -1], '--rooms-per-area must be >= 1'),
                                           (['--rooms-per-area', 0], '--rooms-per-area must be >= 1'),
                                           (['--max-points', 0], '--max-points must be >= 1')])
def test_subset_refuses_counts_below_one_before_writing(prepared, tmp_path, args, message):
    code, _, err = harness('subset', '--src', prepared, '--out', tmp_path / 's', *args)
    assert code == 2 and err.startswith(f'error: {message}') and len(err.splitlines()) == 1
    assert not (tmp_path / 's').exists()


def test_subset_failing_half_way_leaves_out_as_it_was(prepared, tmp_path):
    """A source room missing in Area_3: nothing at --out (the user's empty folder kept), and the rerun works."""
    out = tmp_path / 'out' / 's'
    out.mkdir(parents=True)
    mask = next((prepared / 'semantic_mask').glob('Area_3_*.bin'))
    mask.rename(tmp_path / 'kept.bin')
    code, _, err = harness('subset', '--src', prepared, '--out', out)
    assert code == 2 and f'{mask}: missing' in err
    assert out.is_dir() and not any(out.iterdir()) and [p.name for p in out.parent.iterdir()] == ['s']
    (tmp_path / 'kept.bin').rename(mask)
    code, _, err = harness('subset', '--src', prepared, '--out', out)
    assert code == 0, err
    assert problems(out) == (0, [])


def test_a_missing_points_file_is_named_and_its_masks_are_not_called_missing(prepared):
    path = next((prepared / 'points').glob('Area_2_*.bin'))
    path.unlink()
    found = '\n'.join(problems(prepared)[1])
    assert f'{path}: listed in s3dis_infos_Area_2.pkl but missing' in found
    assert f'semantic_mask/{path.name}: listed in' not in found and f'instance_mask/{path.name}: listed in' not in found
