"""The upstream backend's own logic; the full run is opt-in (UPSTREAM_E2E=1 with the full stack)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from harness.backends.upstream import backend as up
from harness.backends.upstream import tools
from harness.backends.upstream.part import Schedule, Source, UpstreamPart
from harness.core.errors import HarnessError
from harness.core.tree import canonical_hash, config_diff, diff_keys
from harness import backends
from harness.study.backend import Prepared, RunOptions
from harness.study.matrix import make_point

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / 'fixtures' / 'upstream_shape'


def fake_checkout(tmp_path: Path) -> Path:
    root = tmp_path / 'of3d'
    (root / 'tools').mkdir(parents=True)
    for tool in ('train', 'test'):
        (root / 'tools' / f'{tool}.py').write_text('')
    return root


def test_cross_check_passes_equal_values_and_fails_loudly_otherwise():
    ours = {'ap': 0.5, 'ap50': 0.7, 'ap25': None}
    theirs = {'all_ap': 0.5, 'all_ap_50%': 0.7 + 5e-7, 'all_ap_25%': None}
    assert tools.cross_check(ours, theirs)['passed']
    with pytest.raises(HarnessError, match='cross-check failed: our ap50'):
        tools.cross_check(ours, {**theirs, 'all_ap_50%': 0.7 + 2e-6})
    with pytest.raises(HarnessError, match='cross-check failed: our ap25'):
        tools.cross_check(ours, {**theirs, 'all_ap_25%': 0.1})
    with pytest.raises(HarnessError, match="lack 'all_ap'"):
        tools.cross_check(ours, {'miou': 0.3})


def test_commands_single_and_multi_gpu(tmp_path):
    root = fake_checkout(tmp_path)
    one = tools.Upstream(root).command('train', 'cfg.py', '--work-dir', 'w')
    assert one == [sys.executable, str(root / 'tools' / 'train.py'), 'cfg.py', '--work-dir', 'w']
    four = tools.Upstream(root, gpus=4).command('train', 'cfg.py')
    assert four[1:4] == ['-m', 'torch.distributed.run', '--nproc_per_node=4'] and four[-2:] == ['--launcher', 'pytorch']
    env = tools.Upstream(root).env(threads=1)
    assert env['PYTHONPATH'].split(os.pathsep)[:2] == [str(root), str(REPO)] and env['OMP_NUM_THREADS'] == '1'
    with pytest.raises(HarnessError, match='must be a OneFormer3D checkout'):
        tools.Upstream(tmp_path)


def test_wrong_commit_is_refused_unless_allowed(tmp_path, monkeypatch):
    root = fake_checkout(tmp_path)
    source = Source(repo='x', commit='e2a9dd2656d4b2806853c026cab7bc63201f8814', root=str(root), config='c.py')
    spec = SimpleNamespace(part=UpstreamPart(upstream=source, schedule=Schedule(), pretrained=None))
    backend = up.UpstreamBackend()
    with pytest.raises(HarnessError, match='pins e2a9dd2; check out e2a9dd2 or pass --allow-other-commit'):
        backend.prepare(spec, RunOptions(backend=up.UpstreamOptions(upstream_root=root)))
    shared = backend.prepare(spec, RunOptions(backend=up.UpstreamOptions(upstream_root=root, allow_other_commit=True)))
    assert shared.record['upstream']['pinned'] == source.commit and shared.record['upstream']['commit'] is None


def cli_options(**given) -> up.UpstreamOptions:
    """The backend's options typed from a command line (``vars(args)``) with ``given`` changed."""
    values = {'gpus': 1, 'epochs': None, 'iters': None, 'upstream_root': None, 'allow_other_commit': False,
              'cache': up.DEFAULT_CACHE, **given}
    return up.UpstreamBackend.options(values)


@pytest.mark.parametrize('given, message', [
    ({'epochs': 0}, '--epochs 0 must be an integer > 0; fix the value, or leave --epochs out'),
    ({'epochs': -3}, '--epochs -3 must be an integer > 0'),
    ({'iters': -5}, '--iters -5 must be an integer > 0; fix the value, or leave --iters out'),
    ({'iters': 0}, '--iters 0 must be an integer > 0'),
    ({'epochs': 10**8 + 1}, r'--epochs 100000001 must be an integer in 1\.\.100,000,000'),
    ({'iters': 10**8 + 1}, r'--iters 100000001 must be an integer in 1\.\.100,000,000'),
    ({'epochs': 3, 'iters': 10}, '--epochs 3 and --iters 10 both given; give one'),
    ({'gpus': 0}, '--gpus 0 must be an integer > 0; give --gpus 1 or more'),
    ({'gpus': -2}, '--gpus -2 must be an integer > 0'),
])
def test_options_outside_the_spec_bounds_are_refused_naming_the_flag(given, message):
    """The same bounds as the spec's ``schedule:`` (schema.ITERATIONS); before, each was taken silently."""
    with pytest.raises(HarnessError, match=message):
        cli_options(**given)
    with pytest.raises(HarnessError, match=message):
        up.UpstreamOptions(**given)   # the typed value holds the rule, however it is built


def test_options_within_the_bounds_are_kept_as_given():
    assert cli_options() == up.UpstreamOptions()
    assert cli_options(epochs=1).epochs == 1 and cli_options(epochs=10**8).epochs == 10**8
    assert cli_options(iters=1).iters == 1 and cli_options(iters=10**8).iters == 10**8
    assert cli_options(gpus=4, epochs=64).argv() == ['--epochs', '64', '--gpus', '4']
    assert cli_options(iters=10).argv() == ['--iters', '10']


def test_run_refuses_bad_upstream_options_before_anything_is_written(tmp_path, capsys):
    from harness.cli import main
    raw = yaml.safe_load((REPO / 'baselines' / 's3dis-area5.yaml').read_text())
    raw['upstream']['config'] = 'configs/model_s3dis.py'
    path = tmp_path / 's.yaml'
    path.write_text(yaml.safe_dump(raw))
    for flags, message in ((['--gpus', '0'], '--gpus 0 must be an integer > 0'),
                           (['--epochs', '3', '--iters', '10'], '--epochs 3 and --iters 10 both given')):
        assert main(['run', '--spec', str(path), '--upstream-root', str(FIXTURE), '--runs', str(tmp_path / 'runs'),
                     '--work-dirs', str(tmp_path / 'work'), *flags]) == 2
        assert f'error: {message}' in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['s.yaml']


def test_derived_configs_change_with_the_schedule_so_a_resume_is_refused(tmp_path):
    """The runner refuses to resume a run whose derived config changed (tests/test_smoke_e2e.py);
    here: the upstream backend's derived config does change with the options that matter."""
    pytest.importorskip('mmengine')
    raw = yaml.safe_load((REPO / 'baselines' / 's3dis-area5.yaml').read_text())
    raw['upstream']['config'] = 'configs/model_s3dis.py'
    path = tmp_path / 's.yaml'
    path.write_text(yaml.safe_dump(raw))
    spec, backend = backends.load(path)
    checkout = tools.Upstream(fake_checkout(tmp_path / 'up'))
    checkout.root = FIXTURE   # upstream's tools live in the fake checkout, its config in the fixture

    def derive(**options):
        found = up.Checkout(checkout, None, up.UpstreamOptions(cache=tmp_path, **options))
        return backend.derive(spec, Prepared(context=found), point, tmp_path / 'data')
    point = make_point('s3dis-area5', 'influencer', 0)
    first, again, longer = derive(), derive(), derive(epochs=32)
    assert set(first.files) == {'hungarian.py', 'influencer.py'} and first.config == again.config
    assert first.diff and all(d.startswith('model.criterion.inst_criterion.') for d in first.diff)
    changed = diff_keys(config_diff(first.config, longer.config))
    assert 'train_cfg.max_epochs' in changed and canonical_hash(first.config) != canonical_hash(longer.config)


def test_divergence_is_reported_with_its_iteration(tmp_path):
    (tmp_path / 'DIVERGED.json').write_text(json.dumps({'iteration': 7, 'loss': 'nan', 'last_finite': 3.5}))
    assert 'loss became nan at iteration 7 (last finite loss 3.5)' in str(tools.diverged(tmp_path))
    (tmp_path / 'DIVERGED.json').unlink()
    (tmp_path / 'train.log').write_text('ValueError: matrix contains invalid numeric entries\n')
    assert 'model outputs became non-finite' in str(tools.diverged(tmp_path))


def test_test_config_adds_only_the_dumps(tmp_path):
    pytest.importorskip('mmengine')
    from harness.backends.upstream.config import load_resolved
    cfg = tmp_path / 'arm.py'
    cfg.write_text(f"_base_ = [{str(FIXTURE / 'configs' / 'model_s3dis.py')!r}]\n")
    test_cfg = tools.write_test_config(cfg, tmp_path / 'preds', tmp_path / 'm.json')
    base, child = load_resolved(cfg), load_resolved(test_cfg)
    assert child['test_evaluator'] == [base['test_evaluator'],
                                       {'type': 'InfluencerPredictionDump', 'out_dir': str(tmp_path / 'preds')}]
    assert child['custom_hooks'] == [{'type': 'InfluencerMetricsDump', 'out_file': str(tmp_path / 'm.json')}]
    rest = lambda cfg: {k: v for k, v in cfg.items() if k not in ('test_evaluator', 'custom_hooks')}  # noqa: E731
    assert rest(child) == rest(base)


def test_doctor_reports_without_crashing():
    """In the test environment parts of the stack are missing: a report and fixes, exit 1, no traceback."""
    out = subprocess.run([sys.executable, '-m', 'harness', 'doctor', '--upstream-root', str(REPO / 'nowhere')],
                         capture_output=True, text=True, cwd=REPO)
    assert 'Traceback' not in out.stdout + out.stderr
    assert 'ok    import torch' in out.stdout and 'registry: InfluencerCriterion' in out.stdout
    assert 'FAIL  upstream checkout' in out.stdout and 'fix:' in out.stdout
    assert out.returncode == 1 and out.stdout.rstrip().splitlines()[-1].startswith('RESULT ')


@pytest.mark.skipif(not (os.environ.get('UPSTREAM_E2E') and os.environ.get('ONEFORMER3D_ROOT')),
                    reason='set UPSTREAM_E2E=1 and ONEFORMER3D_ROOT with the full upstream stack installed')
def test_upstream_ci_spec_end_to_end(tmp_path):
    """Real upstream train.py/test.py on CPU for every arm, evaluated and cross-checked, then resumed."""
    cmd = [sys.executable, '-m', 'harness', 'run', '--spec', 'baselines/ci-upstream-cpu.yaml', '--runs',
           str(tmp_path / 'runs'), '--work-dirs', str(tmp_path / 'work'), '--data', str(tmp_path / 'data')]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    arms = yaml.safe_load((REPO / 'baselines' / 'ci-upstream-cpu.yaml').read_text())['arms']
    for arm in arms:
        metrics = json.loads((tmp_path / 'runs' / f'ci-upstream-cpu__{arm}__s0' / 'metrics.json').read_text())
        assert metrics['upstream_cross_check']['passed']
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    for arm in arms:
        assert f'"{arm}/s0": "done (already finished)"' in again.stdout
