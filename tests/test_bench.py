"""python -m harness bench criterion | eval: run end to end on tiny shapes."""
import csv
import json

import pytest
import torch
from influencerformer import registry

from harness.cli import main
from harness.core.errors import HarnessError


def bench(tmp_path, *extra):
    return main(['bench', 'criterion', '--points', '400', '--gts', '3', '--repeats', '2',
                 '--warmup', '0', '--out', str(tmp_path), *extra])


def test_writes_csv_with_ratio_and_result_line(tmp_path, capsys):
    assert bench(tmp_path) == 0
    rows = list(csv.DictReader((tmp_path / 'criterion-cpu.csv').open()))
    assert [r['criterion'] for r in rows] == [e.arm for e in registry.CRITERIA]   # hungarian's first
    assert all(float(r['median_ms']) > 0 for r in rows)
    for row in rows[1:]:
        ratio = float(row['median_ms']) / float(rows[0]['median_ms'])
        assert abs(float(row['ratio_vs_hungarian']) - ratio) < 1e-2
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith('RESULT {"verb": "bench criterion", "status": "ok"')


def test_never_overwrites_without_force(tmp_path, capsys):
    (tmp_path / 'criterion-cpu.csv').write_text('mine\n')
    assert bench(tmp_path) == 2
    assert 'criterion-cpu.csv exists; pass --force' in capsys.readouterr().err
    assert (tmp_path / 'criterion-cpu.csv').read_text() == 'mine\n'


def test_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        return
    assert bench(tmp_path, '--device', 'cuda') == 2
    assert 'torch.cuda.is_available() is False' in capsys.readouterr().err


def test_bench_eval_writes_csv(tmp_path, capsys):
    args = ['bench', 'eval', '--rooms', '2', '--preds', '10', '--points', '5000', '--out', str(tmp_path)]
    assert main(args) == 0
    rows = list(csv.DictReader((tmp_path / 'eval-s3dis-like.csv').open()))
    assert [r['evaluator'] for r in rows] == ['harness'] and float(rows[0]['points_per_s']) > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('RESULT {"verb": "bench eval"')
    assert main(args) == 2  # never overwrites without --force


def test_bench_data_writes_csv(tmp_path, capsys):
    args = ['bench', 'data', '--rooms-per-area', '1', '--points-per-room', '2000', '--workers', '1',
            '--out', str(tmp_path)]
    assert main(args) == 0
    rows = list(csv.DictReader((tmp_path / 'data.csv').open()))
    assert rows[0]['tool'] == 'harness' and int(rows[0]['rooms']) == 6 and float(rows[0]['points_per_s']) > 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith('RESULT {"verb": "bench data"')


def test_bench_native_times_this_code_against_a_commit(tmp_path, capsys):
    """Both trees train the smoke config in fresh processes; the CSV has one row per process, the ratio is printed."""
    spec = tmp_path / 'spec.yaml'
    import yaml
    from harness.core.paths import REPO
    raw = yaml.safe_load((REPO / 'baselines' / 'smoke-native.yaml').read_text())
    raw['data']['root'] = str(tmp_path / 'data')
    spec.write_text(yaml.safe_dump(raw))
    out = tmp_path / 'native.csv'
    assert main(['bench', 'native', '--spec', str(spec), '--baseline', 'HEAD', '--repeats', '1', '--warmup', '1',
                 '--iters', '2', '--out', str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r['tree'] for r in rows] == ['baseline HEAD', 'this code']
    from harness.core import cpu
    pinned = cpu.unpinnable({}) is None
    assert all(float(r['s_per_iter']) > 0 and (r['capability'] == 'AVX2' or not pinned) for r in rows)
    assert 'speed-up (baseline / this)' in capsys.readouterr().out


@pytest.mark.parametrize('args, message', [
    (['bench', 'criterion', '--repeats', '0'], 'argument --repeats: must be an integer >= 1 (got 0)'),
    (['bench', 'criterion', '--points', '0'], 'argument --points: must be an integer >= 1 (got 0)'),
    (['bench', 'criterion', '--warmup', '-1'], 'argument --warmup: must be an integer >= 0 (got -1)'),
    (['bench', 'eval', '--rooms', '-2'], 'argument --rooms: must be an integer >= 1 (got -2)'),
    (['bench', 'eval', '--preds', 'x'], "argument --preds: must be an integer >= 1 (got 'x')"),
    (['bench', 'eval', '--seed', '-1'], 'argument --seed: must be an integer >= 0 (got -1); numpy seeds'),
    (['bench', 'data', '--points-per-room', '-5'], 'argument --points-per-room: must be an integer >= 1'),
    (['subset', '--src', 'x', '--out', 'y', '--seed', '-1'], 'argument --seed: must be an integer >= 0'),
    (['bench', 'data', '--workers', '0'], 'argument --workers: must be an integer >= 1 (got 0)'),
    (['bench', 'native', '--repeats', '0'], 'argument --repeats: must be an integer >= 1 (got 0)'),
    (['bench', 'native', '--iters', '0'], 'argument --iters: must be an integer >= 1 (got 0)'),
    (['bench', 'native', '--warmup', '-2'], 'argument --warmup: must be an integer >= 0 (got -2)'),
])
def test_counts_and_seeds_are_bounded_before_any_work(tmp_path, capsys, args, message):
    """These gave a traceback (median of no data, a negative dimension) or a CSV of nonsense (-2 rooms)."""
    with pytest.raises(SystemExit) as stop:   # argparse's usage line and exit 2
        main(args + (['--out', str(tmp_path / 'o')] if args[0] == 'bench' else []))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and 'Traceback' not in err, err
    assert not (tmp_path / 'o').exists()


def never(*args, **kwargs):
    raise AssertionError('timed before the output path was checked')


@pytest.mark.parametrize('verb, timed', [('criterion', 'harness.bench.criterion.ProcessPoolExecutor'),
                                         ('eval', 'harness.bench.eval.evaluate_instances'),
                                         ('data', 'harness.data.synth.generate')])
def test_an_out_that_cannot_take_the_csv_is_refused_before_the_timing(tmp_path, capsys, monkeypatch, verb, timed):
    """--out naming a file was reported only after minutes of timing (bench data: 6M raw points)."""
    monkeypatch.setattr(timed, never)
    (tmp_path / 'afile').write_text('mine\n')
    assert main(['bench', verb, '--out', str(tmp_path / 'afile')]) == 2
    assert 'cannot write there' in capsys.readouterr().err
    assert (tmp_path / 'afile').read_text() == 'mine\n'


@pytest.mark.parametrize('args, timed, message', [
    (['bench', 'eval', '--upstream-root', '/nonexistent'], 'harness.bench.eval.evaluate_instances',
     '/nonexistent: no oneformer3d/instance_seg_eval.py'),
    (['bench', 'data', '--mmdet3d-root', '/nonexistent'], 'harness.data.synth.generate',
     '/nonexistent: not a mmdetection3d checkout'),
    (['bench', 'criterion', '--points', '5', '--gts', '20'], 'harness.bench.criterion.ProcessPoolExecutor',
     '--gts 20 > --points 5: each GT needs a point of its own'),
])
def test_a_bad_reference_or_shape_is_refused_before_the_timing(tmp_path, capsys, monkeypatch, args, timed, message):
    """A missing checkout was found after our side had been timed; --gts > --points was a worker traceback."""
    monkeypatch.setattr(timed, never)
    assert main(args + ['--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err
    assert message in err and 'Traceback' not in err


def test_bench_data_counts_the_points_it_timed(tmp_path, capsys):
    """The CSV counted rooms x --points-per-room; synth gives each instance at least 30 points (7.5x more here)."""
    import numpy as np
    from harness.data.synth import generate
    generate(tmp_path / 'same', 1, seed=0, points_per_room=100)
    made = sum(len(np.fromfile(f, np.float32)) // 6 for f in (tmp_path / 'same' / 'points').glob('*.bin'))
    assert made > 600
    assert main(['bench', 'data', '--rooms-per-area', '1', '--points-per-room', '100', '--workers', '1',
                 '--out', str(tmp_path / 'o')]) == 0
    row = next(csv.DictReader((tmp_path / 'o' / 'data.csv').open()))
    assert int(row['points']) == made and int(row['workers']) == 1


def native_spec(tmp_path):
    import yaml
    from harness.core.paths import REPO
    raw = yaml.safe_load((REPO / 'baselines' / 'smoke-native.yaml').read_text())
    raw['data']['root'] = str(tmp_path / 'data')
    (tmp_path / 'spec.yaml').write_text(yaml.safe_dump(raw))
    return tmp_path / 'spec.yaml'


def test_a_mistyped_baseline_is_refused_before_any_data_is_made(tmp_path, capsys):
    assert main(['bench', 'native', '--spec', str(native_spec(tmp_path)), '--baseline', 'no-such-commit',
                 '--out', str(tmp_path / 'n.csv')]) == 2
    assert '--baseline no-such-commit: not a commit of' in capsys.readouterr().err
    assert not (tmp_path / 'data').exists()


def test_a_refused_arm_leaves_no_worktree_of_the_baseline(tmp_path, capsys):
    import subprocess
    from harness.core.paths import REPO
    before = subprocess.run(['git', '-C', str(REPO), 'worktree', 'list'], capture_output=True, text=True).stdout
    assert main(['bench', 'native', '--spec', str(native_spec(tmp_path)), '--baseline', 'HEAD', '--arm', 'pm3',
                 '--out', str(tmp_path / 'n.csv')]) == 2
    assert '--arm pm3: not an arm of' in capsys.readouterr().err
    assert subprocess.run(['git', '-C', str(REPO), 'worktree', 'list'], capture_output=True, text=True).stdout == before


def test_a_profile_longer_than_the_spec_s_rooms_is_refused_before_it_runs(tmp_path, capsys):
    """It ended in the profiler's IndexError: 2 rooms per step, 2 warm-up steps."""
    assert main(['bench', 'native', '--spec', str(native_spec(tmp_path)), '--profile', str(tmp_path / 'p.txt'),
                 '--iters', '3']) == 2
    err = capsys.readouterr().err
    assert f"--iters 3: the profile needs 10 training rooms (2 per step and 2 warm-up steps); {tmp_path / 'data'} " \
        'has 5 in' in err and 'profile a spec with more rooms' in err and not (tmp_path / 'p.txt').exists()
    from harness.bench.native import check_profile_rooms
    config = tmp_path / 'c.json'
    config.write_text(json.dumps({'data': {'root': str(tmp_path / 'data'), 'train_areas': [1, 2, 3, 4, 5, 6]}}))
    with pytest.raises(HarnessError, match='has 6 in .*: give --iters 1 or fewer'):
        check_profile_rooms(config, 2, tmp_path / 'spec.yaml')
    check_profile_rooms(config, 1, tmp_path / 'spec.yaml')   # 6 rooms: one step and the warm-up


def test_the_commit_column_marks_uncommitted_code_but_not_results_or_docs(tmp_path):
    """Times of uncommitted code were labelled with the bare commit they were not made from."""
    import subprocess
    from harness.bench.native import _commit

    def git(*args):
        subprocess.run(['git', '-C', str(tmp_path), '-c', 'user.email=a@b', '-c', 'user.name=n', *args],
                       check=True, capture_output=True)
    for name in ('harness/x.py', 'docs/a.md', 'results/r.csv'):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text('1\n')
    git('init', '-q')
    git('add', '.')
    git('commit', '-qm', 'c')
    sha = _commit(tmp_path)
    assert sha is not None and len(sha) == 12
    (tmp_path / 'docs' / 'a.md').write_text('2\n')
    (tmp_path / 'results' / 'r.csv').write_text('2\n')
    assert _commit(tmp_path) == sha
    (tmp_path / 'harness' / 'x.py').write_text('2\n')
    assert _commit(tmp_path) == f'{sha}+dirty'
