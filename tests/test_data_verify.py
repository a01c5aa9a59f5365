"""verify-data finds every kind of damage and names the file and the fix; subset stays valid."""
import pickle

import numpy as np
import pytest

from harness.data import read_room

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
