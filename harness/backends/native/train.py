"""Train the native model through mmengine's Runner (the hooks report progress, divergence and validation AP)."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from harness.backends.native.hooks import DivergenceHook, ProgressHook, ValidationHook
from harness.backends.native.predict import normalise
from harness.core.errors import HarnessError
from harness.data import read_room
from harness.data.reader import list_rooms
from harness.study.backend import Trained
from harness.study.curves import merge_scalars


class RoomsDataset(Dataset):
    """Training rooms with upstream's augmentations: point sampling, flips, scale, translation."""

    def __init__(self, root: Path, areas: list[int], num_points: int | None, seed: int) -> None:
        self.root, self.num_points = Path(root), num_points
        self.names = [n for a in areas for n in list_rooms(root, a)]
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        room = read_room(self.root, self.names[i])
        idx = (self.rng.choice(len(room.points), self.num_points, replace=True)  # upstream samples with replacement
               if self.num_points else np.arange(len(room.points)))
        pts = normalise(room.points[idx])
        for axis in (0, 1):  # RandomFlip3D, p = 0.5 per axis
            if self.rng.random() < 0.5:
                pts[:, axis] = -pts[:, axis]
        pts[:, :3] = pts[:, :3] * float(self.rng.uniform(0.9, 1.1)) + torch.from_numpy(
            self.rng.normal(0, 0.1, 3).astype(np.float32))
        return {'points': pts, 'instance': torch.from_numpy(np.asarray(room.instance[idx])),
                'semantic': torch.from_numpy(np.asarray(room.semantic[idx]))}


def collate(items: list[dict]) -> dict:
    """mmengine calls model(**batch): the model takes the list of scenes."""
    return {'scenes': items}


def val_interval(cfg) -> int:
    """Iterations between validations on the test area (``train.val_interval``; default: 5 per run)."""
    return int(cfg.train.get('val_interval') or max(1, cfg.train.iters // 5))


def runner_for(cfg, work_dir: Path, resume: bool = False):
    """An mmengine Runner (iteration-based, scalars.json + TensorBoard logs, checkpoints) for one run.

    ``resume``: continue from the last checkpoint mmengine recorded in ``work_dir``.
    """
    from mmengine.dataset import InfiniteSampler
    from mmengine.runner import Runner, set_random_seed

    from harness.backends.native.model import NativeOneFormer3D
    # Seed before the model and the loader exist: Runner seeds only when it starts,
    # after both were built from whatever state the RNGs had.
    set_random_seed(cfg.randomness.seed, deterministic=cfg.randomness.deterministic)
    model_cfg = dict(cfg.model)
    model_cfg.pop('type')
    dataset = RoomsDataset(cfg.data.root, cfg.data.train_areas, cfg.data.get('num_points'), cfg.randomness.seed)
    # Infinite: mmengine's iteration loop sleeps 2 s whenever a finite loader restarts.
    loader = DataLoader(dataset, batch_size=cfg.train.batch_size, collate_fn=collate,
                        sampler=InfiniteSampler(dataset, shuffle=True, seed=cfg.randomness.seed))
    return Runner(
        model=NativeOneFormer3D(**model_cfg), work_dir=str(work_dir), train_dataloader=loader,
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=cfg.train.lr, weight_decay=cfg.train.weight_decay),
                           clip_grad=dict(max_norm=10, norm_type=2)),
        param_scheduler=dict(type='PolyLR', power=0.9, begin=0, end=cfg.train.iters, by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=cfg.train.iters),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           # every ~10% of the run, so an interrupted run resumes close to where it stopped
                           checkpoint=dict(type='CheckpointHook', interval=max(1, cfg.train.iters // 10),
                                           by_epoch=False, max_keep_ckpts=2)),
        custom_hooks=[DivergenceHook(), ValidationHook(cfg.data.root, cfg.data.test_area, val_interval(cfg)),
                      ProgressHook()],
        resume=resume, log_processor=dict(by_epoch=False),
        # TensorBoard next to the local scalars: `tensorboard --logdir work_dirs` watches live runs
        visualizer=dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend'),
                                                         dict(type='TensorboardVisBackend')]),
        randomness=dict(seed=cfg.randomness.seed, deterministic=cfg.randomness.deterministic),
        # unique: mmengine keeps one logger/visualizer per experiment name, and its
        # default (a timestamp) is shared by runs started within the same second
        experiment_name=f'{work_dir.parent.name}-{time.time_ns()}',
        log_level='WARNING')


def train(cfg, work_dir: Path) -> Trained:
    """Train, resuming from this run's own last checkpoint if there is one.

    Returns:
        the iterations of all sessions and of this one, its seconds, the merged
        scalars.json, the last checkpoint and the trained model (eval mode).

    Raises:
        HarnessError: the loss or the model's outputs became non-finite (names the iteration).
    """
    work_dir = Path(work_dir)
    resume = _resume_point(work_dir)
    runner = runner_for(cfg, work_dir, resume=resume)
    start = time.perf_counter()
    # torch >= 2.6 loads weights only by default, which mmengine's resume cannot
    # use; lifted only here, for checkpoints this harness wrote into its own work dir.
    with _full_checkpoint_load(resume), _divergence_errors(runner):
        runner.train()
    seconds = time.perf_counter() - start
    first = _hook(runner, 'DivergenceHook').first_iter   # the iteration this session resumed at
    checkpoint = work_dir / Path((work_dir / 'last_checkpoint').read_text().strip()).name
    return Trained(iterations=runner.iter, seconds=seconds, iters_this_session=runner.iter - first,
                   scalars=merge_scalars(work_dir), checkpoint=checkpoint, model=runner.model.eval())


def _resume_point(work_dir: Path) -> bool:
    """Whether to resume, after making ``last_checkpoint`` name a checkpoint that loads.

    A checkpoint that was deleted, or torn by a full disk, is passed over for
    the newest older one that loads (each step is printed); with none left the
    run starts again from iteration 0 (its earlier logs are superseded).
    """
    marker = work_dir / 'last_checkpoint'
    if not marker.exists():
        return False
    named = work_dir / Path(marker.read_text().strip()).name
    candidates = sorted(work_dir.glob('iter_*.pth'), key=lambda p: int(p.stem.split('_')[1]), reverse=True)
    for path in [named] + [c for c in candidates if c != named]:
        if _loads(path):
            if path != named:
                print(f'note: {named.name} is missing or unreadable; resuming from {path.name}')
                marker.write_text(str(path))
            return True
        print(f'note: {path.name} is missing or unreadable (deleted, or torn by a full disk); passed over')
    print(f'note: {work_dir}: no loadable checkpoint; training starts again from iteration 0')
    marker.unlink()
    return False


def _loads(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        torch.load(path, map_location='cpu', weights_only=False)   # this run's own checkpoint
        return True
    except Exception:  # noqa: BLE001 - a torn file fails in many ways; all mean "not this one"
        return False


def _hook(runner, name: str):
    return next(h for h in runner.hooks if type(h).__name__ == name)


@contextlib.contextmanager
def _divergence_errors(runner) -> Iterator[None]:
    """Non-finite losses or outputs -> one HarnessError naming the iteration and the last finite loss."""
    try:
        yield
    except FloatingPointError as err:
        hook = _hook(runner, 'DivergenceHook')
        last = f'{hook.last_finite:.6g}' if hook.last_finite is not None else 'none'
        raise HarnessError(f'{err} at iteration {runner.iter + 1} (last finite loss {last}); the run diverged: '
                           'lower the learning rate or check the criterion') from None


@contextlib.contextmanager
def _full_checkpoint_load(enabled: bool):
    """Set TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 for the duration, if enabled."""
    old = os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD')
    if enabled:
        os.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = '1'
    try:
        yield
    finally:
        if enabled and old is None:
            os.environ.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
        elif enabled:
            os.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] = old
