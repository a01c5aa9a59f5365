"""The upstream backend: OneFormer3D's own tools/train.py and tools/test.py on derived configs.

For each run the runner asks it to
1. derive the arm's child config over upstream's (and the baseline's, to
   prove the one-key difference) -- ``derive``;
2. train with upstream's tools/train.py (``--resume`` from the run's own last
   checkpoint after an interruption; ``torchrun`` for ``--gpus N``) -- ``train``;
3. inspect the last checkpoint's spconv layout (spconv_ckpt), fixing a copy
   only where mmdet3d's loader would scramble it, and test it with upstream's
   tools/test.py through a child config that adds our prediction and metrics
   dumps (plugin) -- ``predict``;
4. require upstream's own ``all_ap`` / ``all_ap_50%`` / ``all_ap_25%`` to
   equal our evaluator's within 1e-6 -- ``check_metrics``.
Markers in the work dir (``TRAINED``, ``upstream_metrics.json``) let a re-run
resume where it stopped.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

from harness.backends.upstream import spconv_ckpt
from harness.backends.upstream.config import write_arm_configs
from harness.backends.upstream.part import UpstreamPart, parse_part
from harness.backends.upstream.pretrained import DEFAULT_CACHE, ensure_pretrained, pretrained_path
from harness.backends.upstream.tools import (Upstream, call, checked_commit, cross_check, diverged, last_checkpoint,
                                             test, train_rows, train_steps, upstream_root)
from harness.core.errors import HarnessError
from harness.core.io import atomic_write
from harness.core import schema as sc
from harness.study.backend import Backend, Derived, Predicted, Prepared, RunContext, RunOptions, Trained
from harness.study.curves import merge_scalars
from harness.study.matrix import RunPoint
from harness.study.spec import Spec


@dataclass(frozen=True)
class UpstreamOptions:
    """The upstream backend's command-line options (see :meth:`UpstreamBackend.add_arguments`)."""

    gpus: int = 1
    epochs: int | None = None
    iters: int | None = None
    upstream_root: Path | None = None
    allow_other_commit: bool = False
    cache: Path = DEFAULT_CACHE

    # flags of argv() whose value is a host path: a container job sees it at its bound place
    PATH_FLAGS: ClassVar[tuple[str, ...]] = ('--cache',)

    def __post_init__(self) -> None:
        """Refuse what the spec's ``schedule:`` would refuse, naming the flag (before any file is written).

        Raises:
            HarnessError: --epochs / --iters outside :data:`harness.core.schema.ITERATIONS` (the spec's
                bound), both given, or --gpus < 1.
        """
        for flag, value in (('--epochs', self.epochs), ('--iters', self.iters)):
            problem = sc.optional(sc.ITERATIONS)(value)
            if problem:
                raise HarnessError(f"{flag} {value!r} {problem}; fix the value, or leave {flag} out for the spec's "
                                   'schedule')
        if self.epochs is not None and self.iters is not None:
            raise HarnessError(f'--epochs {self.epochs} and --iters {self.iters} both given; give one (--iters '
                               'replaces the epoch schedule)')
        if sc.positive_int(self.gpus):
            raise HarnessError(f'--gpus {self.gpus!r} {sc.positive_int(self.gpus)}; give --gpus 1 or more')

    def argv(self) -> list[str]:
        """The flags that give these options again (a Slurm job's command line; paths absolute)."""
        out = []
        cache = None if self.cache == DEFAULT_CACHE else Path(self.cache).resolve()
        for flag, value in (('--epochs', self.epochs), ('--iters', self.iters), ('--gpus', self.gpus),
                            ('--upstream-root', self.upstream_root), ('--cache', cache)):
            if value is not None and not (flag == '--gpus' and value == 1):
                out += [flag, str(value)]
        return out + (['--allow-other-commit'] if self.allow_other_commit else [])


@dataclass(frozen=True)
class Checkout:
    """What ``prepare`` found: the checkout, the pretrained backbone, and the options derive needs."""

    upstream: Upstream
    pretrained: dict | None
    options: UpstreamOptions
    commit: str | None = None   # the checkout's (None: not git), named in every derived file


@dataclass(frozen=True)
class Tested:
    """What upstream's test produced besides the predictions: its own metrics and the spconv layout."""

    upstream_metrics: dict
    spconv_layout: dict


class UpstreamBackend(Backend):
    """Unmodified OneFormer3D at a pinned commit (in the images, or a checkout named by the user)."""

    name = 'upstream'
    spec_keys = (frozenset({'upstream', 'schedule', 'pretrained'}), frozenset({'randomness', 'overrides'}))
    location_keys = ('*data_root', 'load_from')
    Options = UpstreamOptions

    @classmethod
    def parse_spec(cls, raw: dict, path: Path) -> UpstreamPart:
        return parse_part(raw, path)

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        """Options of the upstream backend (run, derive, plan, status)."""
        group.add_argument('--upstream-root', type=Path, default=None,
                           help="OneFormer3D checkout (default: $ONEFORMER3D_ROOT, else the spec's upstream.root)")
        group.add_argument('--epochs', type=int, default=None,
                           help="schedule override (default: the spec's); PolyLR's end follows it")
        group.add_argument('--iters', type=int, default=None, help='iteration schedule instead of epochs (smoke runs)')
        group.add_argument('--gpus', type=int, default=1,
                           help='GPUs per run: > 1 launches upstream\'s train.py with torchrun (--launcher pytorch)')
        group.add_argument('--allow-other-commit', action='store_true',
                           help='run an upstream checkout that is not at the spec\'s commit (recorded)')
        group.add_argument('--cache', type=Path, default=DEFAULT_CACHE, help='pretrained checkpoint cache')

    @classmethod
    def options(cls, values: Mapping[str, Any]) -> UpstreamOptions:
        return UpstreamOptions(gpus=values['gpus'], epochs=values['epochs'], iters=values['iters'],
                               upstream_root=values['upstream_root'],
                               allow_other_commit=values['allow_other_commit'], cache=values['cache'])

    def prepare(self, spec: Spec, options: RunOptions) -> Prepared:
        """The checkout (at the pinned commit unless allowed otherwise) and the pretrained backbone."""
        opts: UpstreamOptions = options.backend
        part: UpstreamPart = spec.part
        upstream = Upstream(upstream_root(part.upstream, opts.upstream_root), opts.gpus)
        have = checked_commit(upstream.root, part.upstream, opts.allow_other_commit)
        pretrained = ensure_pretrained(part.pretrained, opts.cache)
        record = {'upstream': {'root': str(upstream.root), 'commit': have, 'pinned': part.upstream.commit},
                  'pretrained': pretrained, 'gpus': opts.gpus, 'epochs': opts.epochs, 'iters': opts.iters}
        return Prepared(record, Checkout(upstream, pretrained, opts, have))

    def derive(self, spec: Spec, prepared: Prepared, point: RunPoint, data_root: Path) -> Derived:
        """The arm's child config (and the baseline's), loaded back and checked by mmengine."""
        found: Checkout = prepared.context
        with tempfile.TemporaryDirectory(prefix='derive-') as tmp:
            out = write_arm_configs(spec, found.upstream.root, Path(tmp), point.seed, Path(data_root).resolve(),
                                    pretrained_path(spec.part.pretrained, found.options.cache), arms=[point.arm],
                                    epochs=found.options.epochs, iters=found.options.iters,
                                    ablation=point.ablation_dict, commit=found.commit)
            files = {p.name: p.read_text() for p in out['configs'].values()}
        resolved = out['resolved'][point.arm]
        loop = resolved['train_cfg']
        return Derived(config=resolved, diff=out['diffs'].get(point.arm, []), files=files,
                       iterations=loop.get('max_iters') if loop.get('type') == 'IterBasedTrainLoop' else None)

    def train(self, ctx: RunContext) -> Trained:
        """Upstream's train.py; skipped when this run already trained. Returns the last checkpoint."""
        upstream = ctx.prepared.context.upstream
        work, done = ctx.work_dir, ctx.work_dir / 'TRAINED'
        logs_before = set(work.glob('*/vis_data/scalars.json'))
        t0 = time.perf_counter()
        if not done.exists():
            resume = (work / 'last_checkpoint').exists()
            config = work / 'configs' / f'{ctx.point.arm}.py'
            cmd = upstream.command('train', str(config), '--work-dir', str(work), *(['--resume'] if resume else []))
            try:
                call(cmd, upstream, ctx.spec.threads, work / 'train.cmd')
            except HarnessError as err:
                raise diverged(work) or err
            atomic_write(done, str(last_checkpoint(work)) + '\n', overwrite=True)
        seconds = time.perf_counter() - t0
        scalars = merge_scalars(work) if list(work.glob('*/vis_data/scalars.json')) else None
        new_logs = set(work.glob('*/vis_data/scalars.json')) - logs_before
        return Trained(iterations=train_steps(scalars), seconds=seconds,
                       iters_this_session=sum(train_rows(p) for p in new_logs), scalars=scalars,
                       checkpoint=Path(done.read_text().strip()))

    def predict(self, ctx: RunContext, trained: Trained) -> Predicted:
        """Upstream's test.py on the last checkpoint (spconv layout checked), with our dumps added."""
        work = ctx.work_dir
        checkpoint, layout = spconv_ckpt.prepare_for_test(trained.checkpoint, work / 'test_checkpoint.pth')
        metrics = test(ctx.prepared.context.upstream, work / 'configs' / f'{ctx.point.arm}.py', checkpoint, work,
                       ctx.spec.threads)
        return Predicted(work / 'predictions', Tested(metrics, layout.as_record()))

    def check_metrics(self, ctx: RunContext, metrics: dict, predicted: Predicted) -> dict:
        tested: Tested = predicted.extra
        return {'upstream_cross_check': cross_check(metrics, tested.upstream_metrics),
                'spconv_layout': tested.spconv_layout}
