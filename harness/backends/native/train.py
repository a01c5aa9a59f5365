"""Train the native model through mmengine's Runner, then predict the test area's rooms."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from harness.study.curves import merge_scalars
from harness.data import read_room
from harness.data.reader import list_rooms
from harness.evaluation.predictions import save_predictions


def normalise(points: np.ndarray) -> torch.Tensor:
    """float32 (N, 6): xyz as stored, rgb -> (rgb - 127.5) / 127.5 (upstream's NormalizePointsColor_)."""
    pts = torch.from_numpy(np.array(points, dtype=np.float32))
    pts[:, 3:] = (pts[:, 3:] - 127.5) / 127.5
    return pts


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


def runner_for(cfg, work_dir: Path, resume: bool = False):
    """An mmengine Runner (iteration-based, scalars.json logs, periodic checkpoints) for one run.

    ``resume``: continue from the last checkpoint mmengine recorded in ``work_dir``.
    """
    from mmengine.dataset import InfiniteSampler
    from mmengine.runner import Runner, set_random_seed

    from harness.backends.native.hooks import ProgressHook
    from harness.backends.native.model import NativeOneFormer3D
    # Seed before the model and the loader exist: Runner seeds only when it starts,
    # after both were built from whatever state the RNGs had.
    set_random_seed(cfg.randomness.seed, deterministic=cfg.randomness.deterministic)
    model_cfg = dict(cfg.model)
    model_cfg.pop('type')
    dataset = RoomsDataset(cfg.data.root, cfg.data.train_areas, cfg.data.num_points, cfg.randomness.seed)
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
        custom_hooks=[ProgressHook()], resume=resume,
        log_processor=dict(by_epoch=False),
        visualizer=dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')]),
        randomness=dict(seed=cfg.randomness.seed, deterministic=cfg.randomness.deterministic),
        # unique: mmengine keeps one logger/visualizer per experiment name, and its
        # default (a timestamp) is shared by runs started within the same second
        experiment_name=f'{work_dir.parent.name}-{time.time_ns()}',
        log_level='WARNING')


def train_and_predict(cfg, run_dir: Path) -> dict:
    """Train (resuming from this run's own last checkpoint if any), then predict every test room.

    Returns:
        dict with ``iterations``, ``s_per_iter``, ``scalars`` (path of
        vis_data/scalars.json), ``predictions`` (folder of <room>.npz).
    """
    work_dir = run_dir / 'work_dir'
    resume = (work_dir / 'last_checkpoint').exists()
    runner = runner_for(cfg, work_dir, resume=resume)
    start = time.perf_counter()
    # torch >= 2.6 loads weights only by default, which mmengine's resume cannot
    # use; lifted only here, for checkpoints this harness wrote into its own work dir.
    with _full_checkpoint_load(resume):
        runner.train()
    seconds = time.perf_counter() - start
    scalars = merge_scalars(work_dir)
    model = runner.model.eval()
    out = run_dir / 'predictions'
    with torch.no_grad():
        for name in tqdm(list_rooms(cfg.data.root, cfg.data.test_area), desc='predict', unit='room'):
            room = read_room(cfg.data.root, name)
            pred = model([{'points': normalise(room.points)}], mode='predict')[0]
            save_predictions(out / f'{name}.npz', pred['pred_masks'].numpy(), pred['pred_labels'].numpy(),
                             pred['pred_scores'].numpy(), overwrite=True)
    return {'iterations': cfg.train.iters, 's_per_iter': seconds / cfg.train.iters,
            'scalars': scalars, 'predictions': out, 'resumed': resume}


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
