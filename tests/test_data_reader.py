"""Prepared-layout reader: memory-mapped, sizes checked, errors name the file."""
import numpy as np
import pytest

from harness.data import list_rooms, read_room
from harness.core.errors import HarnessError

from test_evaluate_cmd import write_room


def test_reads_memmaps_with_the_right_dtypes(tmp_path):
    write_room(tmp_path, 'Area_5_office_1', [1, 1, 2], [1, 1, 2])
    write_room(tmp_path, 'Area_2_office_1', [1], [1])
    assert list_rooms(tmp_path, 5) == ['Area_5_office_1']
    room = read_room(tmp_path, 'Area_5_office_1')
    assert room.points.dtype == np.float32 and room.points.shape == (3, 6)
    assert room.semantic.dtype == np.int64 and room.instance.tolist() == [1, 1, 2]
    assert isinstance(room.points, np.memmap)


def test_truncated_file_is_named(tmp_path):
    write_room(tmp_path, 'Area_5_a', [1, 1], [1, 1])
    path = tmp_path / 'semantic_mask' / 'Area_5_a.bin'
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(HarnessError, match='semantic_mask/Area_5_a.bin: 13 bytes'):
        read_room(tmp_path, 'Area_5_a')


def test_length_mismatch_and_missing_files(tmp_path):
    write_room(tmp_path, 'Area_5_a', [1, 1], [1, 1])
    np.zeros(3, np.int64).tofile(tmp_path / 'instance_mask' / 'Area_5_a.bin')
    with pytest.raises(HarnessError, match='2 points but 2 semantic and 3 instance'):
        read_room(tmp_path, 'Area_5_a')
    with pytest.raises(HarnessError, match='points/Area_5_b.bin: missing'):
        read_room(tmp_path, 'Area_5_b')
    with pytest.raises(HarnessError, match='nowhere/points: missing'):
        list_rooms(tmp_path / 'nowhere', 5)
