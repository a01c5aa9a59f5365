"""doctor's GPU-dependent checks: skipped with a reason at build time, required at run time."""
from __future__ import annotations

import argparse

import pytest
import torch

from harness.cli import main
from harness.core.paths import REPO
from harness.verbs import doctor


def test_cuda_spconv_is_skipped_without_a_gpu_and_says_where_it_runs(monkeypatch):
    """The GPU image's spconv-cu118 cannot convolve on a CPU; `docker build` sees no GPU."""
    monkeypatch.setattr(doctor, 'spconv_distribution', lambda: ('spconv-cu118', '2.3.6'))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    check = doctor.check_spconv(require_cuda=False)
    assert check.status == 'skip' and 'make doctor' in check.detail and '--require-cuda' in check.detail


def test_cpu_spconv_runs_the_op_on_cpu():
    check = doctor.check_spconv(require_cuda=False)
    assert check.status == 'ok' and 'on cpu' in check.detail, check


@pytest.mark.skipif(torch.cuda.is_available(), reason='a GPU is visible')
def test_require_cuda_without_a_gpu_fails_naming_cuda(capsys):
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    assert doctor.run(parser.parse_args(['--require-cuda', '--skip-upstream'])) == 1
    out = capsys.readouterr().out
    assert 'FAIL  CUDA' in out and 'skip  upstream checkout' in out


@pytest.mark.parametrize('spec, message', [('missing.yaml', 'no such file'),
                                           ('native.yaml', "backend 'native', but doctor checks an upstream checkout"),
                                           ('broken.yaml', 'unreadable spec')])
def test_a_wrong_spec_is_a_one_line_error_before_any_check(tmp_path, capsys, spec, message):
    (tmp_path / 'native.yaml').write_text('experiment: x\nbackend: native\n')
    (tmp_path / 'broken.yaml').write_text('experiment: [x\n')
    assert main(['doctor', '--spec', str(tmp_path / spec)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f'error: --spec {tmp_path / spec}: {message}') and 'or --skip-upstream' in err
    assert 'torch' not in out   # refused before the import checks ran


def test_a_plain_copy_inside_another_checkout_has_no_upstream_commit(tmp_path):
    """The commit line showed this repository's HEAD for a folder inside it (run and derive say 'not git'),
    and its fixes were git commands that act on the enclosing repository."""
    import yaml
    fixture = REPO / 'tests' / 'fixtures' / 'upstream_shape'
    spec = yaml.safe_load((REPO / 'baselines' / 's3dis-area5.yaml').read_text())
    spec['upstream']['config'] = 'configs/model_s3dis.py'
    (tmp_path / 'spec.yaml').write_text(yaml.safe_dump(spec))
    checks = doctor.check_upstream(tmp_path / 'spec.yaml', fixture)
    assert [(c.name, c.status) for c in checks] == [('upstream checkout', 'FAIL')]
    assert checks[0].detail == f'{fixture}: not a git checkout of its own (a plain copy)'
    # the fix clones upstream: `git -C <copy> stash` would have stashed the enclosing repository's work
    assert 'git clone' in checks[0].fix and 'stash' not in checks[0].fix and f'-C {fixture}' not in checks[0].fix


def test_a_missing_dependency_gets_a_fix_line_naming_what_to_install(tmp_path, monkeypatch):
    """mmdet3d.models without numba printed FAIL and no line under 'fix:'."""
    (tmp_path / 'needs_numba.py').write_text('import numba_not_here.core\n')
    (tmp_path / 'needs_sklearn.py').write_text('import sklearn_alias\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    check = doctor.check_import('needs_numba')
    assert check.status == 'FAIL' and check.fix.startswith('pip install numba_not_here ')
    monkeypatch.setitem(doctor.PIP_NAMES, 'sklearn_alias', 'scikit-learn')
    assert doctor.check_import('needs_sklearn').fix.startswith('pip install scikit-learn ')
    assert doctor.check_import('needs_numba', fix='use the images').fix == 'use the images'
    (tmp_path / 'needs_json_part.py').write_text('import json.not_a_part\n')   # installed, lacking a part
    assert doctor.check_import('needs_json_part').fix.startswith('json.not_a_part: not in the build installed here')
    (tmp_path / 'needs_mmcv.py').write_text('import mmcv_absent_here\n')
    monkeypatch.setattr(doctor, 'BUILT', ('mmcv_absent_here',))   # a CUDA build: never a plain pip install
    assert 'pip install' not in doctor.check_import('needs_mmcv').fix
