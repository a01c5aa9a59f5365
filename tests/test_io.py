"""Atomic writes never leave partial files nor overwrite silently."""
import pytest

from harness.core.errors import HarnessError
from harness.core.io import atomic_write, result_line


def test_atomic_write_creates_parents_and_refuses_overwrite(tmp_path):
    path = atomic_write(tmp_path / 'a' / 'b.txt', 'one')
    assert path.read_text() == 'one'
    with pytest.raises(HarnessError, match='b.txt exists; pass --force'):
        atomic_write(path, 'two')
    atomic_write(path, 'two', overwrite=True)
    assert path.read_text() == 'two'
    assert sorted(p.name for p in path.parent.iterdir()) == ['b.txt']  # no temp left


def test_failed_write_leaves_no_temp_file(tmp_path):
    with pytest.raises(TypeError):
        atomic_write(tmp_path / 'x.txt', 123)  # neither text nor bytes: the write fails
    assert list(tmp_path.iterdir()) == []


def test_result_line_is_one_json_line():
    line = result_line('bench criterion', 'ok', ratio=0.5)
    assert line == 'RESULT {"verb": "bench criterion", "status": "ok", "ratio": 0.5}'
