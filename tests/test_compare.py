"""compare: tables and plots are a pure function of the run records; what is counted, and why not."""
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.cli import main
from harness.core.errors import HarnessError
from harness.study import records

from runs_factory import CONFIG, make_run

GOLDEN = Path(__file__).parent / 'golden'


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / 'runs'
    for seed in (0, 1, 2):
        make_run(root, 'hungarian', seed, 0.55)
        make_run(root, 'influencer', seed, 0.50)
    make_run(root, 'influencer', 3, 0.5, status='failed')
    make_run(root, 'hungarian', 4, 0.5, metrics=False)
    return root


def compare(runs, out, *extra):
    return main(['compare', '--runs', str(runs), '--out', str(out),
                 '--published', str(Path(__file__).parents[1] / 'baselines' / 'published.yaml'), *extra])


def check_golden(request, path: Path, name: str):
    golden = GOLDEN / name
    if request.config.getoption('--update-golden'):
        golden.write_text(path.read_text())
    assert path.read_text() == golden.read_text(), f'{name} changed; rerun with --update-golden if intended'


def test_tables_match_golden_and_exclude_unfinished(runs, tmp_path, request):
    out = tmp_path / 'results'
    assert compare(runs, out) == 0
    md = (out / 'comparison.md').read_text()
    assert '| hungarian | assignment-based | 3 | 4 |' in md and '| influencer | assignment-free | 3 | 4 (1 failed) |' in md
    for line in ('s3dis-area5__influencer__s3 attempt 1: failed (CUDA out of memory)',
                 's3dis-area5__hungarian__s4 attempt 1: finished but no metrics.json'):
        assert line in md
    assert '| OneFormer3D (published) | | – | – | 80.6 | 72.7 | – | 58.0 |' in md
    assert 'best on Area 5 (as upstream selects; test-set selection): hungarian | | 3 |' in md
    check_golden(request, out / 'comparison.md', 'comparison.md')
    check_golden(request, out / 'per_class.md', 'per_class.md')
    check_golden(request, out / 'comparison.csv', 'comparison.csv')


def test_best_on_area5_is_the_best_validation_point_not_the_last(runs, tmp_path):
    assert compare(runs, tmp_path / 'out') == 0
    csv = (tmp_path / 'out' / 'comparison.csv').read_text().splitlines()
    best = [line for line in csv if line.startswith('best on Area 5 (as upstream selects; test-set selection): hungarian')]
    # the factory logs AP50 = level + 0.1 at step 20 and 0.05 less at step 40: the best is step 20
    assert best and ',0.65,' in best[0]


def test_plots_are_written_and_re_rendered_from_records_only(runs, tmp_path):
    out = tmp_path / 'results'
    assert compare(runs, out) == 0
    for name in ('ap_bars', 'per_class', 'curves', 'timing'):
        for ext in ('png', 'svg'):
            assert (out / 'plots' / f'{name}.{ext}').stat().st_size > 5000
    first = (out / 'comparison.md').read_text()
    plots = {p.name: p.read_bytes() for p in (out / 'plots').iterdir()}
    (out / 'plots' / 'ap_bars.png').unlink()
    assert compare(runs, out) == 0  # nothing retrained: records only
    assert (out / 'plots' / 'ap_bars.png').exists() and (out / 'comparison.md').read_text() == first
    # the same bytes: a re-render of unchanged records changes no file in git (no SVG date or random ids)
    assert {p.name: p.read_bytes() for p in (out / 'plots').iterdir()} == plots
    assert not list(out.glob('.staging-*'))


def test_single_seed_says_n_too_small(tmp_path):
    root = tmp_path / 'runs'
    make_run(root, 'hungarian', 0, 0.5)
    make_run(root, 'influencer', 0, 0.5)
    assert compare(root, tmp_path / 'out') == 0
    assert 'n too small (1 paired seed; an interval needs 3)' in (tmp_path / 'out' / 'comparison.md').read_text()


def test_three_seed_interval_is_wider_than_the_range_of_differences(runs, tmp_path):
    assert compare(runs, tmp_path / 'out') == 0
    import pandas as pd
    table = pd.read_csv(tmp_path / 'out' / 'comparison.csv')
    deltas = table[table['kind'] == 'delta']
    assert len(deltas) == 4
    for r in deltas.itertuples():
        diffs = [float(d) for d in r.values.split()]
        assert r.ci_low < min(diffs) and r.ci_high > max(diffs), r


def test_a_forced_second_attempt_is_listed_never_averaged(runs, tmp_path):
    make_run(runs, 'influencer', 0, 0.95)   # attempt 2 of a finished run: a much better number
    assert compare(runs, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert 's3dis-area5__influencer__s0 attempt 2: extra attempt, not counted (the first finished attempt, 1, counts)' in md
    assert '| influencer | assignment-free | 3 | 5 (1 failed) |' in md and '95.' not in md.split('## Per seed')[1].split('##')[0]


def test_runs_of_another_setting_are_not_included_and_say_which_keys(runs, tmp_path):
    other = json.loads(json.dumps(CONFIG))
    other['train']['lr'] = 2e-3
    make_run(runs, 'influencer', 5, 0.9, config=other)
    assert compare(runs, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert "s3dis-area5__influencer__s5 attempt 1: another setting than the experiment's other runs " \
           "(differs in train.lr)" in md


def test_an_arm_with_a_second_key_is_compared_and_its_key_named(runs, tmp_path):
    # influencer-anchored also sets model.decoder.query_init (criteria.yaml's _second_keys): that key is
    # part of the arm, not another setting, so its runs are counted and the key is named
    for seed in (0, 1, 2):
        make_run(runs, 'influencer-anchored', seed, 0.45)
    assert compare(runs, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert '| influencer-anchored | assignment-free | 3 | 3 |' in md and 'influencer-anchored__s0 attempt 1: another setting' not in md
    assert 'influencer-anchored: model.criterion.inst_criterion, model.decoder.query_init' in md
    assert 'influencer: model.criterion.inst_criterion;' in md


def test_a_run_that_sets_a_second_key_without_declaring_it_is_another_setting(runs, tmp_path):
    for seed in (0, 1, 2):   # an arm declares the key: it is still checked in every other arm's runs
        make_run(runs, 'influencer-anchored', seed, 0.45)
    seeded = json.loads(json.dumps(CONFIG))
    seeded['model']['decoder']['query_init'] = 'seeded'   # on an arm that does not declare the key
    make_run(runs, 'influencer', 5, 0.9, config=seeded)
    assert compare(runs, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert "s3dis-area5__influencer__s5 attempt 1: another setting than the experiment's other runs " \
           "(differs in model.decoder.query_init)" in md


def test_two_settings_of_equal_size_are_an_error(tmp_path, capsys):
    root = tmp_path / 'runs'
    other = json.loads(json.dumps(CONFIG))
    other['model']['decoder']['n_inst'] = 64
    make_run(root, 'hungarian', 0, 0.5)
    make_run(root, 'hungarian', 1, 0.5, config=other)
    assert compare(root, tmp_path / 'out') == 2
    assert 'differ in model.decoder.n_inst' in capsys.readouterr().err


def test_dirty_tree_runs_are_marked(tmp_path):
    root = tmp_path / 'runs'
    make_run(root, 'hungarian', 0, 0.5, dirty=True)
    make_run(root, 'influencer', 0, 0.5)
    assert compare(root, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert '| hungarian | assignment-based | 1† |' in md and '| hungarian | 0† |' in md and '| influencer | 0 |' in md


def test_experiments_are_never_mixed(runs, tmp_path, capsys):
    make_run(runs, 'hungarian', 0, 0.4, experiment='smoke-native')
    assert compare(runs, tmp_path / 'out') == 2
    assert "pick one with --experiment" in capsys.readouterr().err
    assert compare(runs, tmp_path / 'out', '--experiment', 'smoke-native') == 0
    assert 's3dis-area5' not in (tmp_path / 'out' / 'comparison.md').read_text()


def test_corrupt_record_is_a_clear_error(runs, tmp_path, capsys):
    bad = runs / 's3dis-area5__hungarian__s0' / 'run.json'
    bad.write_text('{"schema_version": 2, "run_id": ')
    assert compare(runs, tmp_path / 'out') == 2
    assert f'{bad}: unreadable run record' in capsys.readouterr().err


def test_outputs_are_replaced_as_a_set(runs, tmp_path, monkeypatch):
    """A failure while writing leaves the previous outputs, not a mix."""
    out = tmp_path / 'results'
    assert compare(runs, out) == 0
    before = {p: p.read_bytes() for p in out.rglob('*') if p.is_file()}
    make_run(runs, 'influencer', 6, 0.1)

    def broken(*args, **kwargs):
        raise OSError(28, 'No space left on device', str(out / 'plots'))
    monkeypatch.setattr('harness.reporting.plots.render_all', broken)
    assert compare(runs, out) == 2
    assert {p: p.read_bytes() for p in out.rglob('*') if p.is_file()} == before


def test_ablation_axes_get_tables_and_plots(tmp_path):
    root = tmp_path / 'runs'
    for seed in (0, 1, 2):
        make_run(root, 'hungarian', seed, 0.55)
        make_run(root, 'influencer', seed, 0.40)
        for t, level in ((0.1, 0.45), (0.5, 0.42)):
            make_run(root, 'influencer', seed, level, ablation={'criterion.temperature': t})
        make_run(root, 'hungarian', seed, 0.6, ablation={'config.model.decoder.n_inst': 64})
        make_run(root, 'influencer', seed, 0.5, ablation={'config.model.decoder.n_inst': 64})
    assert compare(root, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    section = md.split('## Ablations')[1]
    assert '### criterion.temperature' in section and '### config.model.decoder.n_inst' in section
    temp = section.split('### criterion.temperature')[1].split('###')[0]
    assert '| 1.0 |' in temp and '(3) *' in temp and '| reference |' in temp and '| 0.1 |' in temp
    assert (tmp_path / 'out' / 'plots' / 'ablation_criterion_temperature.png').exists()
    assert (tmp_path / 'out' / 'ablations.csv').exists()
    # the headline table holds the main runs only
    assert '| influencer | assignment-free | 3 | 3 |' in md


def test_record_schema_mismatch_says_what_to_do(tmp_path):
    folder = make_run(tmp_path / 'runs', 'hungarian', 0, 0.5)
    path = folder / 'run.json'
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, 'schema_version': 1}))
    with pytest.raises(Exception, match='schema 1, this harness reads 2; re-run into a new --runs folder'):
        records.load_record(path)


QUESTION = {'margin': 3.0, 'metric': 'ap50', 'alpha': 0.05, 'power': 0.8, 'sd': None, 'baseline': 'hungarian'}


def test_the_spec_question_gives_each_arm_a_noninferiority_verdict(tmp_path):
    """Per-seed AP50 set by hand: one arm close to the baseline, one far below it, one too noisy to tell."""
    runs = tmp_path / 'runs'
    ap50 = {'hungarian': [0.60, 0.55, 0.62, 0.58, 0.57],
            'entropic-ot': [0.60, 0.56, 0.61, 0.58, 0.57],     # within 1 point on every seed
            'influencer': [0.40, 0.36, 0.43, 0.37, 0.38],        # ~20 points below
            'influencer-excl': [0.70, 0.45, 0.66, 0.48, 0.59]}   # mean -0.8, SD ~10 points
    for arm, values in ap50.items():
        for seed, value in enumerate(values):
            folder = make_run(runs, arm, seed, 0.5, question=QUESTION)
            metrics = json.loads((folder / 'metrics.json').read_text())
            (folder / 'metrics.json').write_text(json.dumps({**metrics, 'ap50': value}))
    assert compare(runs, tmp_path / 'out') == 0
    table = pd.read_csv(tmp_path / 'out' / 'comparison.csv')
    rows = table[(table['kind'] == 'delta') & (table['metric'] == 'ap50')].set_index('row')
    verdict = rows['ni_verdict'].to_dict()
    assert verdict == {'influencer - hungarian': 'inferior', 'influencer-excl - hungarian': 'inconclusive',
                       'entropic-ot - hungarian': 'non-inferior'}
    assert (rows['ni_margin'] == 0.03).all()
    diffs = np.array(ap50['entropic-ot']) - np.array(ap50['hungarian'])
    lower = diffs.mean() - stats.t.ppf(0.95, 4) * diffs.std(ddof=1) / np.sqrt(5)
    assert rows.loc['entropic-ot - hungarian', 'ni_lower'] == pytest.approx(lower)
    other = table[(table['kind'] == 'delta') & (table['metric'] != 'ap50')]
    assert other['ni_verdict'].isna().all()   # the decision is about the question's metric only
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert 'at most 3 AP50 points worse than hungarian' in md and '**non-inferior**' in md
    assert '3 arms tested against the same baseline' in md and 'at most 0.15 (Bonferroni' in md
    assert (tmp_path / 'out' / 'plots' / 'decision.png').exists()


def test_the_decision_plot_draws_the_bounds_the_verdict_reads(tmp_path, monkeypatch):
    from harness.reporting import plots
    drawn = {}
    monkeypatch.setattr(plots, 'save_figure', lambda fig, out, name: drawn.setdefault(name, fig) and [])
    summary = pd.DataFrame([{'row': 'pm3 - hungarian', 'kind': 'delta', 'metric': 'ap50', 'n': 3, 'mean': -0.02,
                             'values': '-0.0100 -0.0200 -0.0300', 'ni_lower': -0.0369, 'ni_upper': -0.0031,
                             'ni_verdict': 'inconclusive'},
                            {'row': 'pm3 - hungarian', 'kind': 'delta', 'metric': 'ap25', 'n': 3, 'mean': 0.5,
                             'values': '0.5 0.5 0.5', 'ni_lower': float('nan'), 'ni_upper': float('nan'),
                             'ni_verdict': None}])
    question = {'margin': 3.0, 'metric': 'ap50', 'alpha': 0.05, 'baseline': 'hungarian'}
    plots.decision(summary, question, tmp_path)
    ax = drawn['decision'].axes[0]
    xs = [tuple(np.round(line.get_xdata(), 4)) for line in ax.lines]
    assert (-3.69, -0.31) in xs and (-2.0,) in xs and (-3.0, -3.0) in xs   # bounds, mean, -margin
    assert sorted(np.round(ax.collections[0].get_offsets()[:, 0], 4)) == [-3.0, -2.0, -1.0]   # one dot a seed
    assert [t.get_text() for t in ax.get_yticklabels()] == ['pm3 - hungarian']   # the question's metric only
    assert plots.decision(summary, None, tmp_path) == []
    assert 'INTERIM' not in ax.get_title()
    drawn.clear()
    plots.decision(summary, question, tmp_path, interim=True)
    assert drawn['decision'].axes[0].get_title().startswith('INTERIM LOOK')


def test_runs_that_recorded_different_questions_get_no_decision(tmp_path):
    runs = tmp_path / 'runs'
    for seed in range(3):
        make_run(runs, 'hungarian', seed, 0.6, question=QUESTION)
        make_run(runs, 'influencer', seed, 0.5, question={**QUESTION, 'margin': 10.0})
    assert compare(runs, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert 'No decision: the runs recorded different questions' in md


def test_renamed_arms_show_their_current_name_and_family(tmp_path):
    """Runs recorded as influencer-ot (before the rename) are the assignment-based entropic-ot arm."""
    runs = tmp_path / 'runs'
    for seed in range(3):
        make_run(runs, 'hungarian', seed, 0.6)
        make_run(runs, 'influencer-ot', seed, 0.55)
    assert compare(runs, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert '| entropic-ot | assignment-based | 3 | 3 |' in md and '| entropic-ot - hungarian |' in md
    assert 'influencer-ot' not in md.split('## Per seed')[0]   # only run ids keep the recorded name


def test_out_holds_one_experiments_complete_set(tmp_path, capsys):
    """Experiment B rendered into A's --out: A's ablation table and plots go, nothing else does."""
    a, b, out = tmp_path / 'a', tmp_path / 'b', tmp_path / 'out'
    for seed in (0, 1):
        make_run(a, 'hungarian', seed, 0.55, experiment='exp-a')
        make_run(a, 'influencer', seed, 0.5, experiment='exp-a', ablation={'criterion.temperature': 0.1})
        make_run(a, 'influencer', seed, 0.5, experiment='exp-a')
        make_run(b, 'hungarian', seed, 0.5, experiment='exp-b')
        make_run(b, 'influencer', seed, 0.45, experiment='exp-b')
    assert compare(a, out) == 0
    assert (out / 'ablations.csv').exists() and (out / 'plots' / 'ablation_criterion_temperature.png').exists()
    (out / 'notes.md').write_text('mine')   # not compare's: never touched
    assert compare(b, out) == 0
    assert not (out / 'ablations.csv').exists() and not (out / 'plots' / 'ablation_criterion_temperature.png').exists()
    assert (out / 'comparison.md').read_text().startswith('# exp-b:') and (out / 'notes.md').read_text() == 'mine'
    assert json.loads((out / '.compare.json').read_text())['experiment'] == 'exp-b'
    assert 'ablations.csv' in capsys.readouterr().out   # the RESULT line lists what was removed


def test_data_is_matched_by_content_hash_when_every_run_has_one(tmp_path):
    """The same rooms generated twice (another manifest file) are one setting; a run without a content
    hash (from before) makes the experiment compare by manifest hash, as it always did."""
    root = tmp_path / 'runs'
    for seed, manifest in ((0, '1'), (1, '2')):
        for arm in ('hungarian', 'influencer'):
            folder = make_run(root, arm, seed, 0.5)
            records.RunRecord.load(folder).update(data={'root': 'x', 'manifest_sha256': manifest * 64,
                                                        'content_sha256': 'c' * 64})
    assert compare(root, tmp_path / 'out') == 0
    assert '| hungarian | assignment-based | 2 |' in (tmp_path / 'out' / 'comparison.md').read_text()
    old = make_run(root, 'hungarian', 2, 0.5)   # manifest '1' * 64 only: the experiment compares by manifest
    records.RunRecord.load(old).update(data={'root': 'x', 'manifest_sha256': '1' * 64})
    assert compare(root, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert 'differs in <data manifest>' in md or 'differ in <data manifest>' in md


def _commit(repo: Path, path: str, text: str) -> str:
    import subprocess
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(text)
    git = ['git', '-C', str(repo), '-c', 'user.name=t', '-c', 'user.email=t@t']
    subprocess.run([*git, 'add', '-A'], check=True)
    subprocess.run([*git, 'commit', '-qm', path], check=True)
    return subprocess.run([*git, 'rev-parse', 'HEAD'], check=True, capture_output=True, text=True).stdout.strip()


def test_code_identity_is_equal_across_commits_that_change_no_result_code(tmp_path):
    import subprocess
    from harness.core.env import code_identity, result_paths
    subprocess.run(['git', 'init', '-q', str(tmp_path)], check=True)
    paths = result_paths('native')
    for path in paths:
        _commit(tmp_path, path if path.endswith('.py') else f'{path}/x.py', 'a = 1\n')
    first = _commit(tmp_path, 'harness/verbs/plan.py', 'print(1)\n')
    docs = _commit(tmp_path, 'docs/a.md', 'words\n')
    other_backend = _commit(tmp_path, 'harness/backends/upstream/x.py', 'b = 1\n')
    criterion = _commit(tmp_path, 'influencerformer/x.py', 'a = 2\n')
    ids = [code_identity(sha, paths, checkout=tmp_path) for sha in (first, docs, other_backend, criterion)]
    assert ids[0] is not None and ids[0] == ids[1] == ids[2] and ids[3] != ids[2]
    assert code_identity('0' * 40, paths, checkout=tmp_path) is None and code_identity(None, paths) is None
    assert result_paths('../x') is None and code_identity('--help', paths, checkout=tmp_path) is None


def test_runs_of_two_commits_pool_only_when_their_result_code_is_the_same(tmp_path, monkeypatch):
    """A study spanning sessions has runs at several commits: pooled where the result code is the same
    (here: a stand-in identity per commit), listed apart where it differs or cannot be read."""
    from harness.core import env
    same = {'a' * 40: 'code-1', 'b' * 40: 'code-1', 'c' * 40: 'code-2'}
    monkeypatch.setattr(env, 'code_identity', lambda sha, paths: same.get(sha))
    env.result_code.cache_clear()
    root = tmp_path / 'runs'
    for seed, sha in ((0, 'a'), (1, 'a'), (2, 'b'), (3, 'c')):
        for arm in ('hungarian', 'influencer'):
            folder = make_run(root, arm, seed, 0.5)
            record = json.loads((folder / 'run.json').read_text())
            records.RunRecord.load(folder).update(env={**record['env'], 'harness_git': {'sha': sha * 40, 'dirty': False}})
    try:
        assert compare(root, tmp_path / 'out') == 0
    finally:
        env.result_code.cache_clear()
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert '| hungarian | assignment-based | 3 |' in md
    assert 's3dis-area5__hungarian__s3 attempt 1: another setting' in md and '<harness code>' in md


def test_the_runner_refuses_to_train_runs_that_compare_would_not_pool(tmp_path, monkeypatch, capsys):
    """A study spanning sessions: new or resumed runs need the result code of its finished runs (a
    stand-in identity per commit); a commit with the same code, another experiment or nothing to
    train passes; a commit with other code, or one git cannot read here, is refused before training."""
    from types import SimpleNamespace
    from harness.core import env
    from harness.study.planning import same_code
    codes = {'a' * 40: 'code-1', 'b' * 40: 'code-1', 'c' * 40: 'code-2'}
    monkeypatch.setattr(env, 'code_identity', lambda sha, paths: codes.get(sha))
    env.result_code.cache_clear()
    root = tmp_path / 'runs'
    folder = make_run(root, 'hungarian', 0, 0.5)
    other = make_run(root, 'hungarian', 0, 0.5, experiment='other')
    record = json.loads((folder / 'run.json').read_text())
    new, done = [SimpleNamespace(action='new', folder=None)], [SimpleNamespace(action='done', folder=folder)]
    options = SimpleNamespace(runs=root)

    def check(recorded: str, now: str, plans=new, experiment='s3dis-area5') -> str:
        records.RunRecord.load(folder).update(env={**record['env'], 'harness_git': {'sha': recorded, 'dirty': False}})
        monkeypatch.setattr(env, 'harness_sha', lambda: now)
        try:
            same_code(plans, options, experiment, 'native')
        except HarnessError as err:
            return str(err)
        finally:
            env.result_code.cache_clear()
        return ''
    try:
        assert check('a' * 40, 'b' * 40) == ''                       # another commit, the same result code
        assert check('a' * 40, 'c' * 40, plans=done) == ''           # nothing to train: nothing to refuse
        assert check('a' * 40, 'c' * 40, experiment='x') == ''       # no finished run of that experiment
        error = check('a' * 40, 'c' * 40)
        assert error.startswith(f'{folder}: trained at commit aaaaaaaaaaaa, whose result code (criteria')
        assert 'nothing was trained' in error and 'git worktree add <dir> aaaaaaaaaaaa' in error
        assert 'cannot be read here' in check('d' * 40, 'a' * 40)
        # the run resumed here counts though it is not finished
        records.RunRecord.load(folder).update(status='running')
        assert check('a' * 40, 'b' * 40, plans=[SimpleNamespace(action='resume', folder=folder)]) == ''
        assert 'differs' in check('a' * 40, 'c' * 40, plans=[SimpleNamespace(action='resume', folder=folder)])
        assert check('a' * 40, 'c' * 40) == ''                       # unfinished and not resumed here: not counted
    finally:
        env.result_code.cache_clear()
    assert other.exists()


def submit(runs: Path, experiment: str, *run_ids: str, when: str = '2026-01-01T00:00:00+00:00') -> None:
    """A Slurm submission's record of runs (as harness.execution.slurm writes it), none started."""
    folder = runs / '.submissions' / f'{experiment}-{when}'
    folder.mkdir(parents=True)
    (folder / 'submission.json').write_text(json.dumps({
        'experiment': experiment, 'submitted_at': when,
        'runs': [{'run_id': rid, 'job_id': f'7_{i}'} for i, rid in enumerate(run_ids)]}))


def test_a_study_under_way_is_compared_only_as_a_labelled_interim_look(runs, tmp_path, capsys):
    make_run(runs, 'hungarian', 3, 0.5, status='running')
    out = tmp_path / 'out'
    assert compare(runs, out) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: {runs}: 1 run(s) of s3dis-area5 still under way (s3dis-area5__hungarian__s3)')
    assert '--interim' in err and not out.exists()           # refused before anything was written
    assert compare(runs, out, '--interim') == 0
    md = (out / 'comparison.md').read_text()
    assert '**Interim look** (`--interim`): 1 run(s) of this study were still under way (s3dis-area5__hungarian__s3)' in md
    assert 's3dis-area5__hungarian__s3 attempt 1: running' in md   # and it is not counted
    assert '**Interim look**' in (out / 'per_class.md').read_text()
    assert json.loads((out / '.compare.json').read_text())['interim'] == ['s3dis-area5__hungarian__s3']
    assert json.loads(capsys.readouterr().out.splitlines()[-1].split(' ', 1)[1])['interim'] == 1


def test_runs_submitted_but_never_started_keep_the_study_under_way(runs, tmp_path, capsys):
    submit(runs, 's3dis-area5', 's3dis-area5__hungarian__s10', 's3dis-area5__hungarian__s5')
    submit(runs, 'other', 'other__hungarian__s0')             # another experiment's submission does not count
    assert compare(runs, tmp_path / 'out') == 2
    assert ('2 run(s) of s3dis-area5 still under way (s3dis-area5__hungarian__s5, s3dis-area5__hungarian__s10)'
            in capsys.readouterr().err)
    make_run(runs, 'hungarian', 5, 0.55)
    make_run(runs, 'hungarian', 10, 0.5, status='failed')    # a failed run has ended: compare lists it
    assert compare(runs, tmp_path / 'out') == 0


def test_diagnose_refuses_a_study_under_way(runs, tmp_path, capsys):
    make_run(runs, 'influencer', 4, 0.5, status='running')
    assert main(['diagnose', '--runs', str(runs), '--out', str(tmp_path / 'd')]) == 2
    assert 'still under way (s3dis-area5__influencer__s4)' in capsys.readouterr().err
    assert not (tmp_path / 'd').exists()


def test_ablation_values_get_their_paired_difference_from_the_arms_default(tmp_path):
    root = tmp_path / 'runs'
    ap50 = {}
    for seed in (0, 1, 2, 3):
        for key, ablation, level in (('main', None, 0.40), ('t0.1', {'criterion.temperature': 0.1}, 0.45)):
            folder = make_run(root, 'influencer', seed, level, ablation=ablation)
            ap50[key, seed] = json.loads((folder / 'metrics.json').read_text())['ap50']
        make_run(root, 'hungarian', seed, 0.55)
    make_run(root, 'influencer', 4, 0.45, ablation={'criterion.temperature': 0.1})   # no default at seed 4: unpaired
    assert compare(root, tmp_path / 'out') == 0
    table = pd.read_csv(tmp_path / 'out' / 'ablations.csv')
    row = table[(table['arm'] == 'influencer') & (table['label'] == '0.1')].iloc[0]
    diffs = np.array([ap50['t0.1', s] - ap50['main', s] for s in range(4)])
    half = stats.t.ppf(0.975, 3) * diffs.std(ddof=1) / 2
    assert row['n'] == 5 and row['n_paired'] == 4
    assert row['ap50_delta'] == pytest.approx(diffs.mean())
    assert (row['ap50_delta_ci_low'], row['ap50_delta_ci_high']) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    default = table[(table['arm'] == 'influencer') & table['default']].iloc[0]
    assert default['n_paired'] == 0 and np.isnan(default['ap50_delta'])
    md = (tmp_path / 'out' / 'comparison.md').read_text().split('### criterion.temperature')[1]
    assert (f"| 0.1 | {100 * diffs.mean():+.1f} [{100 * (diffs.mean() - half):+.1f}, "
            f"{100 * (diffs.mean() + half):+.1f}] (4) |") in md


def test_a_failed_run_sent_again_is_under_way_until_its_new_attempt_ends(runs, tmp_path, capsys):
    # the fixture's influencer s3 failed; a later submission sends it again (a failed run is retried)
    later = datetime.now(timezone.utc) + timedelta(minutes=1)
    submit(runs, 's3dis-area5', 's3dis-area5__influencer__s3', when=later.isoformat(timespec='seconds'))
    assert compare(runs, tmp_path / 'out') == 2
    assert 'still under way (s3dis-area5__influencer__s3)' in capsys.readouterr().err
    earlier = datetime.now(timezone.utc) - timedelta(days=1)   # sent before it failed: it has ended
    shutil.rmtree(runs / '.submissions')
    submit(runs, 's3dis-area5', 's3dis-area5__influencer__s3', when=earlier.isoformat(timespec='seconds'))
    assert compare(runs, tmp_path / 'out') == 0


def test_an_unreadable_submission_keeps_the_study_closed(runs, tmp_path, capsys):
    folder = runs / '.submissions' / 'torn'
    folder.mkdir(parents=True)
    (folder / 'submission.json').write_text('{"experiment": "s3dis-area5", "runs": [{"run_id": "s3dis-ar')
    assert compare(runs, tmp_path / 'out') == 2
    assert f'{folder / "submission.json"}: unreadable Slurm submission' in capsys.readouterr().err
    assert main(['status', '--runs', str(runs)]) == 0   # status shows what it can


def test_a_per_class_table_without_a_class_is_listed_not_counted(runs, tmp_path):
    path = runs / 's3dis-area5__influencer__s1' / 'metrics.json'
    metrics = json.loads(path.read_text())
    del metrics['per_class']['chair']
    path.write_text(json.dumps(metrics))
    assert compare(runs, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert 'metrics.json: per_class has not the 13 S3DIS classes (missing chair); re-evaluate' in md
    assert '| influencer | assignment-free | 2 |' in md   # two seeds counted


@pytest.mark.parametrize('content, message', [('', 'unreadable curves table (EmptyDataError'),
                                              ('phase,loss\ntrain,1.0\n', 'no step column')])
def test_a_broken_curves_table_is_named_before_anything_is_written(runs, tmp_path, capsys, content, message):
    path = runs / 's3dis-area5__influencer__s1' / 'curves.csv'
    path.write_text(content)
    assert compare(runs, tmp_path / 'out') == 2
    assert capsys.readouterr().err.startswith(f'error: {path}: {message}') and not (tmp_path / 'out').exists()


def _ap50_runs(runs, ap50: dict[str, dict[int, float]]):
    for arm, by_seed in ap50.items():
        for seed, value in by_seed.items():
            folder = make_run(runs, arm, seed, 0.5, question=QUESTION)
            metrics = json.loads((folder / 'metrics.json').read_text())
            (folder / 'metrics.json').write_text(json.dumps({**metrics, 'ap50': value}))


def test_a_staged_study_says_its_arm_means_cover_different_seeds_and_tests_only_what_it_can(tmp_path):
    """A stopped arm (seeds 0-2) beside a continuing one (0-5): arm means alone would rank them wrongly."""
    runs = tmp_path / 'runs'
    _ap50_runs(runs, {'hungarian': {s: 0.50 + 0.05 * s for s in range(6)},
                      'influencer': {s: 0.55 + 0.05 * s for s in range(3)},    # +5 on each shared seed
                      'pm3': {0: 0.5}})                                        # one seed: no test
    assert compare(runs, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert ('over different seeds (hungarian: 0-5; influencer: 0-2; pm3: 0): compare an arm with hungarian '
            'through the paired differences') in md
    decision = md.split('## Decision')[1].split('## Paired')[0]
    assert '| influencer - hungarian | 3 | +5.0 |' in decision and '**non-inferior**' in decision
    assert 'Not tested (fewer than 3 seeds shared with hungarian): pm3 (1).' in decision
    assert '1 arm tested against the baseline, at alpha 0.05.' in decision and 'Bonferroni' not in decision


@pytest.mark.parametrize('arms, reason', [
    ({'hungarian'}, 'no counted run of an arm besides the baseline hungarian'),
    ({'influencer'}, 'no counted run of the baseline hungarian, which each arm is compared with'),
])
def test_a_question_with_nothing_to_compare_says_why(tmp_path, arms, reason):
    _ap50_runs(tmp_path / 'runs', {arm: {s: 0.5 for s in range(3)} for arm in arms})
    assert compare(tmp_path / 'runs', tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert f'No decision: {reason}.' in md and 'over different seeds' not in md and 'tested' not in md


def _runs_with(runs, rows: list[tuple[str, int, float, dict]]):
    """Runs of the question's study: (arm, seed, ap50, other metrics.json keys)."""
    for arm, seed, ap50, extra in rows:
        folder = make_run(runs, arm, seed, 0.5, question=QUESTION)
        metrics = json.loads((folder / 'metrics.json').read_text())
        (folder / 'metrics.json').write_text(json.dumps({**metrics, 'ap50': ap50, **extra}))


def test_an_arm_recorded_under_its_old_and_new_name_is_listed_never_counted_twice(tmp_path):
    """entropic-ot runs beside influencer-ot runs of the same seeds were 8 'seeds' of one arm: each seed paired
    with itself twice, and the per-seed column labelled 4 of the 8 differences wrongly."""
    runs = tmp_path / 'runs'
    _runs_with(runs, [(arm, s, level + 0.02 * s, {}) for s in range(4)
                      for arm, level in (('hungarian', 0.40), ('entropic-ot', 0.41), ('influencer-ot', 0.30))])
    assert compare(runs, tmp_path / 'out') == 0
    md = (tmp_path / 'out' / 'comparison.md').read_text()
    assert 'entropic-ot - hungarian' not in md.split('## Decision')[1].split('## Paired')[0].replace('Not tested', '')
    excluded = md.split('## Not included')[1]
    assert excluded.count('(an arm recorded under two names); neither counts') == 8
    assert 's3dis-area5__influencer-ot__s0 attempt 1: the same run (entropic-ot, seed 0) as ' \
        's3dis-area5__entropic-ot__s0' in excluded


def test_a_metric_some_records_lack_is_tested_on_the_seeds_that_have_it(tmp_path):
    """The instance-weighted AP50 on 2 of 4 seeds gave a sign-flip p of 0 (every comparison with NaN false)."""
    runs = tmp_path / 'runs'
    _runs_with(runs, [(arm, s, base + 0.02 * s, {'ap50_instance_weighted': base + 0.021 * s} if s < 2 else {})
                      for s in range(4) for arm, base in (('hungarian', 0.40), ('influencer', 0.39))])
    assert compare(runs, tmp_path / 'out') == 0
    table = pd.read_csv(tmp_path / 'out' / 'comparison.csv')
    row = table[(table['kind'] == 'delta') & (table['metric'] == 'ap50w')].iloc[0]
    assert row['n'] == 2 and str(row['seeds']) == '0 1' and np.isnan(row['p_signflip'])


def test_per_seed_differences_are_rounded_once(tmp_path):
    """+2.346 points showed as +2.4: the difference was rounded to 4 decimals of a fraction, then to 1 of a point."""
    runs = tmp_path / 'runs'
    _runs_with(runs, [('hungarian', 0, 0.40, {}), ('influencer', 0, 0.42346, {}), ('hungarian', 1, 0.45, {}),
                      ('influencer', 1, 0.46, {}), ('hungarian', 2, 0.50, {}), ('influencer', 2, 0.52, {})])
    assert compare(runs, tmp_path / 'out') == 0
    assert 's0 +2.3, s1 +1.0, s2 +2.0' in (tmp_path / 'out' / 'comparison.md').read_text()


def test_the_family_wise_threshold_is_never_rounded_up():
    """'below 0.017' for 0.05/3 = 0.01667: a p of 0.0168 read as holding family-wise."""
    from harness.reporting.markdown import multiplicity
    assert 'below 0.05/3 = 0.01666 also holds' in multiplicity(3, 0.05)
    assert 'below 0.05/4 = 0.0125 also holds' in multiplicity(4, 0.05)
