"""End to end on the native backend: data -> trainings -> evaluation -> comparison, and the runner's rules."""
import json

import pandas as pd
import pytest
import yaml

from data_helpers import harness


def tiny_spec(tmp, name: str = 'spec.yaml', **change):
    spec = yaml.safe_load(open('baselines/smoke-native.yaml'))
    spec['arms'] = ['hungarian', 'influencer']
    spec['data'].update(root=str(tmp / 'data'), synth={'rooms_per_area': 1, 'points_per_room': 1500, 'seed': 0},
                        num_points=1500)
    spec['config']['train']['iters'] = 4
    for key, value in change.items():
        spec['config']['train'][key] = value
    path = tmp / name
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('smoke')
    path = tiny_spec(tmp)
    runs = tmp / 'runs'
    code, out, err = harness('run', '--spec', path, '--runs', runs, '--work-dirs', tmp / 'work')
    assert code == 0, out + err
    return tmp, path, runs


def test_both_arms_finish_with_complete_records(smoke):
    _, _, runs = smoke
    for arm in ('hungarian', 'influencer'):
        folder = runs / f'smoke-native__{arm}__s0'
        record = json.loads((folder / 'run.json').read_text())
        assert record['status'] == 'finished' and record['iterations_done'] == 4 and record['threads'] == 1
        assert record['config']['sha256'] and record['env']['versions']['spconv'] and record['data']['manifest_sha256']
        assert record['timing']['iters_trained'] == 4 and record['timing']['s_per_iter'] > 0
        metrics = json.loads((folder / 'metrics.json').read_text())
        assert all(0.0 <= metrics[k] <= 1.0 for k in ('ap', 'ap50', 'ap25', 'ap75'))
        curves = pd.read_csv(folder / 'curves.csv')
        train, val = curves[curves['phase'] == 'train'], curves[curves['phase'] == 'val']
        assert len(train) == 4 and {'loss', 'inst_loss', 'sem_loss', 'criterion_ms'} <= set(curves.columns)
        assert len(val) >= 1 and val['all_ap_50%'].notna().all()   # validation AP logged during training
    diff = json.loads((runs / 'smoke-native__influencer__s0' / 'run.json').read_text())['config_diff']
    assert diff and all(line.startswith('model.criterion.inst_criterion.') for line in diff)


def test_tensorboard_logs_are_written(smoke):
    tmp, _, _ = smoke
    assert list((tmp / 'work').glob('smoke-native__hungarian__s0/work_dir/*/vis_data/events.out.tfevents.*'))


def test_compare_writes_tables_and_plots(smoke, tmp_path):
    _, _, runs = smoke
    code, out, _ = harness('compare', '--runs', runs, '--out', tmp_path)
    assert code == 0 and '| hungarian | assignment-based | 1' in (tmp_path / 'comparison.md').read_text()
    assert all((tmp_path / 'plots' / f'{n}.png').exists() for n in ('ap_bars', 'per_class', 'curves', 'timing'))


def test_diagnose_reads_every_counted_run_from_its_checkpoint(smoke, tmp_path):
    tmp, _, runs = smoke
    code, out, err = harness('diagnose', '--runs', runs, '--data', tmp / 'data', '--out', tmp_path)
    assert code == 0, out + err
    table = pd.read_csv(tmp_path / 'diagnosis.csv')
    assert sorted(table['arm']) == ['hungarian', 'influencer'] and (table['gts'] > 0).all()
    assert (table['source'] == 'checkpoint').all()
    assert table['oracle_recall50'].between(0, 1).all() and '| hungarian |' in (tmp_path / 'diagnosis.md').read_text()


def test_each_record_keeps_the_diagnosis_its_checkpoint_gives(smoke, tmp_path):
    """A study across machines loses its work dirs: the diagnosis travels in metrics.json, and equals
    what the checkpoint gives afterwards."""
    tmp, _, runs = smoke
    kept = json.loads((runs / 'smoke-native__influencer__s0' / 'metrics.json').read_text())['diagnosis']
    assert kept['gts'] > 0 and 0 <= kept['oracle_recall50'] <= 1 and kept['gts_anchored'] is None
    assert harness('diagnose', '--runs', runs, '--out', tmp_path / 'record')[0] == 0
    assert harness('diagnose', '--runs', runs, '--data', tmp / 'data', '--out', tmp_path / 'ckpt')[0] == 0
    record, ckpt = (pd.read_csv(tmp_path / d / 'diagnosis.csv') for d in ('record', 'ckpt'))
    assert (record['source'] == 'record').all() and (ckpt['source'] == 'checkpoint').all()
    columns = ['gts', 'oracle_recall50', 'mean_best_iou', 'duplicates', 'no_object_queries', 'active_queries']
    pd.testing.assert_frame_equal(record[columns], ckpt[columns])


def test_a_malformed_kept_diagnosis_is_one_line_naming_the_file(smoke, tmp_path):
    import shutil
    _, _, runs = smoke
    copy = tmp_path / 'runs'
    shutil.copytree(runs, copy)
    path = copy / 'smoke-native__hungarian__s0' / 'metrics.json'
    metrics = json.loads(path.read_text())
    metrics['diagnosis']['oracle_recall50'] = 'high'
    path.write_text(json.dumps(metrics))
    code, out, err = harness('diagnose', '--runs', copy, '--out', tmp_path / 'out')
    assert code == 2 and f'{path}: diagnosis.oracle_recall50' in err and 'pass --data' in err
    assert 'Traceback' not in err


def test_diagnose_on_other_data_is_refused_before_any_checkpoint_is_loaded(smoke, tmp_path):
    """Each record's AP would sit beside figures measured on other rooms, with exit 0."""
    _, _, runs = smoke
    other = tmp_path / 'other'
    assert harness('synth', '--out', other, '--rooms-per-area', '1', '--points-per-room', '1500',
                   '--seed', '7')[0] == 0
    code, out, err = harness('diagnose', '--runs', runs, '--data', other, '--out', tmp_path / 'out')
    assert code == 2 and f'not the data in {other}: trained on other data' in err and 'Traceback' not in err
    assert not (tmp_path / 'out' / 'diagnosis.csv').exists()


def test_diagnose_on_data_without_the_test_area_is_one_line(smoke, tmp_path):
    import shutil
    tmp, _, runs = smoke
    data = tmp_path / 'data'
    shutil.copytree(tmp / 'data', data)
    manifest = json.loads((data / 'MANIFEST.json').read_text())
    manifest['rooms'] = {n: e for n, e in manifest['rooms'].items() if e['area'] != 5}
    (data / 'MANIFEST.json').write_text(json.dumps(manifest))
    for path in data.glob('*/Area_5_*.bin'):
        path.unlink()
    code, out, err = harness('diagnose', '--runs', runs, '--data', data, '--out', tmp_path / 'out')
    assert code == 2 and f'{data}: no rooms of Area_5' in err and 'Traceback' not in err


def test_a_torn_checkpoint_is_named_with_the_fix(smoke, tmp_path):
    from harness.backends.native.diagnose import load_model
    from harness.core.errors import HarnessError
    from harness.study.records import read_config
    _, _, runs = smoke
    folder = runs / 'smoke-native__hungarian__s0'
    record = json.loads((folder / 'run.json').read_text())
    torn = tmp_path / 'work' / 'iter_4.pth'
    torn.parent.mkdir()
    torn.write_bytes(open(record['checkpoint']['path'], 'rb').read()[:1000])   # a full disk cut it short
    record.update(work_dir=str(tmp_path / 'work'), checkpoint={'path': str(torn)})
    with pytest.raises(HarnessError, match=f'{torn}: not a readable checkpoint .*restore it from a copy'):
        load_model(record, read_config(folder))


def test_diagnose_on_data_without_a_manifest_says_so(smoke, tmp_path):
    """It said 'trained on other data (..., now None)', though the rooms may be the same."""
    import shutil
    tmp, _, runs = smoke
    shutil.copytree(tmp / 'data', tmp_path / 'data')
    (tmp_path / 'data' / 'MANIFEST.json').unlink()
    code, out, err = harness('diagnose', '--runs', runs, '--data', tmp_path / 'data', '--out', tmp_path / 'out')
    assert code == 2 and f'{tmp_path / "data"} has no MANIFEST.json, so it cannot be matched' in err


def test_weights_that_do_not_fit_the_model_name_the_run_s_commit(smoke):
    """A checkpoint of other model code is not torn: the fix is the commit that trained it."""
    from harness.backends.native.diagnose import load_model
    from harness.core.errors import HarnessError
    from harness.study.records import read_config
    _, _, runs = smoke
    folder = runs / 'smoke-native__hungarian__s0'
    record, config = json.loads((folder / 'run.json').read_text()), read_config(folder)
    config['model']['decoder']['n_inst'] += 1   # another model than the one trained
    sha = record['env']['harness_git']['sha'][:12]
    with pytest.raises(HarnessError, match=f"weights do not fit this code's model .*git worktree add <dir> {sha}"):
        load_model(record, config)


def test_a_finished_run_is_not_redone(smoke):
    tmp, path, runs = smoke
    code, out, err = harness('run', '--spec', path, '--runs', runs, '--work-dirs', tmp / 'work')
    assert code == 0 and '"smoke-native__hungarian__s0": "done (already finished)"' in out


def test_a_changed_spec_is_refused_before_anything_trains(smoke):
    tmp, _, runs = smoke
    changed = tiny_spec(tmp, 'changed.yaml', lr=0.005, iters=5)
    before = {p: p.stat().st_mtime_ns for p in runs.rglob('*') if p.is_file()}
    code, out, err = harness('run', '--spec', changed, '--runs', runs, '--work-dirs', tmp / 'work')
    assert code == 2 and 'refused:' in err and 'train.iters, train.lr' in err and 'nothing was trained' in err
    assert {p: p.stat().st_mtime_ns for p in runs.rglob('*') if p.is_file()} == before


def test_same_seed_same_curves(smoke):
    tmp, path, runs = smoke
    code, _, err = harness('run', '--spec', path, '--runs', runs, '--work-dirs', tmp / 'work2', '--arms', 'hungarian',
                           '--force')
    assert code == 0, err
    first = pd.read_csv(runs / 'smoke-native__hungarian__s0' / 'curves.csv')
    second = pd.read_csv(runs / 'smoke-native__hungarian__s0.attempt2' / 'curves.csv')
    for column in ('loss', 'inst_loss', 'sem_loss', 'grad_norm', 'all_ap_50%'):
        assert first[column].fillna(-1).tolist() == second[column].fillna(-1).tolist()


def test_data_typo_is_an_error_not_new_data(smoke, tmp_path):
    tmp, path, runs = smoke
    code, _, err = harness('run', '--spec', path, '--runs', tmp_path / 'runs', '--data', tmp_path / 'dta')
    assert code == 2 and 'no prepared dataset there' in err and not (tmp_path / 'dta').exists()


def test_metrics_written_but_record_open_is_completed_not_retrained(smoke):
    tmp, path, runs = smoke
    folder = runs / 'smoke-native__influencer__s0'
    record = json.loads((folder / 'run.json').read_text())
    (folder / 'run.json').write_text(json.dumps({**record, 'status': 'running'}))   # killed before closing
    code, out, err = harness('run', '--spec', path, '--runs', runs, '--work-dirs', tmp / 'work')
    assert code == 0, err
    assert '[2/2] smoke-native__influencer__s0: complete' in out
    done = json.loads((folder / 'run.json').read_text())
    assert done['status'] == 'finished' and done['timing'] == record['timing']


def test_interrupted_run_resumes_from_its_checkpoint(smoke):
    """Training stopped after 2 of 4 iterations (checkpoints written) resumes there, despite
    torch's weights-only default, and finishes the remaining iterations."""
    from mmengine.config import Config

    from harness import backends
    from harness.backends.native.train import runner_for, train
    from harness.study.backend import Prepared
    from harness.study.matrix import make_point
    tmp, path, _ = smoke
    spec, backend = backends.load(path)
    cfg = Config(backend.derive(spec, Prepared(), make_point('smoke-native', 'hungarian', 0), tmp / 'data').config)
    work = tmp / 'resume' / 'work_dir'
    first = runner_for(cfg, work)
    first.train_loop._max_iters = 2   # "killed" after iteration 2
    first.train()
    assert (work / 'last_checkpoint').exists()
    out = train(cfg, work)
    assert out.iterations == 4 and out.iters_this_session == 2
    raw = [line for p in sorted(work.glob('*/vis_data/scalars.json'))
           for line in p.read_text().splitlines() if '"loss"' in line]
    assert len(raw) == 4  # 2 + 2 iterations trained; a restart from scratch would log 2 + 4
    steps = pd.read_json(out.scalars, lines=True).query('loss == loss')['step'].tolist()
    assert steps == [1, 2, 3, 4]  # one merged curve over both attempts


def test_a_partial_run_is_never_resumed_into_a_changed_config(smoke, tmp_path):
    tmp, path, _ = smoke
    runs = tmp_path / 'runs'
    import shutil
    shutil.copytree(smoke[2] / 'smoke-native__hungarian__s0', runs / 'smoke-native__hungarian__s0')
    folder = runs / 'smoke-native__hungarian__s0'
    record = json.loads((folder / 'run.json').read_text())
    (folder / 'run.json').write_text(json.dumps({**record, 'status': 'running'}))
    (folder / 'metrics.json').unlink()   # interrupted mid-training
    changed = tiny_spec(tmp, 'wider.yaml')
    spec = yaml.safe_load(changed.read_text())
    spec['config']['model']['decoder']['n_inst'] = 24
    changed.write_text(yaml.safe_dump(spec))
    code, _, err = harness('run', '--spec', changed, '--runs', runs, '--work-dirs', tmp / 'work', '--arms', 'hungarian')
    assert code == 2 and 'model.decoder.n_inst' in err
    assert json.loads((folder / 'run.json').read_text())['status'] == 'running'   # untouched
