"""`python -m harness` pins the CPU kernels: the same run is bitwise the same whatever the shell set.

The native backend trains through torch, MKL and oneDNN, which pick kernels
by CPU (harness.core.cpu). A run started under opposite outside settings of
their variables must give the same weights and metrics, and its record must
name the kernels used. The control case shows the pin is what makes them
equal: left to the machine (``HARNESS_CPU_ISA=native``), an AVX-512 CPU
trains other weights.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from harness.core import cpu
from harness.core.paths import REPO

LOW = {'ATEN_CPU_CAPABILITY': 'default', 'MKL_CBWR': 'COMPATIBLE', 'DNNL_MAX_CPU_ISA': 'SSE41'}
HIGH = {'ATEN_CPU_CAPABILITY': 'avx512', 'MKL_CBWR': 'AUTO', 'DNNL_MAX_CPU_ISA': 'ALL'}
needs_pin = pytest.mark.skipif(cpu.unpinnable({}) is not None, reason='the pin applies to x86-64 CPUs with AVX2')


@pytest.fixture(scope='module')
def spec(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('pin')
    raw = yaml.safe_load((REPO / 'baselines' / 'smoke-native.yaml').read_text())
    raw.update(experiment='pin', arms=['hungarian'])
    raw['data'].update(root=str(root / 'data'), synth={'rooms_per_area': 1, 'points_per_room': 1500, 'seed': 0},
                       num_points=1500)
    raw['config']['train'].update(iters=6, val_interval=6)
    path = root / 'spec.yaml'
    path.write_text(yaml.safe_dump(raw))
    return path


def run(spec: Path, out: Path, outside: dict[str, str]) -> tuple[str, dict, dict]:
    """One run in a fresh process under ``outside``; (sha256 of the final weights, metrics, record)."""
    env = {k: v for k, v in os.environ.items() if k not in (*cpu.PIN, cpu.OPT_OUT)}
    proc = subprocess.run([sys.executable, '-m', 'harness', 'run', '--spec', str(spec), '--runs', str(out / 'runs'),
                           '--work-dirs', str(out / 'work')], env={**env, **outside}, cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = out / 'runs' / 'pin__hungarian__s0'
    record = json.loads((folder / 'run.json').read_text())
    state = torch.load(record['checkpoint']['path'], map_location='cpu', weights_only=False)['state_dict']
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].numpy().tobytes())
    return digest.hexdigest(), json.loads((folder / 'metrics.json').read_text()), record


@needs_pin
def test_outside_settings_do_not_change_weights_or_metrics(spec, tmp_path):
    low, high = run(spec, tmp_path / 'low', LOW), run(spec, tmp_path / 'high', HIGH)
    assert low[0] == high[0]
    assert {k: low[1][k] for k in ('ap', 'ap50', 'ap25', 'per_class')} == \
           {k: high[1][k] for k in ('ap', 'ap50', 'ap25', 'per_class')}
    kernels = high[2]['env']['cpu_kernels']
    assert kernels['torch_capability'] == 'AVX2' and kernels['pin'] == 'pinned to AVX2'
    assert kernels['variables']['MKL_CBWR'] == 'AVX2,STRICT' and 'avx2' in kernels['cpu_flags']


@needs_pin
@pytest.mark.skipif('avx512f' not in cpu.cpu_flags(), reason='the control needs a CPU whose own kernels are not AVX2')
def test_without_the_pin_this_machine_trains_other_weights(spec, tmp_path):
    pinned = run(spec, tmp_path / 'pinned', HIGH)
    native = run(spec, tmp_path / 'native', {**HIGH, cpu.OPT_OUT: 'native'})
    assert native[2]['env']['cpu_kernels']['torch_capability'] == 'AVX512'
    assert native[0] != pinned[0]


def test_the_pin_is_refused_where_it_cannot_hold(monkeypatch):
    assert cpu.pin({cpu.OPT_OUT: 'native'}).startswith('not pinned')
    monkeypatch.setattr(cpu, 'cpu_flags', lambda: {'sse4_2'})
    monkeypatch.setattr(cpu.platform, 'machine', lambda: 'x86_64')
    environ: dict = {}
    assert 'lacks avx2, fma' in cpu.pin(environ) and environ == {}
    monkeypatch.setattr(cpu.platform, 'machine', lambda: 'aarch64')
    assert 'not x86-64' in cpu.pin({})
