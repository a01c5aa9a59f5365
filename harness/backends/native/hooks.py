"""mmengine hooks of the native backend: progress bar, divergence guard, validation on the test area."""
from __future__ import annotations

import math
import sys
from pathlib import Path

from mmengine.hooks import Hook
from tqdm import tqdm

from harness.backends.native.predict import predict_rooms
from harness.data import CLASS_NAMES, read_room
from harness.evaluation.ap import evaluate_instances


LOG_INTERVAL_S = 60   # seconds between progress lines when stderr is a file, not a terminal


class ProgressHook(Hook):
    """A tqdm bar over training iterations with the current loss (mmengine logs at WARNING)."""

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        # into a file (a Slurm job's .err log) a redraw per iteration is ~0.8 MB a run: one a minute there
        interval = 0.1 if sys.stderr.isatty() else LOG_INTERVAL_S
        self.bar = tqdm(total=runner.max_iters, initial=runner.iter, desc='train', unit='it', mininterval=interval)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if outputs and 'loss' in outputs:   # shown at the next redraw (set_postfix would redraw now)
            self.bar.set_postfix(loss=f'{float(outputs["loss"].detach()):.3f}', refresh=False)
        self.bar.update()

    def after_train(self, runner) -> None:
        self.bar.close()


class DivergenceHook(Hook):
    """Stop at the first non-finite loss (FloatingPointError); remember the last finite one.

    Attributes:
        first_iter: the iteration this session started at (after a resume).
        last_finite: the last finite total loss seen.
    """

    priority = 'VERY_HIGH'   # before the logger and the checkpoint: a NaN step is never saved

    def __init__(self) -> None:
        self.first_iter: int = 0
        self.last_finite: float | None = None

    def before_train(self, runner) -> None:
        self.first_iter = runner.iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        loss = float(outputs['loss'].detach()) if outputs and 'loss' in outputs else 0.0
        if not math.isfinite(loss):
            raise FloatingPointError(f'loss became {loss}')
        self.last_finite = loss


class ValidationHook(Hook):
    """Every ``interval`` iterations (and at the end): instance AP on the test area, logged as scalars.

    Keys are upstream's (``all_ap``, ``all_ap_50%``, ``all_ap_25%``) plus
    ``all_ap_75%``, so compare reads native and upstream curves alike. The
    test area is also what upstream validates on (its config does so); the
    best of these values is reported only as a labelled extra.
    """

    priority = 'LOW'

    def __init__(self, root: Path, area: int, interval: int) -> None:
        self.root, self.area, self.interval = Path(root), area, interval

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1
        if done % self.interval == 0 or done == runner.max_iters:
            runner.visualizer.add_scalars(self.evaluate(runner.model), step=done)

    def evaluate(self, model) -> dict[str, float]:
        was_training = model.training
        model.eval()
        scenes = []
        for name, pred in predict_rooms(model, self.root, self.area, bar=False):
            room = read_room(self.root, name)
            scenes.append({'gt_semantic': room.semantic, 'gt_instance': room.instance,
                           **{k: v.numpy() for k, v in pred.items()}})
        result = evaluate_instances(scenes, CLASS_NAMES)
        model.train(was_training)
        keys = {'ap': 'all_ap', 'ap50': 'all_ap_50%', 'ap25': 'all_ap_25%', 'ap75': 'all_ap_75%'}
        # NaN (no GT of any class) is not logged: a gap in the curve, never a fake 0
        return {name: float(result[k]) for k, name in keys.items() if not math.isnan(result[k])}
