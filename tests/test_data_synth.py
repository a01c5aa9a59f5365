"""synth: deterministic S3DIS-like rooms; the prepared variant equals prepare-data of the raw one."""
import numpy as np
import pytest

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


@pytest.mark.parametrize('out, message', [('afile', '{p}: a file, not a folder'),
                                          ('afile/x', '{p}: cannot write there (')])
def test_an_out_in_or_at_a_file_is_named_as_given(tmp_path, out, message):
    """The error named the scratch folder (afile/.x.partial-<pid>/points), a path the user never gave."""
    (tmp_path / 'afile').write_text('mine')
    code, _, err = harness('synth', '--out', tmp_path / out, '--rooms-per-area', 1)
    where = tmp_path / out if out == 'afile' else tmp_path / 'afile'
    assert code == 2 and message.format(p=where) in err and 'partial' not in err
    assert (tmp_path / 'afile').read_text() == 'mine'


def test_a_density_gives_each_surface_its_points_and_areas_their_own_counts(tmp_path):
    """--points-per-m2: a room's and an instance's points grow with their surface; six counts, one per area."""
    name, files = synthetic_room(7, 5, 0, points_per_m2=400)
    small = min(len(v) for k, v in files.items() if k.startswith('clutter'))
    assert small >= 0.1 ** 2 * 400 * 0.5   # a 10 cm clutter box still gets points in proportion
    again = synthetic_room(7, 5, 0, points_per_m2=800)[1]
    assert abs(sum(map(len, again.values())) / sum(map(len, files.values())) - 2) < 0.05
    code, out, err = harness('synth', '--out', tmp_path / 's', '--rooms-per-area', 1, 2, 1, 1, 3, 1,
                             '--points-per-m2', 50)
    assert code == 0, err
    assert [len(list((tmp_path / 's' / 'points').glob(f'Area_{a}_*.bin'))) for a in range(1, 7)] == [1, 2, 1, 1, 3, 1]
    code, _, err = harness('synth', '--out', tmp_path / 't', '--rooms-per-area', 1, 2)
    assert code == 2 and 'give one count > 0 or six' in err


@pytest.mark.parametrize('args, message', [
    (['--points-per-room', 0], '--points-per-room must be >= 1'),     # 0 meant "at random" silently
    (['--points-per-room', -5], '--points-per-room must be >= 1'),
    (['--points-per-m2', 0], '--points-per-m2 must be a finite number > 0'),
    (['--points-per-m2', -1], '--points-per-m2 must be a finite number > 0'),
    (['--points-per-m2', 'nan'], '--points-per-m2 must be a finite number > 0'),
    (['--seed', -1], '--seed must be >= 0'),
    (['--points-per-room', 2000, '--points-per-m2', 50], 'give --points-per-room or --points-per-m2, not both')])
def test_bad_sampling_options_are_refused_before_generating(tmp_path, args, message):
    code, out, err = harness('synth', '--out', tmp_path / 's', '--rooms-per-area', 1, *args)
    assert code == 2 and err.startswith(f'error: {message}') and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []   # neither --out nor its partial sibling
