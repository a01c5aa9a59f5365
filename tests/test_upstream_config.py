"""Derivation of the upstream arms: child config files, loaded back by mmengine, one-key diff."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

pytest.importorskip('mmengine')

from harness.backends.upstream import config as uc  # noqa: E402
from harness.cli import main  # noqa: E402
from harness.study.arms import ARM_KEY as CRITERION_KEY  # noqa: E402
from harness.study.arms import load_criteria  # noqa: E402
from harness.core.errors import HarnessError  # noqa: E402

FIXTURE = Path(__file__).parent / 'fixtures' / 'upstream_shape'
REPO = Path(__file__).resolve().parents[1]


def fixture_spec(tmp_path: Path, **changes) -> Path:
    """The real s3dis-area5 spec pointed at our upstream-shaped fixture config."""
    spec = yaml.safe_load((REPO / 'baselines' / 's3dis-area5.yaml').read_text())
    spec['upstream']['config'] = 'configs/model_s3dis.py'
    spec.update(changes)
    path = tmp_path / 'spec.yaml'
    path.write_text(yaml.safe_dump(spec))
    return path


def loaded(tmp_path: Path):
    """The fixture spec, read and checked as every verb reads it."""
    from harness import backends
    return backends.load(fixture_spec(tmp_path))[0]


def derive(tmp_path: Path, *extra: str, spec: Path | None = None) -> int:
    """derive from the fixture (a folder of this repository, not a checkout at the pinned commit)."""
    return main(['derive', '--spec', str(spec or fixture_spec(tmp_path)), '--upstream-root', str(FIXTURE),
                 '--out', str(tmp_path / 'cfg'), '--data', str(tmp_path / 'data'), '--allow-other-commit', *extra])


def test_derive_checks_the_pinned_commit_as_run_does_and_names_the_real_one(tmp_path, capsys):
    """derive wrote '@ e2a9dd2' into every file whatever the checkout was."""
    args = ['derive', '--spec', str(fixture_spec(tmp_path)), '--upstream-root', str(FIXTURE), '--out',
            str(tmp_path / 'cfg'), '--data', str(tmp_path / 'data')]
    assert main(args) == 2
    assert 'upstream at an unknown commit (not git), the spec pins e2a9dd2' in capsys.readouterr().err
    assert not (tmp_path / 'cfg').exists()
    assert main([*args, '--allow-other-commit']) == 0
    assert '@ an unknown commit (not a git checkout)' in (tmp_path / 'cfg' / 'influencer.py').read_text()


def test_a_refused_derive_writes_none_of_the_set(tmp_path, capsys):
    """One file of the user's in --out: nothing written (the arms before it were, and blocked the next try)."""
    (tmp_path / 'cfg').mkdir()
    (tmp_path / 'cfg' / 'influencer.py').write_text('mine')
    assert derive(tmp_path) == 2
    assert 'influencer.py: exists; pass --force' in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / 'cfg').iterdir()) == ['influencer.py']


def test_derive_writes_loadable_children_that_differ_in_the_criterion_only(tmp_path):
    assert derive(tmp_path, '--seed', '7', '--epochs', '8') == 0
    from mmengine.config import Config
    h = Config.fromfile(str(tmp_path / 'cfg' / 'hungarian.py'), import_custom_modules=False)
    i = Config.fromfile(str(tmp_path / 'cfg' / 'influencer.py'), import_custom_modules=False)
    # runtime keys, the same in both arms
    for cfg in (h, i):
        assert cfg.randomness.seed == 7 and cfg.train_cfg.max_epochs == 8 and cfg.param_scheduler.end == 8
        assert cfg.train_cfg.val_interval == 8 and cfg.default_hooks.checkpoint.interval == 8
        assert cfg.custom_imports.imports == ['fixture_model_package', *uc.PLUGINS]
        roots = {d.data_root for d in cfg.train_dataloader.dataset.datasets} | {
            cfg.val_dataloader.dataset.data_root, cfg.test_dataloader.dataset.data_root}
        assert roots == {str((tmp_path / 'data').resolve()) + '/'}
        assert cfg.default_hooks.logger.type == 'LoggerHook'  # the _base_ still resolves
    # hungarian is upstream's block as published; influencer the mission's, with no leaked key
    assert h.model.criterion.inst_criterion.matcher.type == 'HungarianMatcher'
    assert i.model.criterion.inst_criterion.to_dict() == load_criteria()['influencer']
    lines = (tmp_path / 'cfg' / 'diff.txt').read_text().splitlines()
    body = [line for line in lines if line and not line.startswith('#')]
    assert body and all(line.startswith(CRITERION_KEY + '.') for line in body)
    assert 'model.criterion.inst_criterion.type: \'InstanceCriterion\' -> \'InfluencerCriterion\'' in body


def test_any_other_difference_fails(tmp_path, monkeypatch):
    real = uc.with_arm

    def leaky(runtime, arm, overrides=None):
        cfg = real(runtime, arm, overrides)
        if arm != 'hungarian':
            cfg['optim_wrapper']['optimizer']['lr'] = 2e-4  # a second difference
        return cfg
    monkeypatch.setattr(uc, 'with_arm', leaky)
    with pytest.raises(HarnessError, match='differ outside model.criterion.inst_criterion.*lr'):
        uc.write_arm_configs(loaded(tmp_path), FIXTURE, tmp_path / 'cfg', 0, tmp_path / 'data', None)


def test_merge_without_delete_is_caught(tmp_path, monkeypatch):
    real = uc.overlay

    def no_delete(base, new):
        out = real(base, new)
        if isinstance(out, dict):
            out.pop('_delete_', None)
            return {k: no_delete(base.get(k) if isinstance(base, dict) else None, v) if isinstance(v, dict) else v
                    for k, v in out.items()}
        return out
    monkeypatch.setattr(uc, 'overlay', no_delete)
    assert derive(tmp_path) == 2  # mmengine merges upstream's matcher into our criterion: refused


def test_runtime_keys_add_tensorboard_and_the_divergence_check_for_every_arm(tmp_path):
    assert derive(tmp_path) == 0
    from mmengine.config import Config
    for arm in ('hungarian', 'influencer'):
        cfg = Config.fromfile(str(tmp_path / 'cfg' / f'{arm}.py'), import_custom_modules=False)
        assert [b['type'] for b in cfg.visualizer.vis_backends] == ['LocalVisBackend', 'TensorboardVisBackend']
        assert cfg.custom_hooks[-1] == {'type': 'InfluencerDivergenceCheck'}


def test_ablation_points_are_applied_and_keep_one_key(tmp_path):
    out = uc.write_arm_configs(loaded(tmp_path), FIXTURE, tmp_path / 'cfg', 0, tmp_path / 'data', None,
                               arms=['influencer'], ablation={'criterion.temperature': 0.5,
                                                              'config.model.decoder.num_instance_queries': 7})
    h, i = out['resolved']['hungarian'], out['resolved']['influencer']
    assert h['model']['decoder']['num_instance_queries'] == i['model']['decoder']['num_instance_queries'] == 7
    assert i['model']['criterion']['inst_criterion']['temperature'] == 0.5
    assert all(line.startswith(CRITERION_KEY + '.') for line in out['diffs']['influencer'])


def test_iteration_schedule_and_overrides(tmp_path):
    spec = fixture_spec(tmp_path, schedule={'iters': 3}, overrides={
        'train_dataloader.num_workers': 0, 'train_dataloader.dataset.datasets.*.pipeline.1.num_points': 50})
    assert derive(tmp_path, spec=spec) == 0
    from mmengine.config import Config
    cfg = Config.fromfile(str(tmp_path / 'cfg' / 'influencer.py'), import_custom_modules=False)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters == 3
    assert cfg.val_cfg is None and cfg.val_dataloader is None and cfg.val_evaluator is None
    assert cfg.param_scheduler.by_epoch is False and cfg.default_hooks.checkpoint.by_epoch is False
    assert cfg.train_dataloader.num_workers == 0
    assert {d.pipeline[1].num_points for d in cfg.train_dataloader.dataset.datasets} == {50}


def test_override_typo_names_the_key(tmp_path, capsys):
    spec = fixture_spec(tmp_path, overrides={'model.decoderr.num_instance_queries': 5})
    assert derive(tmp_path, spec=spec) == 2
    assert "'model.decoderr.num_instance_queries': no 'decoderr' there in upstream's config" in capsys.readouterr().err


def test_missing_checkout_and_existing_files_are_clear_errors(tmp_path, capsys):
    assert main(['derive', '--spec', str(fixture_spec(tmp_path)), '--upstream-root', str(tmp_path / 'nope'),
                 '--out', str(tmp_path / 'cfg')]) == 2
    assert 'upstream config not found; pass --upstream-root' in capsys.readouterr().err
    assert derive(tmp_path) == 0
    before = (tmp_path / 'cfg' / 'influencer.py').read_text()
    assert derive(tmp_path) == 2  # never silently overwritten
    assert 'exists; pass --force' in capsys.readouterr().err
    assert (tmp_path / 'cfg' / 'influencer.py').read_text() == before
    assert derive(tmp_path, '--force') == 0


def test_force_replaces_the_whole_set_and_keeps_the_users_files(tmp_path, capsys):
    """A two-arm derivation over a three-arm one left the third arm's file beside a diff.txt without it."""
    assert derive(tmp_path) == 0
    arms = yaml.safe_load((REPO / 'baselines' / 's3dis-area5.yaml').read_text())['arms']
    dropped = [a for a in arms if a != 'hungarian'][-1]
    (tmp_path / 'cfg' / 'notes.py').write_text('# mine\n')
    copy = (tmp_path / 'cfg' / f'{dropped}.py').read_text()   # a user's edited copy keeps derive's header
    (tmp_path / 'cfg' / f'{dropped}_lr2.py').write_text(copy)
    fewer = fixture_spec(tmp_path, arms=[a for a in arms if a != dropped])
    assert derive(tmp_path, '--force', spec=fewer) == 0
    assert f"removed {tmp_path / 'cfg' / f'{dropped}.py'}" in capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / 'cfg').iterdir())
    assert names == sorted([f'{a}.py' for a in arms if a != dropped] + ['notes.py', f'{dropped}_lr2.py', 'diff.txt'])


@pytest.mark.parametrize('flags, message', [
    (['--epochs', '0'], "--epochs 0 must be an integer > 0; fix the value, or leave --epochs out for the spec's"),
    (['--iters', '-5'], '--iters -5 must be an integer > 0'),
    (['--epochs', '3', '--iters', '10'], '--epochs 3 and --iters 10 both given; give one'),
    (['--gpus', '0'], '--gpus 0 must be an integer > 0; give --gpus 1 or more'),
    (['--seed', '-1'], '--seed -1: must be a non-negative integer up to 2**32 - 1'),
    (['--seed', str(2**32)], f'--seed {2**32}: must be a non-negative integer up to 2**32 - 1'),
    (['--gpus', '1000'], '--gpus 1000: how run launches the configs, not what they hold'),
])
def test_bad_flags_are_one_line_errors_before_any_file(tmp_path, capsys, flags, message):
    """Before: --epochs 0 gave upstream's 512, --iters -5 max_iters -5, --seed -1 seed -1, --epochs beside --iters
    was dropped; the spec refuses each of these values."""
    assert derive(tmp_path, *flags) == 2
    err = capsys.readouterr().err
    assert f'error: {message}' in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / 'cfg').exists()


def test_seed_at_the_spec_bounds_is_written(tmp_path):
    for seed in (0, 2**32 - 1):
        assert derive(tmp_path, '--seed', str(seed), '--force') == 0
        assert f"'seed': {seed}}}" in (tmp_path / 'cfg' / 'hungarian.py').read_text()


def test_upstream_drift_in_the_published_block_is_refused(tmp_path):
    root = tmp_path / 'up'
    (root / 'configs').mkdir(parents=True)
    for f in (FIXTURE / 'configs').iterdir():
        (root / 'configs' / f.name).write_text(f.read_text().replace('non_object_weight=0.05', 'non_object_weight=0.1'))
    with pytest.raises(HarnessError, match="differs from criteria.yaml 'hungarian'"):
        uc.write_arm_configs(loaded(tmp_path), root, tmp_path / 'cfg', 0, tmp_path / 'data', None)


@pytest.mark.skipif(not os.environ.get('ONEFORMER3D_ROOT'), reason='set ONEFORMER3D_ROOT to derive from upstream')
def test_derive_from_the_real_upstream_config(tmp_path):
    pytest.importorskip('mmdet3d')  # upstream's _base_ is mmdet3d::_base_/default_runtime.py
    assert main(['derive', '--spec', str(REPO / 'baselines' / 's3dis-area5.yaml'), '--upstream-root',
                 os.environ['ONEFORMER3D_ROOT'], '--out', str(tmp_path / 'cfg')]) == 0
    body = [x for x in (tmp_path / 'cfg' / 'diff.txt').read_text().splitlines() if x and x[0] != '#']
    assert body and all(x.startswith(CRITERION_KEY + '.') for x in body)
