"""synth: deterministic S3DIS-like rooms; the prepared variant equals prepare-data of the raw one."""
import numpy as np

from harness.data import layout, read_room
from harness.data.scenes import synthetic_room

from data_helpers import harness, synth_raw


def test_deterministic_for_a_seed():
    a, b = synthetic_room(3, 5, 0), synthetic_room(3, 5, 0)
    assert a[0] == b[0] and all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
    assert not np.array_equal(a[1]['floor_1'], synthetic_room(4, 5, 0)[1]['floor_1'])


def test_rooms_look_like_s3dis():
    name, files = synthetic_room(0, 1, 0, n_points=20000)
    classes = {k.split('_')[0] for k in files}
    assert {'ceiling', 'floor', 'wall', 'door'} <= classes
    pts = np.concatenate(list(files.values()))
    assert abs(len(pts) - 20000) < 2000 and pts.shape[1] == 6
    assert ((pts[:, 3:] >= 0) & (pts[:, 3:] <= 255)).all() and np.array_equal(pts[:, 3:], pts[:, 3:].round())


def test_prepared_synth_equals_prepare_of_raw_synth(tmp_path):
    """Same writer code: identical rooms (up to annotation file order) and both verify."""
    synth_raw(tmp_path / 'raw', points=2000)
    assert harness('prepare-data', '--raw', tmp_path / 'raw', '--out', tmp_path / 'a')[0] == 0
    code, _, err = harness('synth', '--out', tmp_path / 'b', '--rooms-per-area', 1, '--points-per-room', 2000)
    assert code == 0, err
    for root in ('a', 'b'):
        assert harness('verify-data', tmp_path / root)[0] == 0
    names = sorted(layout.load_manifest(tmp_path / 'a')['rooms'])
    assert names == sorted(layout.load_manifest(tmp_path / 'b')['rooms'])
    for name in names:
        ra, rb = read_room(tmp_path / 'a', name), read_room(tmp_path / 'b', name)
        rows = [np.column_stack([r.points, r.semantic, r.instance]) for r in (ra, rb)]
        assert np.array_equal(*(r[np.lexsort(r.T[::-1])] for r in rows))


def test_never_writes_into_a_non_empty_folder(tmp_path):
    (tmp_path / 'x').mkdir()
    (tmp_path / 'x' / 'mine.txt').write_text('keep')
    code, _, err = harness('synth', '--out', tmp_path / 'x')
    assert code == 2 and 'not empty' in err and (tmp_path / 'x' / 'mine.txt').read_text() == 'keep'
