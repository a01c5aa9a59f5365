"""Specs and the run matrix: arms x seeds x ablation points; bad specs are errors naming file and key."""
import dataclasses

import pytest
import yaml

from harness import backends
from harness.core.errors import HarnessError
from harness.study.matrix import Selection, run_matrix

SPEC = 'baselines/smoke-native.yaml'


def write(tmp_path, change):
    spec = yaml.safe_load(open(SPEC))
    change(spec)
    path = tmp_path / 'spec.yaml'
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize('change, message', [
    (lambda s: s.update(epochs=3), "unknown key 'epochs'"),
    (lambda s: s.update(seeeds=[0]), "unknown key 'seeeds' (did you mean 'seeds'?)"),
    (lambda s: s.update(arms=['hungarian', 'influencer-typo']), "not in baselines/criteria.yaml (did you mean"),
    (lambda s: s.update(arms=['influencer']), 'must include hungarian'),
    (lambda s: s.update(experiment='../../x'), 'not a safe folder name'),
    (lambda s: s.update(experiment='a/b'), 'not a safe folder name'),
    (lambda s: s.update(seeds=[0, 'x']), 'seeds must be a list of distinct non-negative integers'),
    (lambda s: s.update(seeds=[0, 0]), 'seeds must be a list of distinct'),
    (lambda s: s['data'].update(test_aera=5), "data: unknown key 'test_aera' (did you mean 'test_area'?)"),
    (lambda s: s.update(ablations={'axes': {'t': {'criterion': 'temprature', 'values': [1]}}}),
     "no non-baseline arm of the spec has criterion key 'temprature' (did you mean 'temperature'?)"),
    (lambda s: s.update(ablations={'axes': {'t': {'criterion': 'temperature'}}}), "missing key(s) ['values']"),
    (lambda s: s.update(ablations={'mode': 'all', 'axes': {'t': {'criterion': 'temperature', 'values': [1]}}}),
     "ablations.mode 'all'"),
    (lambda s: s.update(ablations={'mode': 'grid', 'axes': {'t1': {'criterion': 'temperature', 'values': [0.05]},
                                                            't2': {'criterion': 'temperature', 'values': [0.2]}}}),
     'ablations.axes.t2: sets criterion.temperature as axis t1 does'),
])
def test_bad_specs_are_clear_errors(tmp_path, change, message):
    path = write(tmp_path, change)
    with pytest.raises(HarnessError) as err:
        backends.load(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_main_runs_are_seed_major():
    spec, _ = backends.load(SPEC)
    spec = dataclasses.replace(spec, seeds=(0, 1))
    runs = run_matrix(spec, Selection(arms=['hungarian', 'influencer']))
    assert [(r.arm, r.seed) for r in runs] == [('hungarian', 0), ('influencer', 0), ('hungarian', 1), ('influencer', 1)]
    with pytest.raises(HarnessError, match='not in the spec'):
        run_matrix(spec, Selection(arms=['influencer-excl']))


def test_one_at_a_time_ablations(tmp_path):
    spec, _ = backends.load(write(tmp_path, lambda s: s.update(seeds=[0], ablations={'axes': {
        'temperature': {'criterion': 'temperature', 'values': [0.1, 1.0]},
        'queries': {'config': 'model.decoder.n_inst', 'values': [8, 16]}}})))
    runs = run_matrix(spec)
    got = {(r.arm, tuple(sorted(r.ablation_dict.items()))) for r in runs}
    arms = list(spec.arms)
    # main runs; temperature 1.0 is influencer's default (its main run), entropic-ot's is 0.05
    # (both values are ablations of it); the baseline has no temperature: never ablated on it;
    # n_inst 16 is the spec's default
    assert arms == ['hungarian', 'influencer', 'entropic-ot']
    expected = {(a, ()) for a in arms}
    expected |= {('influencer', (('criterion.temperature', 0.1),)),
                 ('entropic-ot', (('criterion.temperature', 0.1),)),
                 ('entropic-ot', (('criterion.temperature', 1.0),))}
    expected |= {(a, (('config.model.decoder.n_inst', 8),)) for a in arms}
    assert got == expected and len(runs) == len(expected)
    assert len({r.run_id for r in runs}) == len(runs)


def test_grid_ablations_cover_every_combination(tmp_path):
    spec, _ = backends.load(write(tmp_path, lambda s: s.update(seeds=[0], arms=['hungarian', 'influencer'], ablations={
        'mode': 'grid', 'axes': {'t': {'criterion': 'temperature', 'values': [0.5, 2.0]},
                                 'q': {'config': 'model.decoder.n_inst', 'values': [8, 16]}}})))
    runs = run_matrix(spec)
    influencer = {tuple(sorted(r.ablation_dict.items())) for r in runs if r.arm == 'influencer'}
    assert influencer == {(), (('config.model.decoder.n_inst', 8), ('criterion.temperature', 0.5)),
                          (('config.model.decoder.n_inst', 8), ('criterion.temperature', 2.0)),
                          (('criterion.temperature', 0.5),), (('criterion.temperature', 2.0),)}
    hungarian = {tuple(sorted(r.ablation_dict.items())) for r in runs if r.arm == 'hungarian'}
    assert hungarian == {(), (('config.model.decoder.n_inst', 8),)}   # the reference at each model point
    point = next(r for r in runs if r.arm == 'influencer' and len(r.ablation_dict) == 2)
    assert point.baseline().ablation_dict == {'config.model.decoder.n_inst': 8}


def test_numbers_in_exponent_form_are_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads 2e-3 as text; a spec reads it as the number everyone means."""
    path = write(tmp_path, lambda s: None)
    path.write_text(path.read_text().replace('lr: 0.001', 'lr: 1e-3'))
    assert 'lr: 1e-3' in path.read_text()
    spec, _ = backends.load(path)
    assert spec.part.base_config['train']['lr'] == 0.001
