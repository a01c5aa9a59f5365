"""diagnose: what AP mixes (mask fit, class, ranking, duplicates), measured apart on hand-made scenes."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from harness.backends.native.diagnose import load_model, query_stats, summarise
from harness.cli import main
from harness.core.errors import HarnessError
from harness.verbs.diagnose import COLUMNS

from runs_factory import make_run


def scene():
    """450 points: GT 0 (class 2) on 0-199, GT 1 (class 5) on 200-399, GT 2 (50 points, under AP's 100) after."""
    instance = torch.cat([torch.zeros(200), torch.ones(200), torch.full((50,), 2)]).long()
    semantic = torch.cat([torch.full((200,), 2), torch.full((200,), 5), torch.full((50,), 7)]).long()
    probs = torch.zeros(3, 450)
    probs[0, :200] = 0.9            # fits GT 0 exactly
    probs[1, :150] = 0.9            # fits GT 0 at IoU 0.75: a duplicate, and scored higher
    probs[2, 200:260] = 0.9         # covers 30% of GT 1: fits nothing
    cls = torch.full((3, 14), -5.0)
    cls[0, 2] = cls[1, 2] = 5.0
    cls[2, 13] = 5.0                # no-object
    score = torch.tensor([[0.5], [0.9], [0.9]])
    return probs, cls, score, instance, semantic


def test_each_part_is_measured_on_its_own():
    stats = query_stats(*scene(), thr=0.15)
    np.testing.assert_allclose(stats['best_iou'], [1.0, 0.3])   # the 50-point GT is left out, as AP does
    assert stats['hits'].tolist() == [2, 0]
    assert bool(stats['right_class'][0]) and not bool(stats['ranked_first'][0])
    assert stats['no_object'].tolist() == [False, False, True] and stats['active'].all()


def test_ranking_follows_the_inference_score():
    probs, cls, score, instance, semantic = scene()
    score[0] = 0.99                 # now the best-IoU query also scores highest
    assert bool(query_stats(probs, cls, score, instance, semantic, 0.15)['ranked_first'][0])


def test_summary_pools_gts_and_rates_only_fitted_ones():
    row = summarise([query_stats(*scene(), thr=0.15)])
    assert row['gts'] == 2 and row['oracle_recall50'] == 0.5 and row['duplicates'] == 1.0
    assert row['right_class'] == 1.0 and row['ranked_first'] == 0.0
    assert abs(row['no_object_queries'] - 1 / 3) < 1e-12 and abs(row['mean_best_iou'] - 0.65) < 1e-6


def test_anchored_gts_are_those_a_query_is_anchored_in():
    probs, cls, score, instance, semantic = scene()
    stats = query_stats(probs, cls, score, instance, semantic, 0.15, anchor_instance=torch.tensor([0, 0, 2]))
    assert stats['anchored'].tolist() == [True, False]   # GT 1 has no anchor (the third is in the small GT)
    row = summarise([stats])
    assert row['gts_anchored'] == 0.5 and row['fit_if_anchored'] == 1.0
    assert np.isnan(summarise([query_stats(*scene(), thr=0.15)])['gts_anchored'])


def test_a_checkpoint_outside_the_runs_work_dir_is_never_loaded(tmp_path):
    (tmp_path / 'work').mkdir()
    stray = tmp_path / 'elsewhere.pth'
    stray.write_bytes(b'not loaded')
    record = {'run_id': 'r', 'work_dir': str(tmp_path / 'work'), 'checkpoint': {'path': str(stray)}}
    with pytest.raises(HarnessError, match='outside the run.s work dir'):
        load_model(record, {'model': {}})


def keep_diagnosis(folder, value: float) -> None:
    """The diagnosis a native run keeps in its metrics.json, every rate set to ``value``."""
    path = folder / 'metrics.json'
    metrics = json.loads(path.read_text())
    metrics['diagnosis'] = {'gts': 10, **{key: value for key in COLUMNS}, 'gts_anchored': None,
                            'fit_if_anchored': None}
    path.write_text(json.dumps(metrics))


def test_the_verb_diagnoses_compares_headline_runs_never_ablation_points(tmp_path):
    runs = tmp_path / 'runs'
    for seed in range(3):
        keep_diagnosis(make_run(runs, 'hungarian', seed, 0.5, experiment='fx'), 0.5)
        keep_diagnosis(make_run(runs, 'hungarian', seed, 0.2, experiment='fx',
                                ablation={'config.model.decoder.n_inst': 8}), 0.0)
    assert main(['diagnose', '--runs', str(runs), '--out', str(tmp_path / 'out')]) == 0
    table = pd.read_csv(tmp_path / 'out' / 'diagnosis.csv')
    assert len(table) == 3 and (table['oracle_recall50'] == 0.5).all() and sorted(table['seed']) == [0, 1, 2]
    assert 'The 3 run(s) with ablation values are left out' in (tmp_path / 'out' / 'diagnosis.md').read_text()


def test_an_out_that_is_a_file_is_named_before_any_work(tmp_path, capsys):
    (tmp_path / 'notes').write_text('mine')
    assert main(['diagnose', '--runs', str(tmp_path / 'none'), '--out', str(tmp_path / 'notes')]) == 2
    assert capsys.readouterr().err.startswith(f'error: --out {tmp_path / "notes"}: a file, not a folder')
    assert (tmp_path / 'notes').read_text() == 'mine'


def test_a_diagnosis_file_of_the_users_is_never_written_over_unasked(tmp_path, capsys):
    runs, out = tmp_path / 'runs', tmp_path / 'out'
    for seed in range(3):
        keep_diagnosis(make_run(runs, 'hungarian', seed, 0.5, experiment='fx'), 0.5)
    out.mkdir()
    (out / 'diagnosis.md').write_text('# my notes on the queries\n')
    assert main(['diagnose', '--runs', str(runs), '--out', str(out)]) == 2
    assert 'diagnosis.md: not written by diagnose' in capsys.readouterr().err
    assert (out / 'diagnosis.md').read_text() == '# my notes on the queries\n'
    assert main(['diagnose', '--runs', str(runs), '--out', str(out), '--force']) == 0
    assert main(['diagnose', '--runs', str(runs), '--out', str(out)]) == 0   # its own files: re-written
    other = tmp_path / 'other'
    keep_diagnosis(make_run(other, 'hungarian', 0, 0.5, experiment='fy'), 0.5)
    capsys.readouterr()
    assert main(['diagnose', '--runs', str(other), '--out', str(out)]) == 2   # fx's diagnosis is kept
    assert "diagnosis.md: the diagnosis of experiment 'fx', not of 'fy'" in capsys.readouterr().err


def test_arms_diagnosed_over_different_seeds_say_so(tmp_path):
    """A staged study: stopped arms have fewer seeds; the title claimed one count for all."""
    runs, out = tmp_path / 'runs', tmp_path / 'out'
    for seed in range(4):
        keep_diagnosis(make_run(runs, 'hungarian', seed, 0.5, experiment='fx'), 0.5)
    for seed in range(3):
        keep_diagnosis(make_run(runs, 'influencer', seed, 0.3, experiment='fx'), 0.2)
    assert main(['diagnose', '--runs', str(runs), '--out', str(out)]) == 0
    text = (out / 'diagnosis.md').read_text()
    assert text.startswith("# fx: what the queries do (mean over each arm's seeds)")
    assert '| hungarian | 4 |' in text and '| influencer | 3 |' in text


def test_rates_over_no_fitted_gt_show_a_dash_as_the_anchor_columns_do(tmp_path):
    """An arm that fits no GT has no best query to rate: its rates printed 'nan'."""
    from harness.verbs.diagnose import markdown
    row = {'arm': 'influencer', 'seed': 0, 'ap50': 0.0, 'oracle_recall50': 0.0, 'mean_best_iou': 0.1,
           'right_class': float('nan'), 'ranked_first': float('nan'), 'duplicates': float('nan'),
           'no_object_queries': 0.5, 'active_queries': 1.0, 'gts_anchored': float('nan'),
           'fit_if_anchored': float('nan')}
    line = next(x for x in markdown('fx', pd.DataFrame([row])).splitlines() if x.startswith('| influencer'))
    cells = [c.strip() for c in line.strip('|').split('|')]
    assert 'nan' not in line and cells[5:8] == cells[10:] + ['–'] == ['–'] * 3 and cells[8:10] == ['0.50', '1.00']
