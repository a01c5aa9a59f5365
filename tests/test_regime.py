"""The native matching-free study's synthetic rooms are in S3DIS's regime (docs/influencer-loss.md)."""
import json

import numpy as np
import pytest

from harness import backends
from harness.data.reader import CLASS_NAMES, list_rooms, read_room
from harness.data.regime import regime
from harness.data.synth import generate

SPEC = 'baselines/matching-free-native.yaml'


@pytest.fixture(scope='module')
def study(tmp_path_factory):
    spec, _ = backends.load(SPEC)
    synth = spec.data.synth
    root = tmp_path_factory.mktemp('regime') / 'data'
    generate(root, synth.rooms_per_area, synth.seed, synth.points_per_room)
    return spec, root


def test_queries_outnumber_instances_as_in_oneformer3d(study):
    spec, root = study
    stats = regime(root, [1, 2, 3, 4, 5, 6])
    queries = spec.part.base_config['model']['decoder']['n_inst']
    assert queries >= 100 and 12 <= stats['instances_per_room']['min'] <= stats['instances_per_room']['max'] <= 40
    assert queries >= 3 * stats['instances_per_room']['max']


def test_class_mix_and_sizes_are_s3dis_like(study):
    _, root = study
    stats = regime(root, [1, 2, 3, 4, 5, 6])
    assert list(stats['class_mix'])[:3] == ['wall', 'clutter', 'chair']   # many walls, clutter, chairs
    assert set(stats['class_mix']) == {'ceiling', 'floor', 'wall', 'beam', 'column', 'window', 'door', 'table',
                                       'chair', 'sofa', 'bookcase', 'board', 'clutter'}
    assert stats['planar_point_fraction'] >= 0.6                          # a few huge planes hold most points
    assert stats['size_ratio'] >= 100                                      # sizes span two orders of magnitude


def test_every_point_belongs_to_an_instance(study):
    """S3DIS has no background (clutter is a class): the background terms of a loss are inert."""
    _, root = study
    for name in list_rooms(root, 5):
        assert (np.asarray(read_room(root, name).instance) > 0).all()


def test_the_share_of_instances_ap_counts_is_measured(study):
    """At 20k points per room every clutter instance is under AP's 100 points (docs/influencer-loss.md)."""
    _, root = study
    counted = regime(root, [5])['ap_counted']
    sizes = {}
    for name in list_rooms(root, 5):
        room = read_room(root, name)
        inst, sem = np.asarray(room.instance), np.asarray(room.semantic)
        for i in np.unique(inst):
            sizes.setdefault(int(sem[inst == i][0]), []).append(int((inst == i).sum()))
    for c, n in sizes.items():
        assert counted[CLASS_NAMES[c]] == round(float(np.mean(np.array(n) >= 100)), 3)
    assert counted['ceiling'] == counted['floor'] == 1.0


def test_regime_verb_reports_what_ap_counts_beside_s3dis(tmp_path, capsys):
    from harness.cli import main
    generate(tmp_path / 'data', 1, 0, None, points_per_m2=300)
    out = tmp_path / 'regime.md'
    assert main(['regime', str(tmp_path / 'data'), '--areas', '5', '--out', str(out)]) == 0
    text = out.read_text()
    assert '| rooms | 1 | 272 (Area 5: 68) |' in text and 'most one GT moves the class-mean AP50' in text
    stats = regime(tmp_path / 'data', [5])
    counted = stats['counted']
    assert counted['total'] == sum(v for k, v in counted.items() if k != 'total')
    present = [n for k, n in counted.items() if k != 'total' and n > 0]
    assert stats['max_gt_influence_ap50'] == round(100 / (len(present) * min(present)), 2)
    assert main(['regime', str(tmp_path / 'data'), '--out', str(out)]) == 2   # never overwrites
    capsys.readouterr()
    (tmp_path / 'reports').mkdir()   # a folder: --force cannot help, and the message says so
    assert main(['regime', str(tmp_path / 'data'), '--out', str(tmp_path / 'reports')]) == 2
    assert 'is a folder' in capsys.readouterr().err
    assert main(['regime', str(tmp_path / 'data'), '--out', str(tmp_path / 'r.JSON')]) == 0
    assert json.loads((tmp_path / 'r.JSON').read_text())['counted'] == counted   # JSON, whatever the case


@pytest.fixture
def small(tmp_path):
    """Two rooms per area, 2000 points each: enough for every regime statistic."""
    generate(tmp_path / 'data', 2, 0, 2000)
    return tmp_path / 'data'


def test_an_area_given_twice_is_described_once(small):
    from data_helpers import harness
    assert regime(small, [5, 5]) == regime(small, [5])
    code, out, err = harness('regime', small, '--areas', 5, 5)
    assert code == 0, err
    assert f'| rooms | {len(list_rooms(small, 5))} |' in out and '(areas 5)' in out


def test_an_area_without_rooms_is_a_one_line_error(small):
    from data_helpers import harness
    code, out, err = harness('regime', small, '--areas', 5, 7)
    assert code == 2 and err.strip() == f'error: {small}: no rooms of Area_7 under points/; check --areas'


@pytest.mark.parametrize('label', [-1, len(CLASS_NAMES)])
def test_labels_outside_the_classes_are_refused_naming_the_room(small, label):
    """-1 would count as clutter (CLASS_NAMES[-1]), 13 raise IndexError: verify-data's check refuses both."""
    from data_helpers import harness
    path = small / 'semantic_mask' / f'{list_rooms(small, 5)[0]}.bin'
    sem = np.fromfile(path, np.int64)
    sem[sem == sem[0]] = label   # a whole instance relabelled: only the range is wrong
    sem.tofile(path)
    out = small.parent / 'regime.md'
    code, _, err = harness('regime', small, '--out', out)
    assert code == 2 and len(err.splitlines()) == 1
    assert f'{path}: labels' in err and f'outside 0..{len(CLASS_NAMES) - 1}' in err and not out.exists()


def test_a_room_outside_the_manifest_is_refused_as_run_and_evaluate_refuse_it(small):
    """regime counted a copied room that verify-data, run and evaluate refuse (exit 0, 'rooms': one more)."""
    import shutil
    from data_helpers import harness
    name = list_rooms(small, 5)[0]
    for sub in ('points', 'semantic_mask', 'instance_mask'):
        shutil.copy(small / sub / f'{name}.bin', small / sub / 'Area_5_extra_1.bin')
    code, out, err = harness('regime', small, '--areas', 5)
    assert code == 2 and f'{small / "points" / "Area_5_extra_1.bin"}: on disk but not in' in err
    assert 'Traceback' not in err


def test_a_room_of_the_manifest_missing_on_disk_is_refused(small):
    from data_helpers import harness
    name = list_rooms(small, 5)[-1]
    for sub in ('points', 'semantic_mask', 'instance_mask'):
        (small / sub / f'{name}.bin').unlink()
    code, out, err = harness('regime', small, '--areas', 5)
    assert code == 2 and 'listed in MANIFEST.json but missing' in err
