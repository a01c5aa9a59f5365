"""Toy study: runs end to end in quick mode; the chosen variant learns where the seed does not."""
import pandas as pd
import pytest
import torch

from harness.study.arms import build_criterion, load_criteria
from influencerformer.anchored import candidates
from harness.toy.study import CRITERIA, ious, problem

from harness.cli import main

from data_helpers import harness


def test_quick_study_writes_tables_and_plots(tmp_path):
    code, out, err = harness('study', 'toy', '--quick', '--out', tmp_path, '--workers', 1)
    assert code == 0, err
    runs = pd.read_csv(tmp_path / 'runs.csv')
    assert sorted(runs['criterion']) == sorted(CRITERIA)
    assert runs['recovered_90'].between(0, 1).all() and (runs['ms_per_step'] > 0).all()
    for name in ('recovery_vs_steps', 'iou_distribution', 'grid_heatmap'):
        assert (tmp_path / 'plots' / f'{name}.png').stat().st_size > 5000
    assert '## Base toy' in (tmp_path / 'summary.md').read_text()
    assert harness('study', 'toy', '--quick', '--out', tmp_path)[0] == 2  # never overwrites


@pytest.mark.parametrize('flag, value', [('--seeds', 0), ('--eval-every', 0), ('--steps', 0),
                                         ('--instances', 0), ('--queries', 0), ('--steps', -1)])
def test_counts_below_one_are_refused_before_training(tmp_path, monkeypatch, capsys, flag, value):
    monkeypatch.setattr('harness.toy.study.train', lambda *a: pytest.fail('trained before checking'))
    with pytest.raises(SystemExit) as stop:   # argparse's usage line and exit 2
        main(['study', 'toy', '--out', str(tmp_path / 'toy'), '--workers', '1', flag, str(value)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f'argument {flag}: must be an integer >= 1 (got {value})' in err, err
    assert not (tmp_path / 'toy').exists()


def test_any_existing_output_is_refused_before_training(tmp_path, monkeypatch):
    (tmp_path / 'summary.md').write_text('mine')
    monkeypatch.setattr('harness.toy.study.train', lambda *a: pytest.fail('trained before checking'))
    code, _, err = harness('study', 'toy', '--quick', '--out', tmp_path, '--workers', 1)
    assert code == 2 and f'{tmp_path}: summary.md exist(s); pass --force' in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ['summary.md'] and (tmp_path / 'summary.md').read_text() == 'mine'


@pytest.mark.parametrize('flags', [['--steps', 4], ['--queries', 3, '--instances', 5]])
def test_quick_refuses_the_flags_it_would_override(tmp_path, monkeypatch, flags):
    monkeypatch.setattr('harness.toy.study.train', lambda *a: pytest.fail('trained before checking'))
    code, _, err = harness('study', 'toy', '--quick', '--out', tmp_path / 'toy', '--workers', 1, *flags)
    given = ' '.join(str(f) for f in flags if str(f).startswith('--'))
    assert code == 2 and '--quick fixes the grid' in err and f'leave out {given}, or leave out --quick' in err, err


def test_the_grid_takes_each_criterion_once_and_quick_values_unless_given():
    from harness.toy.study import settings, grid
    import argparse
    base = {'quick': False, 'queries': None, 'instances': [4], 'seeds': 2, 'steps': None,
            'criteria': ['hungarian', 'pm3', 'hungarian']}
    args = settings(argparse.Namespace(**base))
    assert args.criteria == ['hungarian', 'pm3'] and args.queries == [8, 50, 400] and args.steps == 600
    assert len(grid(args)) == 2 * 3 * 1 * 2 * 2
    quick = settings(argparse.Namespace(**{**base, 'quick': True, 'instances': None, 'seeds': None}))
    assert grid(quick) == [('hungarian', 8, 5, True, 0), ('pm3', 8, 5, True, 0)] and quick.steps == 200


def test_out_under_a_file_is_refused_before_training(tmp_path, monkeypatch):
    (tmp_path / 'a-file').write_text('mine')
    monkeypatch.setattr('harness.toy.study.grid', lambda args: pytest.fail('built the grid before checking --out'))
    code, _, err = harness('study', 'toy', '--quick', '--out', tmp_path / 'a-file' / 'toy', '--workers', 1)
    assert code == 2 and 'a-file/toy: cannot write there (a part of this path is a file' in err, err
    assert (tmp_path / 'a-file').read_text() == 'mine'


@pytest.mark.parametrize('runs_csv', ['', 'criterion,seed\n', 'criterion,seed\nhungarian,0\n'])
def test_render_of_an_empty_runs_csv_names_it(tmp_path, runs_csv):
    (tmp_path / 'runs.csv').write_text(runs_csv)
    (tmp_path / 'curves.csv').write_text('step,criterion\n1,pm3\n')
    code, _, err = harness('study', 'toy', '--render', '--out', tmp_path)
    assert code == 2 and err.count('\n') == 1 and f'{tmp_path / "runs.csv"}: ' in err, err
    assert not (tmp_path / 'summary.md').exists()


def optimise(arm: str, seed: int, n_queries: int = 8, n_instances: int = 5, steps: int = 1500,
             n_points: int = 300):
    """Free queries on one scene with background (the issue's base toy by default)."""
    gt = problem(n_instances, background=True, seed=seed)
    pad = n_points - gt.sp_masks.shape[1]
    gt.sp_masks = torch.cat([gt.sp_masks, torch.zeros(n_instances, max(pad, 0), dtype=torch.bool)], 1)
    crit = build_criterion(load_criteria()[arm])
    gen = torch.Generator().manual_seed(seed)
    masks = (torch.randn(n_queries, gt.sp_masks.shape[1], generator=gen) * 0.1).requires_grad_()
    cls, score = torch.zeros(n_queries, 14, requires_grad=True), torch.zeros(n_queries, 1, requires_grad=True)
    anchors = torch.randint(0, gt.sp_masks.shape[1], (n_queries,), generator=gen)   # read by anchored criteria
    opt = torch.optim.Adam([masks, cls, score], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        crit({'cls_preds': [cls], 'scores': [score], 'masks': [masks], 'query_anchors': [anchors]},
             [gt])['inst_loss'].backward()
        opt.step()
    best, best_q = ious(masks.detach(), gt.sp_masks).max(0)
    optimise.anchored = candidates(anchors, gt.sp_masks)
    return best, cls.detach()[best_q].argmax(1) == gt.labels_3d


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_third_arm_learns_with_many_queries(seed):
    """The chosen variant where the real model lives: 400 queries, 20 instances, 600 steps.

    Measured: seeds 0 and 2 recover every GT, seed 1 recovers 85% (90% after 1000
    steps). The issue's stricter test (every GT, every seed) is NOT met by any
    Influencer variant; see docs/influencer-loss.md. This guards the measured level.
    """
    best, right = optimise('influencer-softmax-excl', seed, n_queries=400, n_instances=20, steps=600,
                           n_points=600)
    assert float(((best >= 0.9) & right).float().mean()) >= 0.8, best


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_exclusivity_alone_recovers_the_base_toy(seed):
    """The issue's candidate passes the 8-query toy (it collapses with many queries instead)."""
    best, right = optimise('influencer-excl', seed)
    assert (best >= 0.9).all() and right.all(), best


def test_seed_formulation_reaches_the_degenerate_optimum():
    """Documented finding (docs/influencer-loss.md): a regression guard, not a target."""
    best, _ = optimise('influencer', 0)
    assert best.max() < 0.6


def test_pm3_learns_the_base_toy():
    """Measured (600 steps): 3, 2 and 5 of the 5 GTs recovered with their class on seeds 0-2, where the
    original formulation recovers none; not every GT (docs/influencer-loss.md has the full toy grid)."""
    recovered = [float(((b >= 0.9) & r).float().mean()) for b, r in (optimise('pm3', s, steps=600) for s in range(3))]
    assert sum(recovered) / 3 >= 0.5 and max(recovered) == 1.0, recovered


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_influencer_net_recovers_the_gts_its_queries_are_anchored_in(seed):
    """20 queries, 8 instances, 400 steps. Measured: 5 of 6, 6 of 7, 5 of 6 anchored GTs (a GT without
    an anchor has no influencer: it cannot be recovered)."""
    best, right = optimise('influencer-net', seed, n_queries=20, n_instances=8, steps=400)
    anchored = torch.zeros(8, dtype=torch.bool)
    anchored[optimise.anchored[optimise.anchored >= 0]] = True
    assert float(((best >= 0.9) & right)[anchored].float().mean()) >= 0.8, best


def test_the_grid_takes_each_setting_once_and_an_old_name_as_its_arm():
    """--queries 4 4 ran every cell twice; influencer-ot beside entropic-ot trained one arm twice."""
    import argparse
    from harness.toy.study import grid, settings
    args = settings(argparse.Namespace(quick=False, queries=[4, 4], instances=[5, 5], seeds=1, steps=None,
                                       criteria=['influencer-ot', 'entropic-ot']))
    assert args.criteria == ['entropic-ot'] and grid(args) == [('entropic-ot', 4, 5, False, 0),
                                                               ('entropic-ot', 4, 5, True, 0)]


def committed_tables(tmp_path):
    from harness.core.paths import REPO
    for name in ('runs.csv', 'curves.csv'):
        (tmp_path / name).write_bytes((REPO / 'results' / 'toy' / name).read_bytes())


def test_render_keeps_a_summary_it_did_not_write(tmp_path):
    committed_tables(tmp_path)
    (tmp_path / 'summary.md').write_text('my notes\n')
    code, _, err = harness('study', 'toy', '--render', '--out', tmp_path)
    assert code == 2 and f'{tmp_path / "summary.md"}: not written by the toy study' in err, err
    assert (tmp_path / 'summary.md').read_text() == 'my notes\n' and not (tmp_path / 'plots').exists()
    assert harness('study', 'toy', '--render', '--out', tmp_path, '--force')[0] == 0
    assert harness('study', 'toy', '--render', '--out', tmp_path)[0] == 0   # its own summary: re-rendered


def test_steps_to_recovery_says_how_many_runs_recovered():
    """Its mean skipped runs that never recovered, silently (3 steps for an arm one of whose 2 runs failed)."""
    from harness.toy.study import SUMMARY_COLUMNS, summarise
    rows = [{**{c: 0.5 for c in SUMMARY_COLUMNS}, 'criterion': 'pm3', 'queries': 8, 'instances': 5, 'seed': seed,
             'steps': 200, 'steps_to_recovery': steps} for seed, steps in ((0, 3.0), (1, float('nan')))]
    text = summarise(pd.DataFrame(rows))
    header = next(line for line in text.splitlines() if line.startswith('| criterion'))
    row = next(line for line in text.splitlines() if line.startswith('| pm3'))
    cells = dict(zip(header.strip('|').split(' | '), row.strip('|').split(' | ')))
    assert cells['steps_to_recovery'].strip() == '3' and cells['runs_recovered'].strip() == '0.5'
    never = summarise(pd.DataFrame([{**rows[1], 'criterion': 'influencer'}]))   # no run recovered: a dash, not nan
    assert 'nan' not in never and '| – | 0 |' in never
