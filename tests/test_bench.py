"""python -m harness bench criterion | eval: run end to end on tiny shapes."""
import csv

import pytest
import torch
from influencerformer import registry

from harness.cli import main


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
])
def test_counts_and_seeds_are_bounded_before_any_work(tmp_path, capsys, args, message):
    """These gave a traceback (median of no data, a negative dimension) or a CSV of nonsense (-2 rooms)."""
    with pytest.raises(SystemExit) as stop:   # argparse's usage line and exit 2
        main(args + (['--out', str(tmp_path / 'o')] if args[0] == 'bench' else []))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and 'Traceback' not in err, err
    assert not (tmp_path / 'o').exists()
