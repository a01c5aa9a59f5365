"""Bad input and faults: every case ends with a one-line error or a handled outcome, never a
traceback, a silent wrong result, a lost result or code execution. docs/faults.md lists them.

Each case gets a fresh copy of a tiny prepared dataset, a tiny spec and a folder of finished
runs; it returns the command, the expected exit code and a text the output must contain.
Every case also checks that no traceback was printed and that the results it did not mean to
change are byte-identical afterwards (hash of every file before and after). The world and the
registry live in tests/fault_world.py; the second round's cases in tests/fault_cases_more.py.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_helpers import harness
from fault_world import CASES, Env, build_world, case, config, hash_tree, record_path, spec_change

import fault_cases_more  # noqa: F401 - registers the second round's cases

from harness.core.errors import HarnessError
from harness.study.arms import block, check_block


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """Tiny data, a spec, and finished runs of two arms (trained once for the module)."""
    return build_world(tmp_path_factory.mktemp('world'))


# ---- specs: validated before any data or training --------------------------------------------

SPEC_CASES = {
    'unknown top-level key': (spec_change(epochs=3), "unknown key 'epochs'"),
    'top-level typo': (spec_change(seeeds=[0]), "did you mean 'seeds'"),
    'unknown arm': (spec_change(arms=['hungarian', 'influenser']), "'influenser' is not in baselines/criteria.yaml"),
    'no baseline arm': (spec_change(arms=['influencer']), 'must include hungarian'),
    'experiment escapes the runs folder': (spec_change(experiment='../../x'), 'not a safe folder name'),
    'experiment with a slash': (spec_change(experiment='a/b'), 'not a safe folder name'),
    'seeds not integers': (spec_change(seeds=[0, 'x']), 'seeds must be a list of distinct non-negative integers'),
    'seeds repeated': (spec_change(seeds=[0, 0]), 'seeds must be a list of distinct'),
    'data key typo': (lambda s: s['data'].update(test_aera=5), "did you mean 'test_area'"),
    'test area not a number': (lambda s: s['data'].update(test_area='five'), "data.test_area: 'five' must be an S3DIS area"),
    'test area also trained on': (lambda s: s['data'].update(train_areas=[1, 5]), 'is also a training area'),
    'synth block typo': (lambda s: s['data']['synth'].update(rooms=2), "data.synth: unknown key 'rooms'"),
    'config train.iter': (config('train.iter', 100), "config.train: unknown key 'iter' (did you mean 'iters'?)"),
    'config learning_rate': (config('train.learning_rate', 1e-3), "unknown key 'learning_rate'"),
    'config n_head': (config('model.decoder.n_head', 4), "did you mean 'n_heads'"),
    'config voxel_szie': (config('model.voxel_szie', 0.1), "did you mean 'voxel_size'"),
    'config lr not a number': (config('train.lr', '1e-3x'), "config.train.lr: '1e-3x' must be a number > 0"),
    'config lr negative': (config('train.lr', -1.0), 'config.train.lr: -1.0 must be a number > 0'),
    'config npoint_thresh': (config('model.test_cfg.npoint_thresh', 5), "did you mean 'npoint_thr'"),
    'config iters zero': (config('train.iters', 0), 'config.train.iters: 0 must be an integer > 0'),
    'config score threshold above 1': (config('model.test_cfg.sp_score_thr', 1.5), 'must be a number in [0, 1]'),
    'config criterion set in the spec': (config('model.criterion.inst_criterion', {'type': 'X'}), 'must be null'),
    'config heads do not divide d_model': (config('model.decoder.n_heads', 5), 'not divisible by n_heads'),
    'threads zero': (spec_change(threads=0), 'threads: 0 must be an integer > 0'),
    'ablation criterion key typo': (spec_change(ablations={'axes': {'t': {'criterion': 'temprature', 'values': [1]}}}),
                                    "did you mean 'temperature'"),
    'ablation temperature zero': (spec_change(ablations={'axes': {'t': {'criterion': 'temperature', 'values': [0]}}}),
                                  'temperature: 0 must be a number > 0'),
    'ablation negative margin': (spec_change(ablations={'axes': {'m': {'criterion': 'rep_margin', 'values': [-5]}}}),
                                 'rep_margin: -5 must be a number >= 0'),
    'ablation mode unknown': (spec_change(ablations={'mode': 'all', 'axes': {'t': {'criterion': 'temperature',
                                                                               'values': [1]}}}), "mode 'all'"),
    'ablation config key typo': (spec_change(ablations={'axes': {'q': {'config': 'model.decodr.n_inst', 'values': [8]}}}),
                                 "'model.decodr.n_inst': no 'decodr'"),
    'ablation config value out of range': (spec_change(ablations={'axes': {'q': {'config': 'model.decoder.n_inst',
                                                                                 'values': [-1]}}}),
                                           'n_inst: -1 must be an integer > 0'),
}

for _name, (_change, _text) in SPEC_CASES.items():
    case(f'spec: {_name}')(lambda env, c=_change, t=_text: (env.run(env.spec(c, 'bad.yaml')), 2, t))


@case('spec: not YAML')
def _(env):
    path = env.root / 'bad.yaml'
    path.write_text('experiment: [unclosed\n')
    return env.run(path), 2, f'{path}: unreadable experiment spec'


@case('spec: missing file')
def _(env):
    return env.run(env.root / 'nope.yaml'), 2, 'nope.yaml: unreadable experiment spec'


@case('spec: unknown backend')
def _(env):
    return env.run(env.spec(spec_change(backend='detectron'), 'bad.yaml')), 2, "backend 'detectron'"


@case('run: --seeds outside the spec')
def _(env):
    return env.run(None, '--seeds', '9'), 2, "--seeds [9] not in the spec's seeds [0]"


@case('run: SEEDS in the environment does not override the spec')
def _(env):
    os.environ['SEEDS'] = '7'
    try:
        code, out, err = harness('plan', '--spec', env.spec(), '--runs', env.runs)
    finally:
        del os.environ['SEEDS']
    assert code == 0 and '__s7' not in out and '__s0' in out
    return ['plan', '--spec', env.spec(), '--runs', env.runs], 0, 'finished'


# ---- criterion blocks ----------------------------------------------------------------------

@pytest.mark.parametrize('change, text', [
    ({'rep_margin': -5}, 'rep_margin: -5 must be a number >= 0'),
    ({'temprature': 1.0}, "unknown key 'temprature' (did you mean 'temperature'?)"),
    ({'type': 'InfluencerCriterionX'}, "criterion type 'InfluencerCriterionX' unknown (did you mean"),
    ({'loss_weight': [1, 1, 1, 1, 1]}, 'loss_weight: [1, 1, 1, 1, 1] must be a list of 2..4 items'),
    ({'mask_norm': 'relu'}, "mask_norm: 'relu' must be one of ['sigmoid', 'softmax']"),
    ({'num_classes': 0}, 'num_classes: 0 must be an integer > 0'),
])
def test_criterion_blocks_are_checked(change, text):
    with pytest.raises(HarnessError) as err:
        check_block('criteria.yaml: influencer', {**block('influencer'), **change})
    assert text in str(err.value)


# ---- data -----------------------------------------------------------------------------------

@case('data: --data typo is not generated')
def _(env):
    return env.run(None, '--data', env.root / 'dta'), 2, 'no prepared dataset there'


@case('data: MANIFEST.json not JSON')
def _(env):
    (env.data / 'MANIFEST.json').write_text('{broken')
    return env.run(), 2, 'MANIFEST.json: not JSON'


@case('data: MANIFEST.json without rooms')
def _(env):
    (env.data / 'MANIFEST.json').write_text('{"format": 1}')
    return env.run(), 2, 'MANIFEST.json: no "rooms" mapping'


@case('data: a room truncated consistently in all three files')
def _(env):
    name = env.room(1)
    for sub, row in (('points', 24), ('semantic_mask', 8), ('instance_mask', 8)):
        path = env.data / sub / f'{name}.bin'
        path.write_bytes(path.read_bytes()[:100 * row])
    return env.run(None, '--force'), 2, f'{name}.bin: 2400 bytes, the manifest says'


@case('data: a mask file missing')
def _(env):
    (env.data / 'semantic_mask' / f'{env.room(2)}.bin').unlink()
    return env.run(None, '--force'), 2, f'semantic_mask/{env.room(2)}.bin: missing'


@case('data: an area without rooms')
def _(env):
    manifest = json.loads((env.data / 'MANIFEST.json').read_text())
    manifest['rooms'] = {k: v for k, v in manifest['rooms'].items() if v['area'] != 3}
    (env.data / 'MANIFEST.json').write_text(json.dumps(manifest))
    return env.run(None, '--force'), 2, 'no room of Area_3'


@case('data: an empty test room')
def _(env):
    name = env.room(5)
    for sub in ('points', 'semantic_mask', 'instance_mask'):
        (env.data / sub / f'{name}.bin').write_bytes(b'')
    return ['evaluate', env.predictions(), '--data', env.data, '--area', '5'], 2, f'{name}.bin: empty (0 points)'


class Boom:
    """A pickle that would create a file when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


@case('data: crafted info pkl is never executed (verify-data)')
def _(env):
    marker = env.root / 'PWNED'
    (env.data / 's3dis_infos_Area_1.pkl').write_bytes(pickle.dumps({'data_list': [Boom(marker)]}))
    env.after = lambda: not marker.exists()
    return ['verify-data', env.data], 1, 'refused posix.system'


@case('data: crafted info pkl is never executed (subset)')
def _(env):
    marker = env.root / 'PWNED'
    (env.data / 's3dis_infos_Area_1.pkl').write_bytes(pickle.dumps(Boom(marker)))
    env.after = lambda: not marker.exists()
    return ['subset', '--src', env.data, '--out', env.root / 'sub'], 2, 'not a plain S3DIS info file'


@case('data: a corrupt .prepare journal entry is redone')
def _(env):
    raw = env.root / 'raw'
    harness('synth', '--out', raw, '--raw', '--rooms-per-area', 1, '--points-per-room', 800)
    assert harness('prepare-data', '--raw', raw, '--out', env.root / 'prep', '--workers', 1)[0] == 0
    journal = sorted((env.root / 'prep' / '.prepare').glob('*.json'))[0]
    journal.write_text('{torn')
    return ['prepare-data', '--raw', raw, '--out', env.root / 'prep', '--workers', 1], 0, 'unreadable journal entry'


@case('data: a missing annotation file is reported')
def _(env):
    raw = env.root / 'raw'
    harness('synth', '--out', raw, '--raw', '--rooms-per-area', 1, '--points-per-room', 800)
    room = sorted((raw / 'Area_2').iterdir())[0]
    next(iter(sorted((room / 'Annotations').glob('chair_*.txt')) or sorted((room / 'Annotations').glob('*.txt')))).unlink()
    return ['prepare-data', '--raw', raw, '--out', env.root / 'prep', '--workers', 1], 0, 'points are in no file of Annotations/'


@case('data: prepare-data without a raw tree')
def _(env):
    return ['prepare-data', '--raw', env.root / 'nothing', '--out', env.root / 'prep'], 2, 'no such folder'


@case('data: prepare-data output inside the raw tree')
def _(env):
    (env.root / 'raw' / 'Area_1').mkdir(parents=True)
    return ['prepare-data', '--raw', env.root / 'raw', '--out', env.root / 'raw' / 'out'], 2, 'inside the raw tree'


@case('data: synth into a folder with files')
def _(env):
    return ['synth', '--out', env.data], 2, 'exists and is not empty'


# ---- predictions and evaluate ----------------------------------------------------------------

def _bad_prediction(env, **fields):
    preds = env.predictions()
    target = sorted(preds.glob('*.npz'))[0]
    n = (env.data / 'points' / f'{target.stem}.bin').stat().st_size // 24
    valid = {'format': np.array('influencerformer-pred-v1'), 'n_points': np.int64(n),
             'masks': np.packbits(np.zeros((2, n), bool), axis=1), 'labels': np.array([1, 2]),
             'scores': np.array([0.9, 0.5], np.float32)}
    with open(target, 'wb') as f:
        np.savez(f, **{**valid, **{k: (v(n) if callable(v) else v) for k, v in fields.items()}})
    return ['evaluate', preds, '--data', env.data, '--area', '5'], 2, target.name


PREDICTION_CASES = {
    'masks unpacked as uint8': (dict(masks=lambda n: np.zeros((2, n), np.uint8)), 'bit-packed'),
    'extra mask columns': (dict(masks=lambda n: np.zeros((2, (n + 7) // 8 + 3), np.uint8)), 'bit-packed'),
    'float labels': (dict(labels=np.array([1.7, 2.2])), 'expected integer class ids'),
    'NaN scores': (dict(scores=np.array([np.nan, 0.5], np.float32)), 'NaN or infinite'),
    'labels and scores of different lengths': (dict(scores=np.array([0.9], np.float32)), '2 labels and 1 scores'),
    'labels out of range': (dict(labels=np.array([1, 13])), 'outside 0..12'),
    'wrong format string': (dict(format=np.array('other-v9')), 'format other-v9'),
}

for _name, (_fields, _text) in PREDICTION_CASES.items():
    def _make(env, f=_fields, t=_text):
        cmd, code, name = _bad_prediction(env, **f)
        return cmd, code, t
    case(f'predictions: {_name}')(_make)


@case('predictions: not an npz file')
def _(env):
    preds = env.predictions()
    target = sorted(preds.glob('*.npz'))[0]
    target.write_text('hello')
    return ['evaluate', preds, '--data', env.data, '--area', '5'], 2, f'{target.name}: not a prediction file'


@case('predictions: a room missing')
def _(env):
    preds = env.predictions()
    sorted(preds.glob('*.npz'))[0].unlink()
    return ['evaluate', preds, '--data', env.data, '--area', '5'], 2, 'no predictions for 1 of'


@case('predictions: an unknown room')
def _(env):
    preds = env.predictions()
    shutil.copy(sorted(preds.glob('*.npz'))[0], preds / 'Area_5_nowhere_9.npz')
    return ['evaluate', preds, '--data', env.data, '--area', '5'], 2, 'Area_5_nowhere_9'


@case('evaluate: existing --out without --force')
def _(env):
    out = env.root / 'metrics.json'
    out.write_text('{"mine": 1}')
    env.keep = [out]
    return ['evaluate', env.predictions(), '--data', env.data, '--out', out], 2, 'exists; pass --force'


@case('evaluate: --out that cannot be written is refused before evaluating')
def _(env):
    blocker = env.root / 'a-file'
    blocker.write_text('x')
    return ['evaluate', env.predictions(), '--data', env.data, '--out', blocker / 'metrics.json'], 2, 'cannot write there'


# ---- records and runs -----------------------------------------------------------------------

_record = record_path


@case('records: run.json is a JSON list')
def _(env):
    _record(env).write_text('[]')
    return ['compare', '--runs', env.runs, '--out', env.root / 'out'], 2, 'not a run record (a JSON list'


@case('records: run.json torn')
def _(env):
    _record(env).write_text('{"schema_version": 2, "run')
    return ['compare', '--runs', env.runs, '--out', env.root / 'out'], 2, 'unreadable run record'


@case('records: run.json of another schema')
def _(env):
    record = json.loads(_record(env).read_text())
    _record(env).write_text(json.dumps({**record, 'schema_version': 1}))
    return ['compare', '--runs', env.runs, '--out', env.root / 'out'], 2, 're-run into a new --runs folder'


@case('records: metrics.json without ap75 is listed, not averaged')
def _(env):
    path = _record(env).parent / 'metrics.json'
    metrics = json.loads(path.read_text())
    del metrics['ap75']
    path.write_text(json.dumps(metrics))
    return ['compare', '--runs', env.runs, '--out', env.root / 'out'], 0, 'metrics.json: no ap75; re-evaluate'


@case('records: metrics.json not JSON is listed, not averaged')
def _(env):
    (_record(env).parent / 'metrics.json').write_text('{')
    return ['compare', '--runs', env.runs, '--out', env.root / 'out'], 0, 'metrics.json: not JSON'


@case('runs: a changed spec is refused, nothing trains')
def _(env):
    return env.run(env.spec(config('train.lr', 0.004), 'changed.yaml')), 2, 'differs from what the spec derives now in train.lr'


@case('runs: a run held by a live process is refused')
def _(env):
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    env.cleanup = holder.kill
    folder = _record(env, 'hungarian').parent
    (folder / '.lock').write_text(json.dumps({'host': os.uname().nodename, 'pid': holder.pid, 'since': 'now'}))
    record = json.loads((folder / 'run.json').read_text())
    (folder / 'run.json').write_text(json.dumps({**record, 'status': 'running'}))
    env.keep = [folder / 'run.json']
    return env.run(None, '--arms', 'hungarian'), 1, f'being trained by pid {holder.pid}'


@case('runs: a stale lock of a dead process is taken over')
def _(env):
    folder = _record(env, 'hungarian').parent
    (folder / '.lock').write_text(json.dumps({'host': os.uname().nodename, 'pid': 2 ** 22 + 17, 'since': 'then'}))
    record = json.loads((folder / 'run.json').read_text())
    (folder / 'run.json').write_text(json.dumps({**record, 'status': 'running'}))   # metrics exist: completed
    env.after = lambda: json.loads((folder / 'run.json').read_text())['status'] == 'finished'
    env.changes = True
    return env.run(None, '--arms', 'hungarian'), 0, 'stale lock'


@case('runs: metrics written but record open is completed, not failed')
def _(env):
    folder = _record(env).parent
    record = json.loads((folder / 'run.json').read_text())
    (folder / 'run.json').write_text(json.dumps({**record, 'status': 'running'}))
    env.after = lambda: json.loads((folder / 'run.json').read_text())['status'] == 'finished'
    env.changes = True
    return env.run(None, '--arms', 'influencer'), 0, 'smoke-native__influencer__s0: complete'


@case('runs: a diverging loss fails the run with its iteration and compare leaves it out')
def _(env):
    spec = env.spec(lambda s: (s.update(experiment='diverge'), s['config']['train'].update(lr=1.0e30)), 'nan.yaml')
    code, out, err = harness('run', '--spec', spec, '--runs', env.root / 'nan', '--work-dirs', env.root / 'w')
    assert code == 1 and 'non-finite at iteration 2 (last finite loss' in err
    record = json.loads((env.root / 'nan' / 'diverge__hungarian__s0' / 'run.json').read_text())
    assert record['status'] == 'failed' and record['error'].startswith('model outputs became non-finite at iteration 2')
    return ['compare', '--runs', env.root / 'nan', '--out', env.root / 'o'], 2, 'no counted run of diverge'


@case('runs: a deleted last checkpoint resumes from the one before')
def _(env):
    spec = env.spec(lambda s: (s.update(experiment='resume'), s['config']['train'].update(iters=20)), 'r.yaml')
    from harness import backends
    from harness.backends.native.train import runner_for
    from harness.study.backend import Prepared
    from harness.study.matrix import make_point
    from mmengine.config import Config
    loaded, backend = backends.load(spec)
    cfg = Config(backend.derive(loaded, Prepared(), make_point('resume', 'hungarian', 0), env.data).config)
    work = env.root / 'w' / 'resume__hungarian__s0' / 'work_dir'
    first = runner_for(cfg, work)
    first.train_loop._max_iters = 8   # checkpoints at 2, 4, 6, 8 (the last two kept)
    first.train()
    (work / 'iter_8.pth').unlink()
    return (['run', '--spec', spec, '--runs', env.root / 'rr', '--work-dirs', env.root / 'w', '--arms', 'hungarian'], 0,
            'resuming from iter_6.pth')


@case('compare: several experiments without --experiment')
def _(env):
    shutil.copytree(env.runs / 'smoke-native__hungarian__s0', env.runs / 'other__hungarian__s0')
    record = json.loads((env.runs / 'other__hungarian__s0' / 'run.json').read_text())
    (env.runs / 'other__hungarian__s0' / 'run.json').write_text(json.dumps({**record, 'experiment': 'other'}))
    return ['compare', '--runs', env.runs, '--out', env.root / 'out'], 2, 'pick one with --experiment'


@case('compare: --out is a file')
def _(env):
    out = env.root / 'out'
    out.write_text('not a folder')
    env.keep = [out]
    return ['compare', '--runs', env.runs, '--out', out], 2, str(out)


@case('compare: no runs folder')
def _(env):
    return ['compare', '--runs', env.root / 'none', '--out', env.root / 'out'], 2, 'no such runs folder'


@pytest.mark.parametrize('name', list(CASES))
def test_fault(name, world, tmp_path):
    env = Env(tmp_path / 'w')
    shutil.copytree(world, env.root, ignore=shutil.ignore_patterns('work'))
    env.after, env.cleanup, env.keep, env.changes = (lambda: True), (lambda: None), [], False
    try:
        cmd, code, text = CASES[name](env)
        before = hash_tree(env.runs)
        kept = {p: p.read_bytes() for p in env.keep}
        got, out, err = harness(*cmd)
    finally:
        env.cleanup()
    both = out + err
    assert got == code, both[-2000:]
    assert text in both, both[-2000:]
    assert 'Traceback' not in both
    assert env.after(), 'the outcome was not what the case expects'
    if not env.changes:
        assert hash_tree(env.runs) == before, 'a result changed'
    assert all(p.read_bytes() == b for p, b in kept.items()), 'a user file changed'


def test_the_suite_is_large_enough():
    assert len(CASES) + 6 >= 60 + 48   # + the parametrised criterion-block cases; + the second round's


def test_every_case_is_in_the_docs_table():
    table = (Path(__file__).parents[1] / 'docs' / 'faults.md').read_text()
    missing = [name for name in CASES if f'| {name} |' not in table]
    assert not missing, missing
