"""`make smoke`'s study (baselines/smoke-native.yaml) keeps every config hash, diff and metric.

A refactor must not change what a run trains or how it is scored: this runs
the real smoke spec (three arms, 20 iterations, one thread) and compares each
run's config sha256, config diff and every AP figure with
tests/golden/smoke-records.json. Timings and places are left out. The golden
file changes only through ``pytest --update-golden`` (review the diff): the
numbers are bitwise only for the same CPU kernels, which the native backend
pins (docs/native-backend.md).
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.cli import main
from harness.core.paths import BASELINES
from harness.study import records

GOLDEN = Path(__file__).parent / 'golden' / 'smoke-records.json'
METRICS = ('ap', 'ap50', 'ap25', 'ap75', 'per_class')


def summary(runs: Path) -> dict:
    """run id -> config sha256, diff and the AP figures, from the records."""
    out = {}
    for record in records.load_runs(runs):
        metrics = records.load_metrics(Path(record['_dir']))
        out[record['run_id']] = {'config_sha256': record['config']['sha256'], 'config_diff': record['config_diff'],
                                 **{k: metrics[k] for k in METRICS}}
    return out


def test_smoke_study_keeps_hashes_diffs_and_metrics(tmp_path, request, monkeypatch):
    monkeypatch.chdir(tmp_path)   # data/smoke-native is generated here, as on a fresh clone
    assert main(['run', '--spec', str(BASELINES / 'smoke-native.yaml'), '--runs', 'runs',
                 '--work-dirs', 'work_dirs']) == 0
    got = summary(tmp_path / 'runs')
    if request.config.getoption('--update-golden'):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + '\n')
    want = json.loads(GOLDEN.read_text())
    assert sorted(got) == sorted(want)
    for rid in want:
        for key, value in want[rid].items():
            assert got[rid][key] == value, f'{rid}: {key} changed'
