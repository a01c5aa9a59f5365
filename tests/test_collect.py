"""scalars.json (mmengine LocalVisBackend) -> tidy curves."""
import json

import pytest

from harness.study.curves import read_scalars, write_curves
from harness.core.errors import HarnessError


def test_train_and_val_lines_become_tidy_rows(tmp_path):
    path = tmp_path / 'scalars.json'
    lines = [{'lr': 1e-4, 'loss': 3.0, 'inst_loss': 2.0, 'epoch': 1, 'iter': 1, 'step': 1},
             {'lr': 1e-4, 'loss': 2.5, 'inst_loss': 1.6, 'epoch': 1, 'iter': 2, 'step': 2},
             {'all_ap_50%': 0.41, 'miou': 0.6, 'step': 1}]
    path.write_text('\n'.join(json.dumps(line) for line in lines) + '\n{"loss": 2.')  # interrupted write
    frame = read_scalars(path)
    assert list(frame.columns[:3]) == ['phase', 'step', 'epoch']
    assert frame['phase'].tolist() == ['train', 'train', 'val']
    assert frame.loc[2, 'all_ap_50%'] == 0.41
    out = write_curves(path, tmp_path)
    assert out.read_text().splitlines()[0].startswith('phase,step,epoch')


def test_corrupt_middle_line_is_an_error(tmp_path):
    path = tmp_path / 'scalars.json'
    path.write_text('{"loss": 1, "step": 1}\n{oops\n{"loss": 1, "step": 2}\n')
    with pytest.raises(HarnessError, match='scalars.json:2: not JSON'):
        read_scalars(path)
