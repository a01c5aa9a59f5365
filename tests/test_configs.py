"""Derived arm configs differ exactly in model.criterion.inst_criterion; specs are validated."""
import copy

import pytest
import yaml

from harness.study.arms import assert_only_criterion_differs, config_diff, derive, flatten
from harness.core.errors import HarnessError
from harness.study.spec import load_spec, run_matrix

SPEC = 'baselines/smoke-native.yaml'


def test_arms_differ_only_in_the_instance_criterion():
    spec = load_spec(SPEC)
    base = derive(spec, 'hungarian', 0)
    for arm in spec['arms'][1:]:
        diff = assert_only_criterion_differs(base, derive(spec, arm, 0))
        assert diff and all(line.startswith('model.criterion.inst_criterion.') for line in diff)
    assert assert_only_criterion_differs(base, derive(spec, 'hungarian', 0)) == []


def test_any_other_difference_fails():
    spec = load_spec(SPEC)
    other = derive(spec, 'influencer', 0)
    other['model']['decoder']['n_layers'] = 3
    with pytest.raises(HarnessError, match='model.decoder.n_layers'):
        assert_only_criterion_differs(derive(spec, 'hungarian', 0), other)
    with pytest.raises(HarnessError, match='randomness.seed'):
        assert_only_criterion_differs(derive(spec, 'hungarian', 0), derive(spec, 'hungarian', 1))


def test_flatten_and_diff():
    assert flatten({'a': {'b': 1}, 'c': [2, {'d': 3}]}) == {'a.b': 1, 'c.0': 2, 'c.1.d': 3}
    assert config_diff({'a': 1}, {'a': 1, 'b': 2}) == ["b: '<absent>' -> 2"]


@pytest.mark.parametrize('change, message', [
    (lambda s: s.update(epochs=3), 'unknown keys'),
    (lambda s: s.update(arms=['hungarian', 'influencer-typo']), 'not in baselines/criteria.yaml'),
    (lambda s: s.update(arms=['influencer']), 'must include hungarian'),
])
def test_bad_specs_are_clear_errors(tmp_path, change, message):
    spec = yaml.safe_load(open(SPEC))
    change(spec)
    path = tmp_path / 'spec.yaml'
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(HarnessError, match=message):
        load_spec(path)


def test_run_matrix_is_seed_major():
    spec = copy.deepcopy(load_spec(SPEC))
    spec['seeds'] = [0, 1]
    assert run_matrix(spec, ['hungarian', 'influencer'])[:2] == [('hungarian', 0), ('influencer', 0)]
