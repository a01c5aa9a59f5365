"""OneFormer3D's own tools, run in the foreground, and what they leave in a work dir.

:class:`Upstream` names one checkout's paths and commands; :func:`call` runs
tools/train.py or tools/test.py with the output shown and kept; :func:`test`
adds our prediction and metrics dumps to an arm's config and runs the test;
:func:`cross_check` holds upstream's AP values against ours; the rest reads a
work dir (the last checkpoint, logged steps, a recorded divergence).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from harness.backends.upstream.config import load_resolved, render_child
from harness.backends.upstream.part import Source
from harness.core.errors import HarnessError
from harness.core.io import atomic_write
from harness.core.paths import REPO

# Our metric key -> upstream's logged key (UnifiedSegMetric).
CROSS_CHECK = {'ap': 'all_ap', 'ap50': 'all_ap_50%', 'ap25': 'all_ap_25%'}
TOLERANCE = 1e-6


def upstream_root(source: Source, given: Path | None) -> Path:
    """--upstream-root, else $ONEFORMER3D_ROOT, else the spec's (the images' fixed path)."""
    root = given or os.environ.get('ONEFORMER3D_ROOT') or source.root
    return Path(root).resolve()


def checked_commit(root: Path, source: Source, allow_other: bool) -> str | None:
    """The checkout's commit (None: not a git checkout), once it is the spec's pinned one or allowed.

    Raises:
        HarnessError: another commit (or none) without ``allow_other``; names both and the fix.
    """
    from harness.core.env import checkout_commit
    have = checkout_commit(root)
    if have != source.commit and not allow_other:
        raise HarnessError(f'{root}: upstream at {have or "an unknown commit (not git)"}, the spec pins '
                           f'{source.commit[:7]}; check out {source.commit[:7]} or pass --allow-other-commit '
                           '(recorded)')
    return have


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
        env['PYTHONPATH'] = os.pathsep.join(p for p in (str(self.root), str(REPO), env.get('PYTHONPATH')) if p)
        # Checkpoints loaded here are this run's own or the hash-checked pretrained one;
        # torch >= 2.6 would refuse mmengine's pickled metadata otherwise.
        env['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = '1'
        if threads:
            env['OMP_NUM_THREADS'] = str(threads)
        return env


def diverged(work: Path) -> HarnessError | None:
    """The divergence our plugin's hook recorded, as one clear error (None if it did not diverge)."""
    path = work / 'DIVERGED.json'
    if not path.exists():
        log = work / 'train.log'
        if log.exists() and 'contains invalid numeric entries' in log.read_text()[-20000:]:
            return HarnessError('model outputs became non-finite (the Hungarian matcher saw NaN costs); '
                                f'the run diverged: see {log}')
        return None
    info = json.loads(path.read_text())
    return HarnessError(f'loss became {info["loss"]} at iteration {info["iteration"]} (last finite loss '
                        f'{info["last_finite"]}); the run diverged: lower the learning rate or check the criterion')


def train_rows(path: Path) -> int:
    """How many training lines (with a loss) a scalars.json holds."""
    return sum(1 for line in path.read_text().splitlines() if '"loss"' in line)


def train_steps(scalars: Path | None) -> int:
    """The last training iteration logged (mmengine logs train lines at the global iteration)."""
    if scalars is None:
        return 0
    steps = [json.loads(line).get('step', 0) for line in scalars.read_text().splitlines() if '"loss"' in line]
    return int(max(steps, default=0))


def last_checkpoint(work: Path) -> Path:
    """The path mmengine's CheckpointHook wrote into ``<work>/last_checkpoint``."""
    marker = work / 'last_checkpoint'
    if not marker.exists():
        raise HarnessError(f'{work}: training ended without a checkpoint (no last_checkpoint); see its log')
    path = Path(marker.read_text().strip())
    path = path if path.is_absolute() else work / path.name
    if not path.exists():
        raise HarnessError(f'{marker} names {path}, which does not exist; move {work} away and run again')
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
        raise HarnessError(f'{test_config}: upstream\'s test wrote no metrics; see {work / "test.log"}')
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
    """Run an upstream tool in the foreground; its output is shown and kept in ``<step>.log``.

    The command line is saved as ``log_cmd`` so that a failed step can be re-run by hand.

    Raises:
        HarnessError: a non-zero exit (naming the log and the command file).
    """
    atomic_write(log_cmd, ' '.join(cmd) + '\n', overwrite=True)
    log = log_cmd.with_suffix('.log')
    print('$ ' + ' '.join(cmd), flush=True)
    with open(log, 'a', encoding='utf-8') as keep:
        proc = subprocess.Popen(cmd, env=upstream.env(threads), cwd=upstream.root, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            sys.stdout.write(line)
            keep.write(line)
        code = proc.wait()
    if code != 0:
        raise HarnessError(f'upstream {log_cmd.stem} exited with {code}; its log is {log}, '
                           f'the command is in {log_cmd}')


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
