"""End to end on the native backend: data -> trainings of two arms -> evaluation -> comparison."""
import json

import pandas as pd
import pytest
import yaml

from data_helpers import harness


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('smoke')
    spec = yaml.safe_load(open('baselines/smoke-native.yaml'))
    spec['arms'] = ['hungarian', 'influencer']
    spec['data'].update(root=str(tmp / 'data'), synth={'rooms_per_area': 1, 'points_per_room': 1500, 'seed': 0},
                        num_points=1500)
    spec['config']['train']['iters'] = 4
    path = tmp / 'spec.yaml'
    path.write_text(yaml.safe_dump(spec))
    runs = tmp / 'runs'
    code, out, err = harness('run', '--spec', path, '--runs', runs, '--work-dirs', tmp / 'work')
    assert code == 0, out + err
    return tmp, path, runs


def test_both_arms_finish_with_complete_records(smoke):
    _, _, runs = smoke
    for arm in ('hungarian', 'influencer'):
        folder = runs / f'smoke-native__{arm}__s0'
        record = json.loads((folder / 'run.json').read_text())
        assert record['status'] == 'finished' and record['iterations'] == 4 and record['threads'] == 1
        assert record['config']['sha256'] and record['env']['versions']['spconv']
        metrics = json.loads((folder / 'metrics.json').read_text())
        assert all(0.0 <= metrics[k] <= 1.0 for k in ('ap', 'ap50', 'ap25', 'ap75'))
        curves = pd.read_csv(folder / 'curves.csv')
        assert len(curves) == 4 and {'loss', 'inst_loss', 'sem_loss'} <= set(curves.columns)
    diff = json.loads((runs / 'smoke-native__influencer__s0' / 'run.json').read_text())['config_diff']
    assert diff and all(line.startswith('model.criterion.inst_criterion.') for line in diff)


def test_compare_writes_tables_and_plots(smoke, tmp_path):
    _, _, runs = smoke
    code, out, _ = harness('compare', '--runs', runs, '--out', tmp_path)
    assert code == 0 and '| hungarian | 1 |' in (tmp_path / 'comparison.md').read_text()
    assert all((tmp_path / 'plots' / f'{n}.png').exists() for n in ('ap_bars', 'per_class', 'curves', 'timing'))


def test_same_seed_same_curves(smoke):
    tmp, path, runs = smoke
    code, _, err = harness('run', '--spec', path, '--runs', runs, '--work-dirs', tmp / 'work2', '--arms', 'hungarian',
                           '--force')
    assert code == 0, err
    first = pd.read_csv(runs / 'smoke-native__hungarian__s0' / 'curves.csv')
    second = pd.read_csv(runs / 'smoke-native__hungarian__s0.attempt2' / 'curves.csv')
    for column in ('loss', 'inst_loss', 'sem_loss', 'grad_norm'):
        assert first[column].tolist() == second[column].tolist()



def test_interrupted_run_resumes_from_its_checkpoint(smoke):
    """Training stopped after 2 of 4 iterations (checkpoints written) resumes there, despite
    torch's weights-only default, and finishes the remaining iterations."""
    from mmengine.config import Config

    from harness.study.arms import derive
    from harness.backends.native.train import runner_for, train_and_predict
    from harness.study.spec import load_spec
    tmp, path, _ = smoke
    cfg = Config(derive(load_spec(path), 'hungarian', 0))
    run_dir = tmp / 'resume'
    first = runner_for(cfg, run_dir / 'work_dir')
    first.train_loop._max_iters = 2   # "killed" after iteration 2
    first.train()
    assert (run_dir / 'work_dir' / 'last_checkpoint').exists()
    out = train_and_predict(cfg, run_dir)
    assert out['resumed']
    raw = [line for p in sorted((run_dir / 'work_dir').glob('*/vis_data/scalars.json'))
           for line in p.read_text().splitlines() if '"loss"' in line]
    assert len(raw) == 4  # 2 + 2 iterations trained; a restart from scratch would log 2 + 4
    steps = pd.read_json(out['scalars'], lines=True)['step'].dropna().tolist()
    assert steps == [1, 2, 3, 4]  # one merged curve over both attempts
