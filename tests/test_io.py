"""Atomic writes never leave partial files nor overwrite silently."""
import errno
import os

import pytest

from harness.core.errors import HarnessError, os_error_message
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


@pytest.mark.parametrize('code, text', [
    (errno.ENAMETOOLONG, 'name too long'), (errno.ENOTDIR, 'a part of this path is a file, not a folder'),
    (errno.EISDIR, 'is a folder where a file is expected'), (errno.ENOSPC, 'no space left on the device'),
    (errno.EROFS, 'read-only file system'), (errno.EACCES, 'permission denied'),
])
def test_os_errors_say_their_cause_and_path(code, text):
    message = os_error_message(OSError(code, os.strerror(code), '/x/y'))
    assert message.startswith('/x/y: ') and text in message and 'free space or fix the permissions' not in message


def test_a_failed_write_names_the_file_being_written(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')   # as write() fails: no file name
    monkeypatch.setattr(os, 'fsync', full)
    with pytest.raises(OSError) as err:
        atomic_write(tmp_path / 'run.json', '{}')
    assert err.value.filename == str(tmp_path / 'run.json') and list(tmp_path.iterdir()) == []
    assert os_error_message(err.value) == f'{tmp_path / "run.json"}: no space left on the device; free space, ' \
                                          'then run the same command again (runs resume)'
