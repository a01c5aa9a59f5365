"""The arms differ in model.criterion.inst_criterion only: derived, checked and recorded in one place."""
import copy

import pytest

from harness import backends
from harness.core.errors import HarnessError
from harness.core.tree import config_diff, flatten
from harness.study.arms import ARM_KEY, BASELINE, block, load_criteria, one_key_diff, with_arm
from harness.study.backend import Prepared
from harness.study.matrix import make_point

SPEC = 'baselines/smoke-native.yaml'


def derive(spec, backend, arm, seed=0, ablation=None):
    return backend.derive(spec, Prepared(), make_point(spec.experiment, arm, seed, ablation), 'data/x')


def test_native_arms_differ_only_in_the_instance_criterion():
    spec, backend = backends.load(SPEC)
    base = derive(spec, backend, BASELINE)
    assert base.diff == []
    for arm in spec.arms[1:]:
        other = derive(spec, backend, arm)
        assert other.diff and all(line.startswith(ARM_KEY + '.') for line in other.diff)
        assert config_diff(base.config, other.config) == other.diff


def test_any_other_difference_fails_naming_the_key():
    spec, backend = backends.load(SPEC)
    base = derive(spec, backend, BASELINE).config
    other = derive(spec, backend, 'influencer').config
    other['model']['decoder']['n_layers'] = 3
    with pytest.raises(HarnessError, match='model.decoder.n_layers'):
        one_key_diff(base, other, block('influencer'))
    with pytest.raises(HarnessError, match='randomness.seed'):
        one_key_diff(base, derive(spec, backend, BASELINE, seed=1).config, block(BASELINE))


def test_a_leaked_key_in_the_block_fails():
    cfg = {'model': {'criterion': {'inst_criterion': None}}}
    base = with_arm(cfg, BASELINE)
    leaked = with_arm(cfg, 'influencer')
    leaked['model']['criterion']['inst_criterion']['matcher'] = {'type': 'HungarianMatcher'}
    with pytest.raises(HarnessError, match='leaked keys'):
        one_key_diff(base, leaked, block('influencer'))


def test_criterion_ablation_values_apply_only_to_keys_the_block_has():
    assert block('influencer', {'temperature': 0.1})['temperature'] == 0.1
    assert 'temperature' not in block(BASELINE, {'temperature': 0.1})
    assert block('influencer') == load_criteria()['influencer']   # the file's block is never modified


def test_ablation_points_keep_the_one_key_claim():
    spec, backend = backends.load(SPEC)
    cfg_point = derive(spec, backend, 'influencer', ablation={'config.model.decoder.n_inst': 8})
    assert cfg_point.config['model']['decoder']['n_inst'] == 8
    assert all(line.startswith(ARM_KEY + '.') for line in cfg_point.diff)
    crit_point = derive(spec, backend, 'influencer', ablation={'criterion.temperature': 0.3})
    assert flatten(crit_point.config)[f'{ARM_KEY}.temperature'] == 0.3


def test_an_unknown_config_axis_key_fails_before_training():
    spec, backend = backends.load(SPEC)
    with pytest.raises(HarnessError, match="'model.decodr.n_inst': no 'decodr'"):
        derive(spec, backend, 'influencer', ablation={'config.model.decodr.n_inst': 8})


def test_derivation_does_not_touch_the_spec():
    spec, backend = backends.load(SPEC)
    before = copy.deepcopy(spec)
    derive(spec, backend, 'influencer', ablation={'config.model.decoder.n_inst': 8, 'criterion.temperature': 2.0})
    assert spec == before


def test_an_arm_pasted_under_a_name_already_there_is_refused_naming_both_lines(tmp_path, monkeypatch):
    """PyYAML keeps the last of two equal keys: the first block of the arm silently vanished."""
    from harness.study import arms
    text = arms.CRITERIA_FILE.read_text()
    path = tmp_path / 'criteria.yaml'
    path.write_text(text + 'influencer:\n  type: InfluencerCriterion\n  temperature: 0.5\n')
    monkeypatch.setattr(arms, 'CRITERIA_FILE', path)
    first = 1 + text.splitlines().index('influencer:')
    last = len(text.splitlines()) + 1
    for read in (arms.load_criteria, lambda: arms.canonical('x'), lambda: arms.second_keys('x')):
        with pytest.raises(HarnessError, match=rf"{path}: unreadable criteria file \(line {last}: key 'influencer' "
                                               rf"given twice \(lines {first} and {last}\); keep one\); fix the file"):
            read()


def test_numbers_in_exponent_form_in_the_criteria_file_are_numbers(tmp_path, monkeypatch):
    from harness.study import arms
    path = tmp_path / 'criteria.yaml'
    path.write_text(arms.CRITERIA_FILE.read_text() + 'influencer-cold:\n  type: InfluencerCriterion\n'
                    '  temperature: 1e-1\n')
    monkeypatch.setattr(arms, 'CRITERIA_FILE', path)
    assert arms.load_criteria()['influencer-cold']['temperature'] == 0.1
