"""Run records: stable ids, resume / skip / new attempt, atomic updates, clear errors."""
import json

import pytest

from harness.core.errors import HarnessError
from harness.study.records import (SCHEMA_VERSION, finish_run, load_record, load_runs, run_id, start_run,
                             update_record)


def test_run_id_is_stable_and_hashes_ablations():
    assert run_id('s3dis-area5', 'influencer', 0) == 's3dis-area5__influencer__s0'
    a = run_id('x', 'influencer', 1, {'temperature': 0.1, 'rep_margin': 1.0})
    assert a == run_id('x', 'influencer', 1, {'rep_margin': 1.0, 'temperature': 0.1})
    assert a != run_id('x', 'influencer', 1, {'rep_margin': 1.0, 'temperature': 0.2})
    assert a.startswith('x__influencer__s1__') and len(a.split('__')[-1]) == 8


def test_lifecycle_new_resume_done_and_forced_attempt(tmp_path):
    folder, action = start_run(tmp_path, 'exp', 'hungarian', 0, backend='native', config={'path': 'a.py'})
    assert action == 'new'
    record = load_record(folder / 'run.json')
    assert record['status'] == 'running' and record['schema_version'] == SCHEMA_VERSION
    assert record['env']['versions']['torch'] and record['checkpoint']['evaluated'] == 'last'
    assert start_run(tmp_path, 'exp', 'hungarian', 0, backend='native')[1] == 'resume'
    finish_run(folder, iterations=10)
    assert load_record(folder / 'run.json')['wall_s'] >= 0
    assert start_run(tmp_path, 'exp', 'hungarian', 0, backend='native') == (folder, 'done')
    again, action = start_run(tmp_path, 'exp', 'hungarian', 0, backend='native', force=True)
    assert action == 'new' and again.name == 'exp__hungarian__s0.attempt2'
    assert load_record(folder / 'run.json')['status'] == 'finished'  # old attempt untouched
    assert [r['attempt'] for r in load_runs(tmp_path)] == [1, 2]


def test_failed_run_keeps_its_error(tmp_path):
    folder, _ = start_run(tmp_path, 'exp', 'influencer', 2, backend='upstream')
    finish_run(folder, status='failed', error='RuntimeError: boom')
    record = load_record(folder / 'run.json')
    assert record['status'] == 'failed' and record['error'] == 'RuntimeError: boom'
    with pytest.raises(ValueError):
        finish_run(folder, status='running')


@pytest.mark.parametrize('content, message', [
    ('{not json', 'unreadable run record'),
    (json.dumps({'schema_version': 99}), 'schema 99, this harness reads 1'),
    (json.dumps({'schema_version': 1, 'run_id': 'x'}), 'corrupt run record'),
])
def test_bad_records_name_the_file(tmp_path, content, message):
    path = tmp_path / 'r' / 'run.json'
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(HarnessError, match=message) as err:
        load_record(path)
    assert str(path) in str(err.value)


def test_update_is_atomic_and_merges(tmp_path):
    folder, _ = start_run(tmp_path, 'exp', 'hungarian', 0, backend='native')
    update_record(folder, iterations=5)
    assert load_record(folder / 'run.json')['iterations'] == 5
    assert sorted(p.name for p in folder.iterdir()) == ['run.json']
