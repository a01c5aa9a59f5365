"""The pretrained backbone cache: download once, check the pinned sha256, clear errors otherwise."""
from __future__ import annotations

import hashlib

import pytest

from harness.backends.upstream.pretrained import Pretrained, ensure_pretrained, pretrained_path
from harness.core.errors import HarnessError


def spec_for(url: str, sha256: str | None) -> Pretrained:
    return Pretrained(url, sha256)


@pytest.fixture
def source(tmp_path):
    """A 'release asset' served through a file:// URL (urllib handles it like https)."""
    path = tmp_path / 'server' / 'backbone.pth'
    path.parent.mkdir()
    path.write_bytes(b'weights' * 1000)
    return path


def test_downloads_once_and_checks_the_pin(tmp_path, source):
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    spec = spec_for(source.as_uri(), digest)
    info = ensure_pretrained(spec, tmp_path / 'cache')
    assert info['pinned'] and info['sha256'] == digest
    assert (tmp_path / 'cache' / 'backbone.pth').read_bytes() == source.read_bytes()
    source.unlink()  # cached: no second download
    assert ensure_pretrained(spec, tmp_path / 'cache')['path'] == str(pretrained_path(spec, tmp_path / 'cache'))


def test_unpinned_hash_is_recorded_and_printed(tmp_path, source, capsys):
    info = ensure_pretrained(spec_for(source.as_uri(), None), tmp_path / 'cache')
    assert not info['pinned'] and info['sha256'] in capsys.readouterr().out


def test_mismatch_keeps_the_file_and_says_what_to_do(tmp_path, source):
    spec = spec_for(source.as_uri(), '0' * 64)
    with pytest.raises(HarnessError, match='the spec pins 0000.*move it away and re-run'):
        ensure_pretrained(spec, tmp_path / 'cache')
    assert (tmp_path / 'cache' / 'backbone.pth').exists()


def test_no_network_says_where_to_put_the_file(tmp_path):
    spec = spec_for((tmp_path / 'missing.pth').as_uri(), 'ab' * 32)
    with pytest.raises(HarnessError, match=r'by hand and put it at .*cache/missing.pth \(sha256 abab'):
        ensure_pretrained(spec, tmp_path / 'cache')
    assert not list((tmp_path / 'cache').iterdir())  # no partial file left behind


def test_random_init_needs_nothing(tmp_path):
    assert ensure_pretrained(None, tmp_path) is None
