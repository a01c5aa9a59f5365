"""The upstream backend: OneFormer3D's own tools/train.py and tools/test.py on derived configs.

One run (arm, seed):
1. derive ``<work>/configs/{hungarian,<arm>}.py`` (+ diff, asserted) and save
   them in the run record;
2. train with upstream's tools/train.py (``--resume`` from the run's own last
   checkpoint after an interruption; ``torchrun`` for ``--gpus N``);
3. inspect the last checkpoint's spconv layout (spconv_ckpt) and fix a copy
   only when mmdet3d's loader would scramble it;
4. test with upstream's tools/test.py through a child config that adds our
   prediction dump and a metrics dump (upstream_plugin);
5. evaluate the dump with our evaluator and require upstream's own
   ``all_ap`` / ``all_ap_50%`` / ``all_ap_25%`` to agree within 1e-6;
6. metrics.json, curves.csv, status finished.
Steps leave markers in ``<work>``, so a re-run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness.study.curves import merge_scalars, write_curves
from harness.core.errors import HarnessError
from harness.verbs.evaluate import evaluate_folder
from harness.core.io import atomic_write
from harness.study.records import finish_run, sha256_file, start_run, update_record, write_metrics
from harness.backends.upstream import spconv_ckpt
from harness.backends.upstream.pretrained import ensure_pretrained
from harness.backends.upstream.config import load_resolved, render_child, write_arm_configs
from harness.core.paths import REPO

# Our metric key -> upstream's logged key (UnifiedSegMetric).
CROSS_CHECK = {'ap': 'all_ap', 'ap50': 'all_ap_50%', 'ap25': 'all_ap_25%'}
TOLERANCE = 1e-6


class Upstream:
    """Paths and commands of one upstream checkout.

    Args:
        root: the OneFormer3D checkout (unmodified, at the spec's commit).
        gpus: processes per node; > 1 launches through torchrun.
    """

    def __init__(self, root: Path, gpus: int = 1):
        self.root, self.gpus = Path(root), gpus
        for tool in ('tools/train.py', 'tools/test.py'):
            if not (self.root / tool).is_file():
                raise HarnessError(f'{self.root / tool}: missing; --upstream-root (or ONEFORMER3D_ROOT) must '
                                   'be a OneFormer3D checkout')

    def command(self, tool: str, *args: str) -> list[str]:
        """``python tools/<tool>.py args`` (or torchrun with ``--launcher pytorch`` for several GPUs)."""
        script = str(self.root / 'tools' / f'{tool}.py')
        if self.gpus > 1:
            return [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={self.gpus}',
                    script, *args, '--launcher', 'pytorch']
        return [sys.executable, script, *args]

    def env(self, threads: int | None) -> dict[str, str]:
        """Upstream importable (``oneformer3d`` for custom_imports), our packages too."""
        env = dict(os.environ)
        ours = str(REPO)
        env['PYTHONPATH'] = os.pathsep.join(p for p in (str(self.root), ours, env.get('PYTHONPATH')) if p)
        # Checkpoints loaded here are this run's own or the hash-checked pretrained one;
        # torch >= 2.6 would refuse mmengine's pickled metadata otherwise (specs/environment.md).
        env['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = '1'
        if threads:
            env['OMP_NUM_THREADS'] = str(threads)
        return env

    def commit(self) -> str | None:
        """HEAD of the checkout (None when it is not a git checkout)."""
        from harness.core.env import git_state
        return git_state(self.root)['sha']


def run_all(spec: dict, spec_path: Path, args: argparse.Namespace, matrix: list[tuple[str, int]]) -> dict[str, str]:
    """Every (arm, seed); a failed run is recorded and the others go on."""
    from harness.verbs.derive import upstream_root
    upstream = Upstream(upstream_root(spec, args.upstream_root), args.gpus)
    check_commit(upstream, spec, args.allow_other_commit)
    commit = upstream.commit()
    pretrained = ensure_pretrained(spec, args.cache)
    status = {}
    for arm, seed in matrix:
        status[f'{arm}/s{seed}'] = one_run(spec, spec_path, arm, seed, args, upstream, commit, pretrained)
        print(f'{arm} seed {seed}: {status[f"{arm}/s{seed}"]}', flush=True)
    return status


def check_commit(upstream: Upstream, spec: dict, allow_other: bool) -> None:
    """The checkout must be the spec's commit, unless the user says otherwise (then it is recorded)."""
    want, have = spec['upstream']['commit'], upstream.commit()
    if have != want and not allow_other:
        raise HarnessError(f'{upstream.root}: upstream at {have or "an unknown commit (not git)"}, the spec pins '
                           f'{want[:7]}; check out {want[:7]} or pass --allow-other-commit (recorded)')


def one_run(spec: dict, spec_path: Path, arm: str, seed: int, args: argparse.Namespace,
            upstream: Upstream, commit: str | None, pretrained: dict | None) -> str:
    """Derive, train, test, evaluate and cross-check one (arm, seed); returns its final status."""
    folder, action = start_run(args.runs, spec['experiment'], arm, seed, backend='upstream', force=args.force,
                               upstream={'root': str(upstream.root), 'commit': commit,
                                         'pinned': spec['upstream']['commit']},
                               pretrained=pretrained, gpus=args.gpus)
    if action == 'done':
        return 'done (already finished)'
    work = Path(args.work_dirs).resolve() / folder.name
    try:
        configs = derive_run(spec, spec_path, arm, seed, args, upstream, pretrained, work, folder)
        t0 = time.perf_counter()
        checkpoint = train(upstream, configs[arm], work, spec.get('threads'))
        train_s = time.perf_counter() - t0
        test_ckpt, layout = spconv_ckpt.prepare_for_test(checkpoint, work / 'test_checkpoint.pth')
        update_record(folder, checkpoint={'evaluated': 'last', 'path': str(checkpoint), 'best': None,
                                          'spconv_layout': layout.as_record()})
        upstream_metrics = test(upstream, configs[arm], test_ckpt, work, spec.get('threads'))
        _, metrics = evaluate_folder(work / 'predictions', data_root(spec, args), spec['data']['test_area'])
        metrics['upstream_cross_check'] = cross_check(metrics, upstream_metrics)
        write_metrics(folder, metrics)
        scalars = merged_scalars(work)
        if scalars is not None:
            write_curves(scalars, folder)
        finish_run(folder, timing={'train_s': round(train_s, 1)}, resumed_from_checkpoint=action == 'resume')
        return 'finished'
    except Exception as err:  # noqa: BLE001 - recorded, then the next run goes on
        finish_run(folder, status='failed', error=f'{type(err).__name__}: {err}')
        print(f'error: {arm} seed {seed}: {err}', file=sys.stderr)
        return 'failed'


def data_root(spec: dict, args: argparse.Namespace) -> Path:
    return Path(args.data or spec['data']['root']).resolve()


def derive_run(spec: dict, spec_path: Path, arm: str, seed: int, args: argparse.Namespace,
               upstream: Upstream, pretrained: dict | None, work: Path, folder: Path) -> dict[str, Path]:
    """The run's configs in ``<work>/configs``; a resumed run must derive the very same files."""
    fresh = work / 'configs.new'
    if fresh.exists():
        shutil.rmtree(fresh)  # our own scratch from an interrupted derivation, never user data
    out = write_arm_configs(spec, spec_path, upstream.root, fresh, seed, data_root(spec, args),
                            Path(pretrained['path']) if pretrained else None, arms=[arm],
                            epochs=args.epochs, iters=args.iters)
    final = work / 'configs'
    if final.exists():
        changed = [p.name for p in fresh.iterdir() if not (final / p.name).exists()
                   or (final / p.name).read_bytes() != p.read_bytes()]
        if changed:
            raise HarnessError(f'{final}: {", ".join(changed)} differ from what the spec derives now; the spec, '
                               'upstream or the options changed since this run started: pass --force for a new '
                               'attempt (the old one is kept)')
        shutil.rmtree(fresh)
    else:
        fresh.rename(final)
    record_dir = folder / 'configs'
    record_dir.mkdir(exist_ok=True)
    for p in sorted(final.iterdir()):
        atomic_write(record_dir / p.name, p.read_bytes(), overwrite=True)
    diff = out['diffs'].get(arm, [])
    update_record(folder, config={'path': str(record_dir / f'{arm}.py'),
                                  'sha256': sha256_file(final / f'{arm}.py')},
                  config_diff=diff, epochs=args.epochs, iters=args.iters)
    return {name: final / f'{name}.py' for name in out['configs']}


def train(upstream: Upstream, config: Path, work: Path, threads: int | None) -> Path:
    """Upstream's train.py; skipped when this run already trained. Returns the last checkpoint."""
    done = work / 'TRAINED'
    if not done.exists():
        resume = (work / 'last_checkpoint').exists()
        cmd = upstream.command('train', str(config), '--work-dir', str(work), *(['--resume'] if resume else []))
        call(cmd, upstream, threads, work / 'train.cmd')
        checkpoint = last_checkpoint(work)
        atomic_write(done, str(checkpoint) + '\n', overwrite=True)
    return Path(done.read_text().strip())


def last_checkpoint(work: Path) -> Path:
    """The path mmengine's CheckpointHook wrote into ``<work>/last_checkpoint``."""
    marker = work / 'last_checkpoint'
    if not marker.exists():
        raise HarnessError(f'{work}: training ended without a checkpoint (no last_checkpoint); see its log')
    path = Path(marker.read_text().strip())
    path = path if path.is_absolute() else work / path.name
    if not path.exists():
        raise HarnessError(f'{marker} names {path}, which does not exist')
    return path


def test(upstream: Upstream, config: Path, checkpoint: Path, work: Path, threads: int | None) -> dict:
    """Upstream's test.py with our dumps added; returns upstream's own metrics."""
    metrics_file = work / 'upstream_metrics.json'
    preds = work / 'predictions'
    if metrics_file.exists() and preds.is_dir():
        return json.loads(metrics_file.read_text())
    if preds.exists():
        shutil.rmtree(preds)  # a partial dump of our own interrupted test; the test redoes every room
    test_config = write_test_config(config, preds, metrics_file)
    call(upstream.command('test', str(test_config), str(checkpoint), '--work-dir', str(work / 'test')),
         upstream, threads, work / 'test.cmd')
    if not metrics_file.exists():
        raise HarnessError(f'{test_config}: upstream\'s test wrote no metrics; see {work / "test"}')
    return json.loads(metrics_file.read_text())


def write_test_config(config: Path, preds: Path, metrics_file: Path) -> Path:
    """``test_<arm>.py``: the arm's config + our prediction dump and metrics dump (nothing else changes)."""
    resolved = load_resolved(config)
    evaluators = resolved['test_evaluator']
    evaluators = evaluators if isinstance(evaluators, list) else [evaluators]
    patch = {
        'test_evaluator': [*evaluators, {'type': 'InfluencerPredictionDump', 'out_dir': str(preds)}],
        'custom_hooks': [*(resolved.get('custom_hooks') or []),
                         {'type': 'InfluencerMetricsDump', 'out_file': str(metrics_file)}],
    }
    header = f'# Generated by the harness: {config.name} + prediction and metrics dumps for testing.\n'
    path = config.with_name(f'test_{config.name}')
    return atomic_write(path, render_child(config, patch, header), overwrite=True)


def call(cmd: list[str], upstream: Upstream, threads: int | None, log_cmd: Path) -> None:
    """Run an upstream tool in the foreground (its own progress and logs); non-zero exit -> error.

    The command line is saved as ``log_cmd`` so that a failed step can be re-run by hand.
    """
    atomic_write(log_cmd, ' '.join(cmd) + '\n', overwrite=True)
    print('$ ' + ' '.join(cmd), flush=True)
    proc = subprocess.run(cmd, env=upstream.env(threads), cwd=upstream.root)
    if proc.returncode != 0:
        raise HarnessError(f'upstream {log_cmd.stem} exited with {proc.returncode} (its log is above; '
                           f'the command is in {log_cmd})')


def cross_check(ours: dict, upstream_metrics: dict) -> dict:
    """Our AP/AP50/AP25 vs upstream's logged values; a difference > 1e-6 fails the run loudly."""
    rows = {}
    for key, theirs_key in CROSS_CHECK.items():
        if theirs_key not in upstream_metrics:
            raise HarnessError(f'upstream metrics lack {theirs_key!r} (have {sorted(upstream_metrics)[:8]})')
        theirs = upstream_metrics[theirs_key]
        mine = ours[key]
        # NaN (no GT of any class) is null on both sides: agreement
        diff = 0.0 if mine is None and theirs is None else (
            abs(mine - theirs) if None not in (mine, theirs) else float('inf'))
        rows[key] = {'ours': mine, 'upstream': theirs, 'abs_diff': diff}
        if not diff <= TOLERANCE:
            raise HarnessError(f'evaluator cross-check failed: our {key} {mine} vs upstream {theirs_key} {theirs} '
                               f'(|diff| {diff:.2e} > {TOLERANCE}); the run is not trusted, report this')
    return {'tolerance': TOLERANCE, 'values': rows, 'passed': True}


def merged_scalars(work: Path) -> Path | None:
    """Training scalars of every log folder of the run (a resume starts a new one); None if none."""
    if not list(work.glob('*/vis_data/scalars.json')):
        return None
    return merge_scalars(work)
