"""The committed specs: each loads, and a follow-up differs from its study only where it says."""
import pytest
import yaml

from harness import backends
from harness.core.paths import BASELINES

NOT_SPECS = {'criteria.yaml', 'published.yaml'}


@pytest.mark.parametrize('path', sorted(p for p in BASELINES.glob('*.yaml') if p.name not in NOT_SPECS),
                         ids=lambda p: p.name)
def test_every_committed_spec_loads(path):
    spec, _ = backends.load(path)
    assert spec.experiment == path.stem


def test_the_fair_tests_follow_up_differs_only_in_arms_and_schedule():
    fair = yaml.safe_load((BASELINES / 'assignment-free-native.yaml').read_text())
    longer = yaml.safe_load((BASELINES / 'assignment-free-native-9600.yaml').read_text())
    assert longer['config']['train'] == {**fair['config']['train'], 'iters': 9600, 'val_interval': 3200}
    assert set(longer['arms']) == set(fair['arms']) - {'entropic-ot'} and longer['arms'][0] == 'hungarian'
    for key in ('experiment', 'description', 'arms'):
        longer.pop(key), fair.pop(key)
    longer['config'].pop('train'), fair['config'].pop('train')
    assert longer == fair
