"""The fault suite's second round (issue #24): data checked not trusted, schema bounds, records
validated on read, compare owning its --out, concurrency and crashes, errors by cause.

Registered into tests/fault_world.py's CASES; tests/test_faults.py runs them with the same
assertions as the first round (exit code, the text, no traceback, results unchanged).
"""
from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from data_helpers import harness
from fault_world import Env, case, config, record_path, spec_change

from harness.core import io as harness_io
from harness.backends.native.backend import NativeBackend
from harness.data import reader
from harness.study.locks import process_started

RID = 'smoke-native__hungarian__s0'


def room_arrays(env: Env, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """points float32 (N, 6), semantic int64 (N,), instance int64 (N,) of one prepared room."""
    d = env.data
    return (np.fromfile(d / 'points' / f'{name}.bin', '<f4').reshape(-1, 6),
            np.fromfile(d / 'semantic_mask' / f'{name}.bin', '<i8'),
            np.fromfile(d / 'instance_mask' / f'{name}.bin', '<i8'))


def write_array(env: Env, sub: str, name: str, values: np.ndarray) -> None:
    """Overwrite one file of a room with ``values``' bytes, whatever their dtype."""
    (env.data / sub / f'{name}.bin').write_bytes(np.ascontiguousarray(values).tobytes())


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def sleeper(env: Env) -> subprocess.Popen:
    """A live process of another program (its pid stands for a lock holder)."""
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    before = env.cleanup

    def stop() -> None:
        holder.kill()
        holder.wait()
        before()
    env.cleanup = stop
    return holder


# ---- spec: bounds that mean something, strict YAML --------------------------------------------

BOUND_CASES = {
    'seeds above 2**32': (spec_change(seeds=[10 ** 30]), 'is above 2**32 - 1'),
    'iters 10**20': (config('train.iters', 10 ** 20), 'config.train.iters: 100000000000000000000 must be an integer '
                                                       'in 1..100,000,000'),
    'queries 10**12': (config('model.decoder.n_inst', 10 ** 12), 'n_inst: 1000000000000 must be an integer in '
                                                                  '1..10,000'),
    'threads 10**6': (spec_change(threads=10 ** 6), 'threads: 1000000 must be an integer in 1..1,024'),
    'ablation queries 10**12': (spec_change(ablations={'axes': {'q': {'config': 'model.decoder.n_inst',
                                                                      'values': [10 ** 12]}}}),
                                'n_inst: 1000000000000 must be an integer in 1..10,000'),
    # the data fixes these: S3DIS's 13 classes, xyz + rgb per point; and a number is finite
    'num_classes 20': (config('model.num_classes', 20), 'config.model.num_classes: 20 must be 13'),
    'n_sem 5': (config('model.decoder.n_sem', 5), 'config.model.decoder.n_sem: 5 must be 13'),
    'in_channels 3': (config('model.backbone.in_channels', 3), 'config.model.backbone.in_channels: 3 must be 6'),
    'lr inf': (config('train.lr', float('inf')), 'config.train.lr: inf must be a finite number > 0'),
    'num_points 10**12': (lambda s: s['data'].update(num_points=10 ** 12),
                          'data.num_points: 1000000000000 must be an integer in 1..10,000,000'),
}

for _name, (_change, _text) in BOUND_CASES.items():
    case(f'spec: {_name}')(lambda env, c=_change, t=_text: (env.run(env.spec(c, 'bad.yaml')), 2, t))


@case('spec: a key given twice')
def _(env):
    path = env.spec(name='twice.yaml')
    path.write_text(path.read_text() + 'seeds: [1]\n')
    return env.run(path), 2, "key 'seeds' given twice"


@case('spec: a key that is not a name')
def _(env):
    path = env.spec(name='number.yaml')
    path.write_text(path.read_text() + '1: x\n')
    return env.run(path), 2, 'key 1 is not a name'


# ---- data: checked, not trusted ---------------------------------------------------------------

def _n(env, name: str) -> int:
    return len(room_arrays(env, name)[2])


def _ids_zero(env, mixed: bool):
    name = env.room(5)
    _, sem, inst = room_arrays(env, name)
    write_array(env, 'instance_mask', name, np.zeros_like(inst))
    if not mixed:
        write_array(env, 'semantic_mask', name, np.full_like(sem, 8))
    return name


@case('data: instance id 0 throughout a test room of one class')
def _(env):
    name = _ids_zero(env, mixed=False)
    return env.run(None, '--force'), 2, f'instance_mask/{name}.bin: {_n(env, name)} points with instance id 0'


@case('evaluate: instance id 0 throughout a test room of one class')
def _(env):
    name = _ids_zero(env, mixed=False)
    return (['evaluate', env.predictions(), '--data', env.data, '--area', '5'], 2,
            f'instance_mask/{name}.bin: {_n(env, name)} points with instance id 0')


@case('data: instance id 0 with mixed labels in a test room')
def _(env):
    name = _ids_zero(env, mixed=True)
    return env.run(None, '--force'), 2, f'instance_mask/{name}.bin: {_n(env, name)} points with instance id 0'


def _bad_points(env, area: int, row: int, col: int, value: float) -> str:
    name = env.room(area)
    points = room_arrays(env, name)[0]
    points[row, col] = value
    write_array(env, 'points', name, points)
    return name


def _colours(env, area: int, value: float) -> str:
    """A colour of ``value`` in a room of ``area``; the text the checks must print, with the file."""
    name = _bad_points(env, area, 0, 4, value)
    low = room_arrays(env, name)[0][:, 3:6].min()
    return f'points/{name}.bin: colours {low:g}..{value:g} outside 0..255'


@case('data: NaN coordinates in a training room are bad data, not divergence')
def _(env):
    name = _bad_points(env, 1, 7, 0, np.nan)
    return env.run(None, '--force'), 2, f'points/{name}.bin: 1 points with NaN or infinite values (first at row 7)'


@case('data: NaN coordinates fail verify-data')
def _(env):
    name = _bad_points(env, 1, 7, 0, np.nan)
    return ['verify-data', env.data], 1, f'points/{name}.bin: 1 points with NaN or infinite values'


@case('data: inf coordinates in a test room')
def _(env):
    name = _bad_points(env, 5, 3, 2, np.inf)
    return env.run(None, '--force'), 2, f'points/{name}.bin: 1 points with NaN or infinite values'


@case('data: colours above 255 (run)')
def _(env):
    return env.run(None, '--force'), 2, _colours(env, 5, 300.0)


@case('data: colours above 255 (verify-data)')
def _(env):
    return ['verify-data', env.data], 1, _colours(env, 2, 256.0)


@case('data: semantic_mask stored as float64')
def _(env):
    name = env.room(5)
    write_array(env, 'semantic_mask', name, room_arrays(env, name)[1].astype(np.float64))
    return env.run(None, '--force'), 2, f'semantic_mask/{name}.bin: labels'


@case('data: an unreadable room file')
def _(env):
    name = env.room(2)
    real = reader._memmap

    def refuse(path, dtype, row):
        if path.stem == name and path.parent.name == 'points':
            raise PermissionError(errno.EACCES, 'Permission denied', str(path))
        return real(path, dtype, row)
    env.patch(reader, '_memmap', refuse)
    return env.run(None, '--force'), 2, f'points/{name}.bin: unreadable (Permission denied)'


@case('data: a room on disk but not in the manifest (run)')
def _(env):
    name = env.room(5)
    for sub in ('points', 'semantic_mask', 'instance_mask'):
        shutil.copy(env.data / sub / f'{name}.bin', env.data / sub / 'Area_5_extra_1.bin')
    return env.run(None, '--force'), 2, 'points/Area_5_extra_1.bin: on disk but not in'


@case('data: a room on disk but not in the manifest (verify-data)')
def _(env):
    name = env.room(3)
    for sub in ('points', 'semantic_mask', 'instance_mask'):
        shutil.copy(env.data / sub / f'{name}.bin', env.data / sub / 'Area_3_extra_1.bin')
    return ['verify-data', env.data], 1, 'instance_mask/Area_3_extra_1.bin: on disk but not in'


@case('evaluate: a manifest room without files')
def _(env):
    name = env.room(5)
    preds = env.predictions()
    edit_json(env.data / 'MANIFEST.json', lambda m: m['rooms'].update({'Area_5_ghost_1': m['rooms'][name]}))
    return (['evaluate', preds, '--data', env.data, '--area', '5'], 2,
            'points/Area_5_ghost_1.bin: listed in MANIFEST.json but missing')


@case('data: a manifest room entry that is a string')
def _(env):
    name = env.room(4)
    edit_json(env.data / 'MANIFEST.json', lambda m: m['rooms'].update({name: 'x'}))
    return env.run(None, '--force'), 2, f"MANIFEST.json: rooms.{name}: 'x' is not a mapping"


@case('data: the same rooms generated again are the same data')
def _(env):
    edit_json(env.data / 'MANIFEST.json', lambda m: m.update(created_at='2031-01-01T00:00:00+00:00'))
    return env.run(), 0, f'{RID}: done (already finished)'


@case('data: an older record (MANIFEST.json hash only) is matched as before')
def _(env):
    edit_json(record_path(env, 'hungarian'), lambda r: r['data'].pop('content_sha256'))
    edit_json(env.data / 'MANIFEST.json', lambda m: m.update(created_at='2031-01-01T00:00:00+00:00'))
    return env.run(None, '--arms', 'hungarian'), 2, 'trained on other data (manifest_sha256'


# ---- records: validated on read, listed, never averaged --------------------------------------

def _compare_counts_hungarian_only(env) -> bool:
    with open(env.root / 'out' / 'comparison.csv') as f:
        return [r['row'] for r in csv.DictReader(f) if r['kind'] == 'arm'] == ['hungarian']


RECORD_CASES = {
    'run.json seed "zero"': (lambda r: r.update(seed='zero'), "seed 'zero' is not an integer seed"),
    'run.json arm 7': (lambda r: r.update(arm=7), 'arm 7 is not an arm name'),
    'run.json experiment not a name': (lambda r: r.update(experiment=['x']), "experiment ['x'] is not an experiment"),
    'run.json ablation key without a dot': (lambda r: r.update(ablation={'temperature': 1}),
                                            "has key 'temperature', not criterion.<key>"),
}
METRICS_CASES = {
    'metrics.json ap50 in percent': (lambda m: m.update(ap50=57.3), 'ap50 57.3 is outside [0, 1]'),
    'metrics.json ap50 not a number': (lambda m: m.update(ap50='high'), "ap50 'high' is not a number"),
    'metrics.json per_class empty': (lambda m: m.update(per_class=[]), 'per_class [] is not a mapping'),
}


def _bad_file(env, path: Path, change, text: str):
    edit_json(path, change)
    env.after = lambda: _compare_counts_hungarian_only(env)
    return ['compare', '--runs', env.runs, '--out', env.root / 'out'], 0, text


for _name, (_change, _text) in RECORD_CASES.items():
    case(f'records: {_name} is listed, not counted')(
        lambda env, c=_change, t=_text: _bad_file(env, record_path(env), c, t))
for _name, (_change, _text) in METRICS_CASES.items():
    case(f'records: {_name} is listed, not counted')(
        lambda env, c=_change, t=_text: _bad_file(env, record_path(env).parent / 'metrics.json', c, t))


# bytes that are not UTF-8 (a disk error, a copy through the wrong encoding): the same one line as "not JSON"
@case('records: run.json not UTF-8')
def _(env):
    record_path(env).write_bytes(record_path(env).read_bytes() + b'\xff')
    return ['status', '--runs', env.runs], 2, 'unreadable run record'


@case('records: metrics.json not UTF-8 is listed, not averaged')
def _(env):
    (record_path(env).parent / 'metrics.json').write_bytes(b'\x00\xff\xfe')
    env.after = lambda: _compare_counts_hungarian_only(env)
    return ['compare', '--runs', env.runs, '--out', env.root / 'out'], 0, 'metrics.json: not JSON'


@case('data: MANIFEST.json not UTF-8')
def _(env):
    (env.data / 'MANIFEST.json').write_bytes(b'\xff' + (env.data / 'MANIFEST.json').read_bytes())
    return env.run(), 2, 'MANIFEST.json: not JSON'


@case('records: a run without git is marked commit unknown, not clean')
def _(env):
    for arm in ('hungarian', 'influencer'):   # both: one setting (a known and an unknown commit would differ)
        edit_json(record_path(env, arm), lambda r: r['env'].update(harness_git={'sha': None, 'dirty': None}))
    return ['compare', '--runs', env.runs, '--out', env.root / 'out'], 0, 'harness commit is unknown'


@case('compare: an empty runs folder')
def _(env):
    (env.root / 'empty').mkdir()
    return ['compare', '--runs', env.root / 'empty', '--out', env.root / 'out'], 2, 'no run records'


@case('compare: --published is a list')
def _(env):
    (env.root / 'pub.yaml').write_text('- a\n- b\n')
    return (['compare', '--runs', env.runs, '--out', env.root / 'out', '--published', env.root / 'pub.yaml'], 2,
            'pub.yaml: a mapping of experiment -> {label, source, metrics} expected, got list')


@case('compare: --published entry without metrics')
def _(env):
    (env.root / 'pub.yaml').write_text(yaml.safe_dump({'smoke-native': {'label': 'x', 'source': 'y'}}))
    return (['compare', '--runs', env.runs, '--out', env.root / 'out', '--published', env.root / 'pub.yaml'], 2,
            "pub.yaml: smoke-native: missing key(s) ['metrics']")


@case('compare: --published names a file that is not there')
def _(env):
    return (['compare', '--runs', env.runs, '--out', env.root / 'out', '--published', env.root / 'pubished.yaml'], 2,
            "pubished.yaml: no such file; give the published table's path")


@case('compare: --published names an experiment twice')
def _(env):
    entry = "  label: x\n  source: y\n  metrics: {ap50: 1.0}\n"
    (env.root / 'pub.yaml').write_text(f'smoke-native:\n{entry}smoke-native:\n{entry}')
    return (['compare', '--runs', env.runs, '--out', env.root / 'out', '--published', env.root / 'pub.yaml'], 2,
            "pub.yaml: unreadable published table (line 5: key 'smoke-native' given twice (lines 1 and 5); keep one); "
            'fix it or pass another --published')


@case("compare: another experiment's leftovers in --out are removed")
def _(env):
    out = env.root / 'out'
    assert harness('compare', '--runs', env.runs, '--out', out)[0] == 0
    stale = ['ablations.csv', 'plots/ablation_t.png']   # as a render of smoke-native with an ablation leaves them
    for rel in stale:
        (out / rel).write_text('old')
    edit_json(out / '.compare.json', lambda m: m['files'].extend(stale))
    other = env.root / 'other-runs'
    shutil.copytree(env.runs, other)
    for path in other.glob('*/run.json'):
        edit_json(path, lambda r: r.update(experiment='other'))
    env.after = lambda: (not any((out / rel).exists() for rel in stale)
                         and (out / 'comparison.md').read_text().startswith('# other:'))
    return ['compare', '--runs', other, '--out', out], 0, '"removed": ["ablations.csv", "plots/ablation_t.png"]'


@case("compare: --out holding another experiment's comparison (no list) is refused")
def _(env):
    out = env.root / 'out'
    out.mkdir()
    (out / 'comparison.md').write_text('# other: instance segmentation, last checkpoint\n')
    env.keep = [out / 'comparison.md']
    return ['compare', '--runs', env.runs, '--out', out], 2, "holds the comparison of experiment 'other'"


@case("compare: --out holding the user's own comparison.md and tables is refused, never overwritten")
def _(env):
    out = env.root / 'out'
    (out / 'plots').mkdir(parents=True)
    (out / 'comparison.md').write_text('my notes on the study\n')
    (out / 'per_class.csv').write_text('hand,made\n')
    (out / 'plots' / 'ap_bars.png').write_text('mine')
    env.keep = [out / 'comparison.md', out / 'per_class.csv', out / 'plots' / 'ap_bars.png']
    return (['compare', '--runs', env.runs, '--out', out], 2,
            'holds comparison.md, per_class.csv, plots/ that compare did not write')


# ---- errors said by their cause --------------------------------------------------------------

@case('errors: --work-dirs is a file')
def _(env):
    (env.root / 'wd').write_text('x')
    return ['run', '--spec', env.spec(), '--runs', env.runs, '--work-dirs', env.root / 'wd'], 2, 'a file, not a folder'


@case('errors: a name too long')
def _(env):
    return ['compare', '--runs', env.runs, '--out', env.root / ('x' * 300)], 2, 'name too long'


@case('errors: a file where a folder should be')
def _(env):
    (env.root / 'f').write_text('x')
    return (['run', '--spec', env.spec(), '--runs', env.root / 'f' / 'runs', '--work-dirs', env.root / 'w2',
             '--arms', 'hungarian'], 2, 'a part of this path is a file, not a folder')


@case('errors: a folder where a file should be')
def _(env):
    (env.root / 'm.json').mkdir()
    return (['evaluate', env.predictions(), '--data', env.data, '--out', env.root / 'm.json', '--force'], 2,
            'm.json: is a folder where a file is expected')


def _fail_training(env, error: BaseException):
    def train(self, ctx):
        raise error
    env.patch(NativeBackend, 'train', train)
    return ['run', '--spec', env.spec(), '--runs', env.root / 'r2', '--work-dirs', env.root / 'w2', '--arms',
            'hungarian']


@case('errors: disk full in work_dirs is one line')
def _(env):
    cmd = _fail_training(env, OSError(errno.ENOSPC, 'No space left on device'))
    return cmd, 1, f'{env.root / "w2" / RID}: no space left on the device'


@case('errors: Ctrl-C ends with one line and the RESULT line')
def _(env):
    cmd = _fail_training(env, KeyboardInterrupt())
    record = env.root / 'r2' / RID / 'run.json'
    env.after = lambda: json.loads(record.read_text())['sessions'][-1].get('interrupted') is True
    return cmd, 130, 'RESULT {"verb": "run", "status": "interrupted"'


@case('errors: disk full in --runs names the file; the empty folder blocks nothing')
def _(env):
    def full(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')
    env.patch(harness_io.os, 'fsync', full)
    runs = env.root / 'r2'
    spec = env.spec()
    env.after = lambda: (not any((runs / RID).iterdir())
                         and harness('status', '--runs', runs, '--spec', spec)[0] == 0)
    return (['run', '--spec', spec, '--runs', runs, '--work-dirs', env.root / 'w2', '--arms', 'hungarian'], 2,
            f'{runs / RID / "run.json"}: no space left on the device')


# flags nobody would read: the spec's schedule, or a local run on the host, without a word
FLAG_CASES = {
    '--epochs on a native spec': (('--epochs', '1'), '--epochs: an option of the upstream backend'),
    '--cache on a native spec': (('--cache', '/x'), '--cache: an option of the upstream backend'),
    '--container without --executor slurm': (('--container', 'apptainer:/i.sif'), '--container: a Slurm option'),
    '--slurm-time-min without --executor slurm': (('--slurm-time-min', '30'), '--slurm-time-min: a Slurm option'),
    '--wait without --executor slurm': (('--wait',), '--wait: a Slurm option'),
}
for _name, (_flags, _text) in FLAG_CASES.items():
    case(f'run: {_name} is refused, nothing trains')(
        lambda env, f=_flags, t=_text: (env.run(None, '--force', *f), 2, t))


# ---- concurrency and crashes -----------------------------------------------------------------

@case('runs: two invocations at once never train one run twice')
def _(env):
    holder = sleeper(env)
    folder = env.root / 'r2' / RID
    folder.mkdir(parents=True)   # what the first invocation made: the folder and its lock, nothing else yet
    (folder / '.lock').write_text(json.dumps({'host': os.uname().nodename, 'pid': holder.pid, 'since': 'now',
                                              'pid_started': process_started(holder.pid)}))
    env.after = lambda: not (env.root / 'r2' / f'{RID}.attempt2').exists() and not (folder / 'run.json').exists()
    return (['run', '--spec', env.spec(), '--runs', env.root / 'r2', '--work-dirs', env.root / 'w2', '--arms',
             'hungarian'], 1, f'being trained by pid {holder.pid}')


@case('runs: a crash right after the first run.json is an interrupted start, not a changed spec')
def _(env):
    folder = env.root / 'r2' / RID
    folder.mkdir(parents=True)
    record = json.loads(record_path(env, 'hungarian').read_text())
    for key in ('config', 'config_diff', 'data', 'iterations', 'ended_at', 'wall_s', 'timing'):
        record.pop(key, None)
    (folder / 'run.json').write_text(json.dumps({**record, 'status': 'running', 'sessions': []}))
    env.after = lambda: json.loads((folder / 'run.json').read_text())['status'] == 'finished'
    return (['run', '--spec', env.spec(), '--runs', env.root / 'r2', '--work-dirs', env.root / 'w2', '--arms',
             'hungarian'], 0, f'{RID}: finished')


@case('runs: an empty run folder left by a full disk blocks neither run nor status')
def _(env):
    (env.runs / f'{RID}.attempt2').mkdir()
    env.after = lambda: harness('status', '--runs', env.runs, '--spec', env.spec())[0] == 0
    return env.run(None, '--arms', 'hungarian'), 0, f'{RID}: done (already finished)'


@case('runs: a stale lock whose pid now names another process is taken over')
def _(env):
    holder = sleeper(env)
    folder = record_path(env, 'hungarian').parent
    (folder / '.lock').write_text(json.dumps({'host': os.uname().nodename, 'pid': holder.pid, 'since': 'then',
                                              'pid_started': 'another boot:1'}))
    edit_json(folder / 'run.json', lambda r: r.update(status='running'))   # metrics exist: completed
    env.changes = True
    return env.run(None, '--arms', 'hungarian'), 0, 'now another process'


@case('runs: after kill -9 and resume, wall time counts the interrupted session')
def _(env):
    folder = record_path(env, 'hungarian').parent
    start = time.time() - 100

    def killed(r):
        r['status'] = 'running'
        r['sessions'][-1] = {k: v for k, v in r['sessions'][-1].items() if k not in ('seconds', 'ended_at')}
        r['sessions'][-1]['started_unix'] = start
    edit_json(folder / 'run.json', killed)
    log = env.root / 'work' / RID / 'work_dir' / 'log.txt'   # the last file the killed session wrote
    log.parent.mkdir(parents=True)
    log.write_text('iteration 2')
    for path in [log, *folder.rglob('*')]:
        os.utime(path, (start + 13, start + 13) if path == log else (start + 5, start + 5))
    env.changes = True

    def counted() -> bool:
        sessions = json.loads((folder / 'run.json').read_text())['sessions']
        return sessions[-2]['interrupted'] and abs(sessions[-2]['seconds'] - 13) < 0.01
    env.after = counted
    return env.run(None, '--arms', 'hungarian'), 0, f'{RID}: complete'


@case('runs: finished runs from a commit this checkout cannot read refuse new runs before training')
def _(env):
    # compare would not pool runs trained now with them (their result code is unknown here)
    edit_json(record_path(env, 'hungarian'), lambda r: r['env']['harness_git'].update(sha='f' * 40))
    return env.run(None, '--force', '--arms', 'influencer'), 2, 'whose result code cannot be read here'
