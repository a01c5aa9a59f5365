"""plan: the run matrix, and the seeds a spec's question needs (from its pilot runs or a given SD)."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from harness.cli import main
from harness.core.paths import REPO
from harness.reporting.schedule import describe_plateau, last_third_gain
from harness.reporting.stats import seeds_for_power
from runs_factory import make_run


def spec(tmp_path, **question):
    raw = yaml.safe_load((REPO / 'baselines' / 'smoke-native.yaml').read_text())
    raw.update(experiment='pilot', arms=['hungarian', 'influencer'], seeds=list(range(12)),
               question={'margin': 3.0, **question})
    path = tmp_path / 'spec.yaml'
    path.write_text(yaml.safe_dump(raw))
    return path


def result(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1].split(' ', 1)[1])


def test_plan_sizes_the_study_from_the_pilot_runs(tmp_path, capsys):
    runs = tmp_path / 'runs'
    ap50 = {}
    for seed in range(5):
        for arm, level in (('hungarian', 0.6), ('influencer', 0.55)):
            folder = make_run(runs, arm, seed, level, experiment='pilot')
            ap50[arm, seed] = json.loads((folder / 'metrics.json').read_text())['ap50']
    assert main(['plan', '--spec', str(spec(tmp_path)), '--runs', str(runs)]) == 0
    out = capsys.readouterr().out
    hours, todo = result(out)['hours_to_do'], result(out)['to_do']
    assert todo == 14 and f'one after another, ~{hours / 14:.1f} h with Slurm (14 at a time)' in out
    sd = 100 * np.std([ap50['influencer', s] - ap50['hungarian', s] for s in range(5)], ddof=1)
    assert result(out)['seeds_needed'] == seeds_for_power(sd, 3.0)
    assert f'SD of the paired difference {sd:.2f} AP50 points (over 5 paired seeds' in out
    gains = [last_third_gain(pd.read_csv(f)) for f in sorted(runs.glob('pilot__hungarian__s*/curves.csv'))]
    assert len(gains) == 5 and result(out)['last_third_gain'] == pytest.approx(np.mean(gains), abs=0.01)
    assert f"validation AP50 gained {np.mean(gains):+.1f} over the last third of training (mean of 5 seeds" in out


def curve(points: dict[int, float], train_steps: int = 0) -> pd.DataFrame:
    rows = [{'phase': 'train', 'step': s, 'all_ap_50%': None} for s in range(1, train_steps + 1)]
    rows += [{'phase': 'val', 'step': s, 'all_ap_50%': v} for s, v in points.items()]
    return pd.DataFrame(rows)


def test_last_third_gain_from_the_validation_at_two_thirds_to_the_end():
    rising = curve({400: 0.30, 800: 0.40, 1200: 0.45, 1600: 0.50, 2000: 0.52, 2400: 0.53}, train_steps=5)
    assert last_third_gain(rising) == pytest.approx(100 * (0.53 - 0.50))   # 1600 = 2/3 of 2400
    uneven = curve({800: 0.4, 1500: 0.5, 2400: 0.6})                       # the last at or before 2/3: 1500
    assert last_third_gain(uneven) == pytest.approx(100 * (0.6 - 0.5))
    assert math.isnan(last_third_gain(curve({2400: 0.5})))                   # one validation: no gain
    assert math.isnan(last_third_gain(curve({2000: 0.5, 2400: 0.6})))        # none at or before 2/3
    assert math.isnan(last_third_gain(pd.DataFrame()))
    line = describe_plateau('hungarian', {0: 0.4, 1: 1.2})
    assert '+0.8' in line and 'a plateau' in line and '0: +0.4, 1: +1.2' in line
    assert 'still rising' in describe_plateau('hungarian', {0: 1.0})
    flat = describe_plateau('hungarian', {0: 0.0, 1: 0.0}, final_ap50=0.0)   # was called a plateau
    assert 'no plateau to read: it ends at 0.0 AP50' in flat and 'a plateau by' not in flat and '(< 1)' not in flat
    assert 'a plateau by' in describe_plateau('hungarian', {0: 0.0}, final_ap50=40.0)


def test_plan_sizes_from_the_spec_sd_without_runs(tmp_path, capsys):
    assert main(['plan', '--spec', str(spec(tmp_path, sd=4.55)), '--runs', str(tmp_path / 'none')]) == 0
    out = capsys.readouterr().out
    assert result(out)['seeds_needed'] == 16 and '(spec question.sd)' in out   # the figure


@pytest.mark.parametrize('question, message', [
    ({'margin': -1}, 'question.margin: -1 must be a number > 0'),
    ({'margin': 3, 'alpha': 0.7}, 'question.alpha: 0.7 must be in (0, 0.5)'),
    ({'margin': 3, 'baseline': 'influencer'}, "question.baseline: 'influencer' must be one of ['hungarian']"),
    ({'margin': 3, 'metrc': 'ap50'}, "unknown key 'metrc' (did you mean 'metric'?)"),
])
def test_a_bad_question_is_refused_naming_the_key(tmp_path, capsys, question, message):
    raw = yaml.safe_load((REPO / 'baselines' / 'smoke-native.yaml').read_text())
    raw['question'] = question
    path = tmp_path / 'spec.yaml'
    path.write_text(yaml.safe_dump(raw))
    assert main(['plan', '--spec', str(path)]) == 2
    assert message in capsys.readouterr().err


def test_plan_hides_a_study_s_interim_figures_until_its_runs_end(tmp_path, capsys):
    runs = tmp_path / 'runs'
    for seed in range(3):
        for arm, level in (('hungarian', 0.6), ('influencer', 0.55)):
            make_run(runs, arm, seed, level, experiment='pilot')
    make_run(runs, 'influencer', 3, 0.5, experiment='pilot', status='running')
    args = ['plan', '--spec', str(spec(tmp_path)), '--runs', str(runs)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert '1 run(s) of pilot still under way (pilot__influencer__s3)' in out and '--interim shows them' in out
    assert 'SD of the paired difference' not in out and 'last third' not in out
    assert result(out)['seeds_needed'] is None and result(out)['last_third_gain'] is None
    assert main(args + ['--interim']) == 0
    out = capsys.readouterr().out
    assert 'SD of the paired difference' in out and result(out)['seeds_needed'] is not None
    assert "INTERIM LOOK: the figures below are not the study's" in out and result(out)['under_way'] == 1


@pytest.mark.parametrize('timing', [{'train_s': 0.4, 'iters_trained': 0, 's_per_iter': None},
                                    {'train_s': 10.0}, None])
def test_a_record_without_a_usable_timing_estimates_nothing(tmp_path, capsys, timing):
    from harness.study import records
    runs = tmp_path / 'runs'
    good = make_run(runs, 'hungarian', 0, 0.6, experiment='pilot')
    bad = make_run(runs, 'influencer', 0, 0.55, experiment='pilot')
    records.RunRecord.load(bad).update(timing=timing)   # the runner writes s_per_iter null after a 0-iteration session
    assert main(['plan', '--spec', str(spec(tmp_path)), '--runs', str(runs)]) == 0
    s_per_iter = json.loads((good / 'run.json').read_text())['timing']['s_per_iter']
    iters = yaml.safe_load((REPO / 'baselines' / 'smoke-native.yaml').read_text())['config']['train']['iters']
    assert result(capsys.readouterr().out)['hours_to_do'] == pytest.approx(22 * s_per_iter * iters / 3600, abs=1e-3)


@pytest.mark.parametrize('axis, text', [
    ({'config': 'model.decoder.n_inst', 'values': [8, 10 ** 12]},
     'ablations.axes.a (value 1000000000000) config.model.decoder.n_inst: 1000000000000 must be an integer in'),
    ({'config': 'model.decoder.d_model', 'values': [30]},
     'ablations.axes.a (value 30) config.model.decoder.d_model 30 is not divisible by n_heads'),
    ({'config': 'model.decoder.n_instt', 'values': [8]}, 'ablations.axes.a'),
])
def test_plan_refuses_a_config_ablation_value_run_would_refuse(tmp_path, capsys, axis, text):
    """A native config axis's values are checked with the spec, not first when run derives the point."""
    path = spec(tmp_path)
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, 'ablations': {'axes': {'a': axis}}}))
    assert main(['plan', '--spec', str(path), '--runs', str(tmp_path / 'runs')]) == 2
    out = capsys.readouterr()
    assert text in out.err and 'runs (' not in out.out


def test_plan_says_its_states_are_the_records_and_names_a_missing_runs_folder(tmp_path, capsys):
    """plan derives nothing: a finished record of an older spec shows as finished, which status --spec
    (deriving) calls refused; a mistyped --runs showed every run as to run without a word."""
    path = spec(tmp_path)
    assert main(['plan', '--spec', str(path), '--runs', str(tmp_path / 'runz')]) == 0
    out = capsys.readouterr().out
    assert f'note: --runs {tmp_path / "runz"} does not exist (yet)' in out and 'states are the records' not in out
    make_run(tmp_path / 'runs', 'hungarian', 0, 0.6, experiment='pilot')
    assert main(['plan', '--spec', str(path), '--runs', str(tmp_path / 'runs')]) == 0
    out = capsys.readouterr().out
    assert f"states are the records' own: `python -m harness status --spec {path} --runs {tmp_path / 'runs'}`" in out
    assert 'does not exist' not in out
