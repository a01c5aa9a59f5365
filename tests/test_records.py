"""Run records: stable ids, attempts that never overwrite, sessions, locks, clear errors."""
import json
import re
import os
import subprocess
import sys

import pytest

from harness.core.errors import HarnessError
from harness.study.records import (SCHEMA_VERSION, attempts, begin_session, finish_run, folder_of, load_record,
                                   load_runs, lock, new_attempt, run_id, update_record, write_config)


def test_run_id_is_stable_and_hashes_ablations():
    assert run_id('s3dis-area5', 'influencer', 0) == 's3dis-area5__influencer__s0'
    a = run_id('x', 'influencer', 1, {'temperature': 0.1, 'rep_margin': 1.0})
    assert a == run_id('x', 'influencer', 1, {'rep_margin': 1.0, 'temperature': 0.1})
    assert a != run_id('x', 'influencer', 1, {'rep_margin': 1.0, 'temperature': 0.2})
    assert a.startswith('x__influencer__s1__') and len(a.split('__')[-1]) == 8


def test_attempts_never_overwrite_each_other(tmp_path):
    first = new_attempt(tmp_path, 'exp__hungarian__s0', experiment='exp', arm='hungarian', seed=0, ablation={},
                        backend='native')
    record = load_record(first / 'run.json')
    assert record['status'] == 'running' and record['schema_version'] == SCHEMA_VERSION and record['attempt'] == 1
    assert record['env']['versions']['torch'] and record['checkpoint']['evaluated'] == 'last'
    finish_run(first)
    second = new_attempt(tmp_path, 'exp__hungarian__s0', experiment='exp', arm='hungarian', seed=0, ablation={},
                         backend='native')
    assert second.name == 'exp__hungarian__s0.attempt2' and load_record(first / 'run.json')['status'] == 'finished'
    assert attempts(tmp_path, 'exp__hungarian__s0') == [first, second]
    assert [r['attempt'] for r in load_runs(tmp_path)] == [1, 2]


def test_wall_time_sums_sessions_and_excludes_downtime(tmp_path):
    folder = new_attempt(tmp_path, 'e__a__s0', experiment='e', arm='a', seed=0, ablation={}, backend='native')
    record = begin_session(folder)
    record['sessions'][-1].update(started_unix=record['sessions'][-1]['started_unix'] - 5)   # 5 s of work...
    update_record(folder, sessions=record['sessions'])
    finish_run(folder, status='failed', error='killed')
    begin_session(folder)   # ...an hour of downtime would not count: only sessions do
    done = finish_run(folder)
    assert len(done['sessions']) == 2 and 5 <= done['wall_s'] < 6


def test_failed_run_keeps_its_error(tmp_path):
    folder = new_attempt(tmp_path, 'e__i__s2', experiment='e', arm='i', seed=2, ablation={}, backend='upstream')
    finish_run(folder, status='failed', error='RuntimeError: boom')
    record = load_record(folder / 'run.json')
    assert record['status'] == 'failed' and record['error'] == 'RuntimeError: boom'
    with pytest.raises(ValueError):
        finish_run(folder, status='running')


@pytest.mark.parametrize('content, message', [
    ('{not json', 'unreadable run record'),
    ('[]', 'not a run record (a JSON list, expected an object)'),
    (json.dumps({'schema_version': 99}), 'schema 99, this harness reads 2'),
    (json.dumps({'schema_version': 2, 'run_id': 'x'}), 'corrupt run record'),
])
def test_bad_records_name_the_file(tmp_path, content, message):
    path = tmp_path / 'r' / 'run.json'
    path.parent.mkdir()
    path.write_text(content)
    with pytest.raises(HarnessError, match=re.escape(message)) as err:
        load_record(path)
    assert str(path) in str(err.value)


def test_config_hash_ignores_key_order(tmp_path):
    assert write_config(tmp_path, {'a': 1, 'b': {'c': 2}})['sha256'] == write_config(tmp_path, {'b': {'c': 2}, 'a': 1})['sha256']


def test_a_run_folder_never_leaves_the_runs_folder(tmp_path):
    with pytest.raises(HarnessError, match='outside'):
        folder_of(tmp_path, '../escape')


def test_lock_refuses_a_live_holder_and_takes_over_a_stale_one(tmp_path, capsys):
    folder = tmp_path / 'run'
    folder.mkdir()
    sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])
    try:
        (folder / '.lock').write_text(json.dumps({'host': os.uname().nodename, 'pid': sleeper.pid, 'since': 'x'}))
        with pytest.raises(HarnessError, match=f'being trained by pid {sleeper.pid}'):
            with lock(folder):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with lock(folder):   # the holder is gone now: stale, taken over
        assert json.loads((folder / '.lock').read_text())['pid'] == os.getpid()
    assert 'stale lock' in capsys.readouterr().out and not (folder / '.lock').exists()
