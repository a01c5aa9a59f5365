"""mmengine hooks of the native backend."""
from __future__ import annotations

from mmengine.hooks import Hook
from tqdm import tqdm


class ProgressHook(Hook):
    """A tqdm bar over training iterations with the current loss (mmengine logs at WARNING)."""

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        self.bar = tqdm(total=runner.max_iters, initial=runner.iter, desc='train', unit='it')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if outputs and 'loss' in outputs:
            self.bar.set_postfix(loss=f'{float(outputs["loss"]):.3f}')
        self.bar.update()

    def after_train(self, runner) -> None:
        self.bar.close()
