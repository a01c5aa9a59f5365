"""compare: tables and plots are a pure function of the run records."""
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.reporting.compare import paired_bootstrap

from runs_factory import make_run

GOLDEN = Path(__file__).parent / 'golden'


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / 'runs'
    for seed in (0, 1, 2):
        make_run(root, 'hungarian', seed, 0.55)
        make_run(root, 'influencer', seed, 0.50)
    make_run(root, 'influencer', 3, 0.5, status='failed')
    make_run(root, 'hungarian', 3, 0.5, status='running')
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
    assert '| hungarian | 3 |' in md and '| influencer | 3 |' in md
    for line in ('s3dis-area5__influencer__s3 attempt 1: failed (CUDA out of memory)',
                 's3dis-area5__hungarian__s3 attempt 1: running',
                 's3dis-area5__hungarian__s4 attempt 1: finished but no metrics.json'):
        assert line in md
    assert '| OneFormer3D (published) | – | 80.6 | 72.7 | – | 58.0 |' in md
    check_golden(request, out / 'comparison.md', 'comparison.md')
    check_golden(request, out / 'per_class.md', 'per_class.md')
    check_golden(request, out / 'comparison.csv', 'comparison.csv')


def test_plots_are_written_and_re_rendered_from_records_only(runs, tmp_path):
    out = tmp_path / 'results'
    assert compare(runs, out) == 0
    names = {'ap_bars', 'per_class', 'curves', 'timing'}
    for name in names:
        for ext in ('png', 'svg'):
            assert (out / 'plots' / f'{name}.{ext}').stat().st_size > 5000
    first = (out / 'comparison.md').read_text()
    (out / 'plots' / 'ap_bars.png').unlink()
    assert compare(runs, out) == 0  # nothing retrained: records only
    assert (out / 'plots' / 'ap_bars.png').exists() and (out / 'comparison.md').read_text() == first


def test_single_seed_has_no_ci(tmp_path):
    root = tmp_path / 'runs'
    make_run(root, 'hungarian', 0, 0.5)
    make_run(root, 'influencer', 0, 0.5)
    assert compare(root, tmp_path / 'out') == 0
    assert 'CI n/a (1 seed)' in (tmp_path / 'out' / 'comparison.md').read_text()


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    diffs = np.random.default_rng(0).normal(0.01, 0.02, 12)
    a, b = paired_bootstrap(diffs, 5000, 0), paired_bootstrap(diffs, 5000, 0)
    assert a == b and a[0] <= diffs.mean() <= a[1]
    assert paired_bootstrap(diffs, 5000, 1) != a


def test_experiments_are_never_mixed(runs, tmp_path, capsys):
    make_run(runs, 'hungarian', 0, 0.4, experiment='smoke-native')
    assert compare(runs, tmp_path / 'out') == 2
    assert "pick one with --experiment" in capsys.readouterr().err
    assert compare(runs, tmp_path / 'out', '--experiment', 'smoke-native') == 0
    assert 's3dis-area5' not in (tmp_path / 'out' / 'comparison.md').read_text()


def test_corrupt_record_is_a_clear_error(runs, tmp_path, capsys):
    bad = runs / 's3dis-area5__hungarian__s0' / 'run.json'
    bad.write_text('{"schema_version": 1, "run_id": ')
    assert compare(runs, tmp_path / 'out') == 2
    assert f'{bad}: unreadable run record' in capsys.readouterr().err
