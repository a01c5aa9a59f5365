"""Run records: stable ids, attempts that never overwrite, sessions, locks, clear errors."""
import json
import re
import os
import subprocess
import sys

import pytest

from harness.core.errors import HarnessError
from harness.study.locks import lock, process_started
from harness.study.records import (SCHEMA_VERSION, RunRecord, attempts, folder_of, load_metrics, load_record,
                                   load_runs, next_folder, run_id, unstarted, write_config)


def new_attempt(runs, rid: str, arm: str = 'a', seed: int = 0, backend: str = 'native'):
    """The folder of a new attempt's record (status running, no session yet)."""
    return RunRecord.create(runs, rid, experiment=rid.split('__')[0], arm=arm, seed=seed, ablation={},
                            backend=backend).folder


def test_run_id_is_stable_and_hashes_ablations():
    assert run_id('s3dis-area5', 'influencer', 0) == 's3dis-area5__influencer__s0'
    a = run_id('x', 'influencer', 1, {'temperature': 0.1, 'rep_margin': 1.0})
    assert a == run_id('x', 'influencer', 1, {'rep_margin': 1.0, 'temperature': 0.1})
    assert a != run_id('x', 'influencer', 1, {'rep_margin': 1.0, 'temperature': 0.2})
    assert a.startswith('x__influencer__s1__') and len(a.split('__')[-1]) == 8


def test_attempts_never_overwrite_each_other(tmp_path):
    first = new_attempt(tmp_path, 'exp__hungarian__s0', arm='hungarian')
    record = load_record(first / 'run.json')
    assert record['status'] == 'running' and record['schema_version'] == SCHEMA_VERSION and record['attempt'] == 1
    assert record['env']['versions']['torch'] and record['checkpoint']['evaluated'] == 'last'
    RunRecord.load(first).finish()
    second = new_attempt(tmp_path, 'exp__hungarian__s0', arm='hungarian')
    assert second.name == 'exp__hungarian__s0.attempt2' and load_record(first / 'run.json')['status'] == 'finished'
    assert attempts(tmp_path, 'exp__hungarian__s0') == [first, second]
    assert [r['attempt'] for r in load_runs(tmp_path)] == [1, 2]


def test_wall_time_sums_sessions_and_excludes_downtime(tmp_path):
    record = RunRecord.load(new_attempt(tmp_path, 'e__a__s0'))
    record.begin_session()
    sessions = record['sessions']
    sessions[-1].update(started_unix=sessions[-1]['started_unix'] - 5)   # 5 s of work...
    record.update(sessions=sessions)
    record.finish(status='failed', error='killed')
    again = RunRecord.load(record.folder)
    again.begin_session()   # ...an hour of downtime would not count: only sessions do
    again.finish()
    done = load_record(record.folder / 'run.json')
    assert len(done['sessions']) == 2 and 5 <= done['wall_s'] < 6


def test_failed_run_keeps_its_error(tmp_path):
    folder = new_attempt(tmp_path, 'e__i__s2', arm='i', seed=2, backend='upstream')
    RunRecord.load(folder).finish(status='failed', error='RuntimeError: boom')
    record = load_record(folder / 'run.json')
    assert record['status'] == 'failed' and record['error'] == 'RuntimeError: boom'
    with pytest.raises(ValueError):
        RunRecord.load(folder).finish(status='running')


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


def test_a_folder_without_run_json_is_no_attempt_and_is_reused(tmp_path):
    """A full disk (or a kill) right after making the folder leaves it empty: reused, never counted."""
    rid = 'e__hungarian__s0'
    (tmp_path / rid).mkdir()
    (tmp_path / rid / '.run.json.x.tmp').write_text('')   # what a failed atomic write can leave
    assert attempts(tmp_path, rid) == [] and next_folder(tmp_path, rid) == tmp_path / rid
    folder = new_attempt(tmp_path, rid, arm='hungarian')
    assert folder == tmp_path / rid and load_record(folder / 'run.json')['attempt'] == 1
    (tmp_path / f'{rid}.attempt2').mkdir()
    (tmp_path / f'{rid}.attempt2' / 'notes.txt').write_text('mine')
    with pytest.raises(HarnessError, match=r'attempt2: holds \[.notes.txt.\] but no run.json'):
        next_folder(tmp_path, rid)


def test_an_unstarted_record_is_replaced_a_started_one_never(tmp_path):
    rid = 'e__hungarian__s0'
    folder = new_attempt(tmp_path, rid, arm='hungarian')
    assert unstarted(load_record(folder / 'run.json'))   # crashed before its config was recorded
    again = RunRecord.create(tmp_path, rid, folder, experiment='e', arm='hungarian', seed=0, ablation={},
                             backend='native')
    again.update(config=write_config(folder, {'a': 1}))
    assert not unstarted(load_record(folder / 'run.json'))
    with pytest.raises(HarnessError, match='never written over'):
        RunRecord.create(tmp_path, rid, folder, experiment='e', arm='hungarian', seed=0, ablation={},
                         backend='native')


def test_a_killed_session_counts_up_to_its_last_written_file(tmp_path):
    folder = new_attempt(tmp_path, 'e__a__s0', arm='a')
    record = RunRecord.load(folder)
    record.begin_session()
    start = record['sessions'][-1]['started_unix']
    again = RunRecord.load(folder)   # the first process was killed: no end recorded
    again.begin_session(last_activity=start + 13)
    killed = again['sessions'][0]
    assert killed['interrupted'] and killed['seconds'] == 13 and 'seconds_from' in killed
    again.finish()
    assert again['wall_s'] >= 13


def test_a_lock_whose_pid_now_names_another_process_is_stale(tmp_path, capsys):
    other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])
    try:
        started = process_started(other.pid)
        assert started and started == process_started(other.pid)
        (tmp_path / '.lock').write_text(json.dumps({'host': os.uname().nodename, 'pid': other.pid,
                                                    'pid_started': started}))
        with pytest.raises(HarnessError, match=f'being trained by pid {other.pid}'):
            with lock(tmp_path):
                pass
        (tmp_path / '.lock').write_text(json.dumps({'host': os.uname().nodename, 'pid': other.pid,
                                                    'pid_started': 'an earlier boot:7'}))
        with lock(tmp_path):
            pass
        assert 'now another process' in capsys.readouterr().out
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize('change, text', [
    ({'seed': 'zero'}, "seed 'zero' is not an integer seed"),
    ({'arm': 7}, 'arm 7 is not an arm name'),
    ({'experiment': ['x']}, "experiment ['x'] is not an experiment name"),
    ({'ablation': {'temperature': 1}}, "has key 'temperature'"),
    ({'wall_s': 'long'}, "wall_s 'long' is not a number of seconds"),
])
def test_records_with_wrong_fields_are_named_and_listed_by_load_runs(tmp_path, change, text):
    folder = new_attempt(tmp_path, 'e__a__s0', arm='a')
    record = json.loads((folder / 'run.json').read_text())
    (folder / 'run.json').write_text(json.dumps({**record, **change}))
    with pytest.raises(HarnessError, match=re.escape(text)):
        load_record(folder / 'run.json')
    skipped = []
    assert load_runs(tmp_path, skipped) == [] and text in skipped[0][1]


@pytest.mark.parametrize('change, text', [
    ({'ap50': 57.3}, 'ap50 57.3 is outside [0, 1]'),
    ({'ap': float('nan')}, 'ap nan is not a number'),
    ({'per_class': {'chair': {'ap': 0.1, 'ap50': 2, 'ap25': 0.3, 'ap75': None}}}, 'per_class.chair.ap50 2 is outside'),
    ({'per_class': {'chair': [1]}}, 'per_class.chair [1] is not a mapping'),
])
def test_metrics_out_of_range_are_named(tmp_path, change, text):
    metrics = {'ap': 0.1, 'ap50': 0.2, 'ap25': 0.3, 'ap75': None,
               'per_class': {'chair': {'ap': 0.1, 'ap50': 0.2, 'ap25': 0.3, 'ap75': None}}}
    (tmp_path / 'metrics.json').write_text(json.dumps({**metrics, **change}))
    with pytest.raises(HarnessError, match=re.escape(text)):
        load_metrics(tmp_path)
    (tmp_path / 'metrics.json').write_text(json.dumps(metrics))
    assert load_metrics(tmp_path) == metrics
