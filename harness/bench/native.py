"""``python -m harness bench native``: seconds per native training iteration, this code against another commit.

Both trees train the same run config (derived here from the spec, the arm and
seed 0) on the same data for a few iterations through mmengine, as a run does
(``runner_for``: data loading, forward, backward, gradient clipping, AdamW,
hooks; no validation), each in a fresh process with one thread and the CPU
kernels pinned. The baseline commit is checked out into a temporary git
worktree (nothing of this checkout changes). Trees alternate, so load on the
machine affects both alike; the median over repeats is reported per tree, and
the ratio baseline / this code. Seconds per iteration are mmengine's own
per-iteration ``time`` (median of the timed iterations, after the warm-up ones).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from harness.core import cpu, env
from harness.core.errors import HarnessError
from harness.core.args import at_least
from harness.core.io import atomic_write, check_out_file, result_line
from harness.core.paths import REPO

HELP = 'seconds per native training iteration at a spec\'s shapes: this code vs a baseline commit (ratio)'
FIELDS = ['spec', 'arm', 'tree', 'commit', 'repeat', 's_per_iter', 'cpu_s_per_iter', 'iters', 'threads',
          'capability', 'cpu', 'torch']
# Runs inside the tree under test (its own harness package): only APIs both trees have.
WORKER = r'''
import json, statistics, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from mmengine.config import Config
from mmengine.hooks import Hook
from harness.backends.native import hooks
from harness.backends.native.train import runner_for
hooks.ValidationHook.after_train_iter = lambda *a, **k: None   # training only: no validation
cfg = Config(json.loads(Path(sys.argv[1]).read_text()))
warmup, timed = int(sys.argv[2]), int(sys.argv[3])
cfg.train.iters = warmup + timed

class CpuClock(Hook):
    # process CPU seconds over the timed iterations (the machine's load does not inflate them)
    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == warmup:
            self.start = time.process_time()
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.end = time.process_time()

clock = CpuClock()
runner = runner_for(cfg, Path(sys.argv[4]))
runner.register_hook(clock, 'VERY_HIGH')
runner.train()
rows = [json.loads(l) for p in Path(sys.argv[4]).glob('*/vis_data/scalars.json') for l in p.read_text().splitlines()]
times = [r['time'] for r in rows if 'time' in r and r.get('step', 0) > warmup]
print(json.dumps({'s_per_iter': statistics.median(times), 'cpu_s_per_iter': (clock.end - clock.start) / timed,
                  'iters': len(times), 'capability': getattr(torch._C, '_get_cpu_capability', lambda: None)(),
                  'torch': torch.__version__}))
'''
# The profile: torch.profiler over a few training steps of this code (model forward, criterion, backward,
# AdamW), the operators that take the time, by self CPU time.
PROFILER = r'''
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from torch.profiler import ProfilerActivity, profile
from harness.backends.native.model import NativeOneFormer3D
from harness.backends.native.train import RoomsDataset, collate
cfg = json.loads(Path(sys.argv[1]).read_text())
steps = int(sys.argv[2])
torch.manual_seed(0)
model_cfg = dict(cfg['model']); model_cfg.pop('type')
model = NativeOneFormer3D(**model_cfg)
opt = torch.optim.AdamW(model.parameters(), lr=cfg['train']['lr'], weight_decay=cfg['train']['weight_decay'])
data = RoomsDataset(cfg['data']['root'], cfg['data']['train_areas'], cfg['data'].get('num_points'), 0)
batches = [collate([data[2 * i], data[2 * i + 1]]) for i in range(steps + 2)]

def step(batch):
    out = model(**batch, mode='loss')
    loss = sum(v for k, v in out.items() if 'loss' in k)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10)
    opt.step()

for batch in batches[:2]:
    step(batch)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for batch in batches[2:]:
        step(batch)
print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=25, max_name_column_width=60))
'''


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the native-step benchmark."""
    parser.add_argument('--spec', type=Path, nargs='+', default=[Path('baselines/matching-free-native.yaml')],
                        help='native specs whose shapes to time (data generated as the spec says, if missing)')
    parser.add_argument('--arm', default='hungarian', help='the arm whose config is timed')
    parser.add_argument('--data', type=Path, default=None,
                        help="prepared data root instead of the spec's (must exist; for one spec)")
    parser.add_argument('--baseline', default=None,
                        help='git commit to compare with (default: none, this code only)')
    parser.add_argument('--repeats', type=at_least(1), default=3, help='processes per tree (alternating)')
    parser.add_argument('--warmup', type=at_least(0), default=3, help='untimed iterations per process')
    parser.add_argument('--iters', type=at_least(1), default=12, help='timed iterations per process (profile: steps)')
    parser.add_argument('--out', type=Path, default=Path('results/bench/native-step.csv'), help='the CSV')
    parser.add_argument('--force', action='store_true', help='replace an existing CSV')
    parser.add_argument('--profile', type=Path, default=None,
                        help="instead of timing: torch.profiler over --iters steps of this code at the first spec's "
                             'shapes, the operator table written to this file')


def run(args: argparse.Namespace) -> int:
    """Derive each spec's config, time both trees alternately, print the table and the ratios."""
    if args.profile is not None:
        return profile(args)
    check_out_file(args.out, args.force)
    if args.data is not None and len(args.spec) > 1:
        raise HarnessError('--data applies to one spec; time the specs one at a time')
    if args.baseline:
        _check_commit(args.baseline)   # before data is generated for the configs
    with tempfile.TemporaryDirectory(prefix='bench-native-') as tmp:
        configs = {spec: _config(spec, args.arm, Path(tmp), args.data) for spec in args.spec}   # may refuse:
        trees = {'this code': (REPO, _commit(REPO))}                                             # before any worktree
        if args.baseline:
            trees = {f'baseline {args.baseline}': _worktree(args.baseline, Path(tmp) / 'baseline'), **trees}
        rows = []
        jobs = [(spec, name, rep) for spec in args.spec for rep in range(args.repeats) for name in trees]
        try:
            for spec, name, rep in tqdm(jobs, desc='bench native', unit='process'):
                root, commit = trees[name]
                rows.append({'spec': str(spec), 'arm': args.arm, 'tree': name, 'commit': commit, 'repeat': rep,
                             **_measure(root, configs[spec], args.warmup, args.iters, Path(tmp) / f'w{len(rows)}')})
        finally:
            if args.baseline:
                env.git(REPO, 'worktree', 'remove', '--force', str(trees[next(iter(trees))][0]))
    atomic_write(args.out, _csv(rows), overwrite=args.force)
    ratios = _ratios(rows, args.baseline)
    print(_table(rows, ratios))
    print(result_line('bench native', 'ok', csv=str(args.out), s_per_iter=_medians(rows), ratios=ratios))
    return 0


def profile(args: argparse.Namespace) -> int:
    """The operator table of a few training steps of this code (one thread, pinned kernels)."""
    if args.profile.is_dir() or (args.profile.exists() and not args.force):
        raise HarnessError(f'--profile {args.profile}: exists already; pass --force to replace a file, or choose '
                           'another --profile')
    with tempfile.TemporaryDirectory(prefix='bench-native-') as tmp:
        config = _config(args.spec[0], args.arm, Path(tmp), args.data)
        check_profile_rooms(config, args.iters, args.spec[0])
        env = {**os.environ, **cpu.PIN, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
        proc = subprocess.run([sys.executable, '-c', PROFILER, str(config), str(args.iters)], cwd=REPO, env=env,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f'profile failed: {proc.stderr.strip().splitlines()[-1:]}')
    table = proc.stdout[proc.stdout.index('-----'):]
    header = (f'# torch.profiler, {args.iters} training steps of {args.spec[0]} ({args.arm}), one thread, '
              f'AVX2 kernels, commit {_commit(REPO)}, {_cpu_name()}\n')
    atomic_write(args.profile, header + table, overwrite=args.force)
    print(header + table)
    print(result_line('bench native', 'profiled', out=str(args.profile)))
    return 0


def check_profile_rooms(config: Path, steps: int, spec: Path) -> None:
    """The profile takes 2 training rooms per step (batch 2) and 2 warm-up steps: refuse before it starts
    when the config's training areas have fewer.

    Raises:
        HarnessError: naming the data, the spec and how many steps its rooms allow.
    """
    from harness.data.reader import list_rooms
    data = json.loads(config.read_text())['data']
    rooms = sum(len(list_rooms(Path(data['root']), area)) for area in data['train_areas'])
    if rooms < 2 * (steps + 2):
        fits = rooms // 2 - 2
        raise HarnessError(f'--iters {steps}: the profile needs {2 * (steps + 2)} training rooms (2 per step and 2 '
                           f"warm-up steps); {data['root']} has {rooms} in {spec}'s training areas: "
                           + (f'give --iters {fits} or fewer' if fits >= 1 else 'profile a spec with more rooms'))


def _config(spec: Path, arm: str, tmp: Path, data: Path | None = None) -> Path:
    """The arm's run config at seed 0 (its data made as the spec says, or ``data``), as a JSON file."""
    from harness import backends
    from harness.study.backend import Prepared
    from harness.study.matrix import make_point
    from harness.study.setup import ensure_data
    loaded, backend = backends.load(spec)
    if loaded.backend != 'native':
        raise HarnessError(f'{spec}: backend {loaded.backend!r}; bench native times native specs')
    if arm not in loaded.arms:
        raise HarnessError(f'--arm {arm}: not an arm of {spec} ({list(loaded.arms)})')
    root = ensure_data(loaded, data).resolve()
    config = backend.derive(loaded, Prepared(), make_point(loaded.experiment, arm, 0), root).config
    path = tmp / f'{loaded.experiment}-{arm}.json'
    path.write_text(json.dumps(config))
    return path


def _measure(root: Path, config: Path, warmup: int, iters: int, work: Path) -> dict:
    """One process of the tree at ``root``: seconds per iteration (wall and CPU)."""
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(cpu.PIN, PYTHONPATH=str(root), OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', WORKER, str(config), str(warmup), str(iters), str(work)],
                          cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f'bench worker in {root} failed: {proc.stderr.strip().splitlines()[-1:]}')
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**out, 'threads': 1, 'cpu': _cpu_name() or platform.processor()}


def _check_commit(commit: str) -> None:
    """Raise unless ``commit`` names a commit of this repository (git missing: it names none)."""
    if env.git(REPO, 'rev-parse', '--verify', '--quiet', f'{commit}^{{commit}}') is None:
        raise HarnessError(f'--baseline {commit}: not a commit of {REPO}; give a commit, tag or branch of it')


def _worktree(commit: str, where: Path) -> tuple[Path, str]:
    """A temporary git worktree of ``commit`` (removed at the end)."""
    proc = subprocess.run(['git', '-C', str(REPO), 'worktree', 'add', '--detach', str(where), commit],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise HarnessError(f'--baseline {commit}: cannot check it out ({proc.stderr.strip()}); give a commit '
                           'of this repository')
    return where, _commit(where)


def _commit(root: Path) -> str | None:
    """HEAD of the tree at ``root`` (12 hex digits), '+dirty' where it has uncommitted changes as run records
    count them (results/ and docs/ change no time): the times are of the files, not of the commit."""
    state = env.git_state(root, outputs=(*env.OUTPUT_DIRS, 'docs'))
    return state['sha'] and state['sha'][:12] + ('+dirty' if state['dirty'] else '')


def _cpu_name() -> str | None:
    try:
        return next(line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                    if line.startswith('model name'))
    except (OSError, StopIteration):
        return None


def _medians(rows: list[dict]) -> dict[str, dict[str, float]]:
    """spec -> tree -> median seconds per iteration over repeats."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r['spec'], {}).setdefault(r['tree'], [])
        out[r['spec']][r['tree']].append(r['s_per_iter'])
    return {s: {t: round(statistics.median(v), 4) for t, v in trees.items()} for s, trees in out.items()}


def _ratios(rows: list[dict], baseline: str | None) -> dict[str, float]:
    """spec -> baseline's median s/iter over this code's (how many times faster this code is)."""
    if not baseline:
        return {}
    med = _medians(rows)
    return {s: round(t[f'baseline {baseline}'] / t['this code'], 3) for s, t in med.items()}


def _table(rows: list[dict], ratios: dict[str, float]) -> str:
    med = _medians(rows)
    lines = [f"{'spec':<45}{'tree':<28}{'s / iter (median)':>18}"]
    for spec, trees in med.items():
        for tree, value in trees.items():
            lines.append(f'{spec:<45}{tree:<28}{value:>18.3f}')
        if spec in ratios:
            lines.append(f'{spec:<45}{"speed-up (baseline / this)":<28}{ratios[spec]:>17.2f}x')
    return '\n'.join(lines)


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator='\n', extrasaction='ignore')
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
