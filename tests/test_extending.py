"""docs/extending.md's worked examples, run as written: an arm, a criterion, an ablation axis, a backend.

The code blocks are read from the page (each starts with a comment naming
what it is), so the guide cannot drift from what works.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

import influencerformer
from harness import backends
from harness.cli import main
from harness.core.paths import REPO
from harness.study import arms, records
from harness.study.backend import Prepared
from influencerformer import registry
from oracle_backend import OracleBackend

GUIDE = REPO / 'docs' / 'extending.md'


def blocks() -> dict[str, str]:
    """Fenced code blocks of the guide by their first line (a comment: '# file: x', '# arm: y', ...)."""
    found = re.findall(r'```(?:python|yaml)\n(# [^\n]+)\n(.*?)```', GUIDE.read_text(), re.S)
    return {head[2:].strip(): body for head, body in found}


def with_criteria(tmp_path: Path, monkeypatch, *names: str) -> None:
    """A copy of baselines/criteria.yaml with the guide's blocks of these arms appended, used by every check."""
    text = (arms.CRITERIA_FILE).read_text() + ''.join('\n' + blocks()[f'arm: {n}'] for n in names)
    path = tmp_path / 'criteria.yaml'
    path.write_text(text)
    monkeypatch.setattr(arms, 'CRITERIA_FILE', path)


def tiny_spec(tmp_path: Path, arms_: list[str], **extra) -> Path:
    spec = yaml.safe_load((REPO / 'baselines' / 'smoke-native.yaml').read_text())
    spec.update(experiment='guide', arms=arms_, seeds=[0], **extra)
    spec['data'].update(root=str(tmp_path / 'data'), synth={'rooms_per_area': 1, 'points_per_room': 1500, 'seed': 0},
                        num_points=1500)
    spec['config']['train'].update(iters=2, val_interval=2)
    path = tmp_path / 'spec.yaml'
    path.write_text(yaml.safe_dump(spec))
    return path


def test_add_an_arm(tmp_path, monkeypatch):
    with_criteria(tmp_path, monkeypatch, 'ot-cold')
    spec, backend = backends.load(tiny_spec(tmp_path, ['hungarian', 'ot-cold']))
    assert spec.arms == ('hungarian', 'ot-cold')
    assert main(['plan', '--spec', str(spec.path), '--runs', str(tmp_path / 'runs')]) == 0


def test_add_a_criterion(tmp_path, monkeypatch):
    """Module + registry entry + criteria block: the spec, a native run and the toy study take it."""
    package = tmp_path / 'pkg'
    package.mkdir()
    name = 'influencerformer/greedy.py'
    (package / Path(name).name).write_text(blocks()[f'file: {name}'])
    monkeypatch.setattr(influencerformer, '__path__', [*influencerformer.__path__, str(package)])
    entry = eval(blocks()['registry entry'], {'Entry': registry.Entry})   # noqa: S307 - our own guide
    monkeypatch.setattr(registry, 'CRITERIA', (*registry.CRITERIA, entry))
    with_criteria(tmp_path, monkeypatch, 'hungarian-greedy')
    crit = arms.build_criterion(arms.load_criteria()['hungarian-greedy'])
    assert type(crit).__name__ == 'GreedyMatchCriterion'
    assert influencerformer.GreedyMatchCriterion is type(crit)
    path = tiny_spec(tmp_path, ['hungarian', 'hungarian-greedy'])
    assert main(['run', '--spec', str(path), '--runs', str(tmp_path / 'runs'),
                 '--work-dirs', str(tmp_path / 'work')]) == 0
    record = records.load_record(tmp_path / 'runs' / 'guide__hungarian-greedy__s0' / 'run.json')
    assert record['status'] == 'finished'
    assert all(line.startswith(arms.ARM_KEY) for line in record['config_diff'])
    assert main(['study', 'toy', '--quick', '--criteria', 'hungarian-greedy', '--workers', '1',
                 '--out', str(tmp_path / 'toy')]) == 0


def test_the_greedy_example_matches_hungarian_where_greedy_is_optimal():
    """The guide's criterion is a real one: with one GT its greedy pick is Hungarian's."""
    namespace: dict = {}
    source = blocks()['file: influencerformer/greedy.py'].replace('from .hungarian', 'from influencerformer.hungarian')
    exec(compile(source, 'greedy.py', 'exec'), namespace)   # noqa: S102 - our own guide
    block = {k: v for k, v in arms.load_criteria()['hungarian'].items() if k != 'type'}
    greedy = namespace['GreedyMatchCriterion'](**block)
    hungarian = registry.resolve('HungarianCriterion')(**block)
    gen = torch.Generator().manual_seed(0)
    inst = influencerformer.InstanceGT(torch.rand(1, 50, generator=gen) > 0.5, torch.tensor([3]))
    layer = {'cls_preds': [torch.randn(6, 14, generator=gen)], 'masks': [torch.randn(6, 50, generator=gen)]}
    (q1, g1), = greedy.match(layer, [inst])
    (q2, g2), = hungarian.match(layer, [inst])
    assert q1.tolist() == q2.tolist() and g1.tolist() == g2.tolist()


def test_add_an_ablation_axis(tmp_path):
    path = tiny_spec(tmp_path, ['hungarian', 'entropic-ot'], **yaml.safe_load(blocks()['ablations of a spec']))
    spec, _ = backends.load(path)
    assert sorted(a.name for a in spec.ablations.axes) == ['queries', 'temperature']
    assert main(['plan', '--spec', str(path), '--runs', str(tmp_path / 'runs')]) == 0


def test_add_a_backend_is_one_module_plus_one_line(tmp_path, monkeypatch, capsys):
    """tests/oracle_backend.py through the real runner, records, evaluator and compare."""
    line = blocks()['backends line'].strip()
    exec(line, {'BACKENDS': backends.BACKENDS, 'OracleBackend': OracleBackend})   # noqa: S102 - our own guide
    spec = yaml.safe_load(blocks()['spec: oracle'])
    spec['data']['root'] = str(tmp_path / 'data')
    path = tmp_path / 'oracle.yaml'
    path.write_text(yaml.safe_dump(spec))
    runs = tmp_path / 'runs'
    assert main(['run', '--spec', str(path), '--runs', str(runs), '--work-dirs', str(tmp_path / 'work')]) == 0
    for record in records.load_runs(runs):
        metrics = json.loads((Path(record['_dir']) / 'metrics.json').read_text())
        assert record['status'] == 'finished' and record['oracle_drop'] == 0
        assert metrics['ap50'] == pytest.approx(1.0) and metrics['ap'] == pytest.approx(1.0)
    assert main(['compare', '--runs', str(runs), '--out', str(tmp_path / 'out')]) == 0
    assert main(['run', '--spec', str(path), '--runs', str(tmp_path / 'runs2'), '--work-dirs',
                 str(tmp_path / 'work2'), '--oracle-drop', '1000']) == 0   # its own option: nothing predicted
    dropped = records.load_runs(tmp_path / 'runs2')
    assert all(json.loads((Path(r['_dir']) / 'metrics.json').read_text())['ap50'] == 0.0 for r in dropped)
    # status checks a study with the flags it ran with; another backend's flag is refused as run refuses it
    seen = []
    monkeypatch.setattr(OracleBackend, 'prepare', lambda self, spec, options: seen.append(options.backend.drop)
                        or Prepared(context=options.backend))
    assert main(['status', '--spec', str(path), '--runs', str(tmp_path / 'runs2'), '--oracle-drop', '1000']) == 0
    assert seen == [1000] and ' refused ' not in capsys.readouterr().out
    assert main(['status', '--spec', str(path), '--runs', str(tmp_path / 'runs2'), '--epochs', '3']) == 2
    assert '--epochs: an option of the upstream backend' in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _no_oracle_left():
    """The backend line adds to the real registry: take it out again after each test."""
    yield
    backends.BACKENDS.pop('oracle', None)
