"""The native training bar: a line a minute into a log file, live redraws on a terminal."""
import types

import torch

from harness.backends.native import hooks


def train(hook: hooks.ProgressHook, iters: int) -> None:
    runner = types.SimpleNamespace(max_iters=iters, iter=0)
    hook.before_train(runner)
    for i in range(iters):
        hook.after_train_iter(runner, i, outputs={'loss': torch.tensor(1.0 / (i + 1))})
    hook.after_train(runner)


def test_into_a_log_file_the_bar_is_not_redrawn_every_iteration(capsys):
    # under capsys stderr is no terminal, as in a Slurm job's .err log
    train(hooks.ProgressHook(), 300)
    lines = capsys.readouterr().err.replace('\r', '\n').split('\n')
    drawn = [line for line in lines if line.startswith('train:')]
    assert len(drawn) <= 3, len(drawn)           # was one per iteration (set_postfix redrew), ~0.8 MB a run
    assert '300/300' in drawn[-1] and 'loss=0.003' in drawn[-1]   # the close shows the last loss


def test_on_a_terminal_the_bar_redraws_as_usual(monkeypatch):
    monkeypatch.setattr(hooks.sys.stderr, 'isatty', lambda: True, raising=False)
    hook = hooks.ProgressHook()
    hook.before_train(types.SimpleNamespace(max_iters=10, iter=0))
    assert hook.bar.mininterval == 0.1
    hook.after_train(None)
