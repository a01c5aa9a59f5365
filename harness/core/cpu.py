"""Pinned CPU kernels: one instruction set on every x86-64 machine, so CPU training is reproducible across them.

torch (ATen), MKL and oneDNN pick their kernels from the CPU at run time:
an AVX-512 machine and an AVX2 machine run different code, sum in different
orders, and the same seed gives bitwise different weights after a few
iterations (then different AP). Setting the three variables below before
torch loads makes all three use their AVX2 kernels, which every x86-64
machine of the last decade has (Intel Haswell, 2013; AMD Excavator, 2015;
Zen and later). ``python -m harness`` calls :func:`pin` before anything
imports torch, overriding what the calling shell set; ``HARNESS_CPU_ISA=native``
opts out (the record then says so).

Not covered (docs/native-backend.md): the thread count (the specs use one
thread), non-x86 CPUs (Arm picks its own kernels), GPUs, and any library
that dispatches on CPU features without honouring these variables.
"""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Mapping, MutableMapping

#: the variables and the values that cap each library at AVX2
PIN = {'ATEN_CPU_CAPABILITY': 'avx2', 'MKL_CBWR': 'AVX2,STRICT', 'DNNL_MAX_CPU_ISA': 'AVX2'}
#: set to ``native`` to leave the kernels to each library (not reproducible across machines)
OPT_OUT = 'HARNESS_CPU_ISA'
#: what the AVX2 kernels need from the CPU
NEEDED = ('avx2', 'fma')
#: the CPU flags a record lists (the ones that change which kernels run)
SHOWN = ('sse4_2', 'avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512vl', 'avx512_vnni', 'avx512_bf16',
         'amx_tile')


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('flags'):
                return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def unpinnable(environ: Mapping[str, str] = os.environ) -> str | None:
    """Why the kernels cannot (or must not) be pinned here; None when they can."""
    if environ.get(OPT_OUT) == 'native':
        return f'{OPT_OUT}=native'
    if platform.machine().lower() not in ('x86_64', 'amd64'):
        return f'{platform.machine()} is not x86-64 (torch picks its own kernels)'
    missing = [f for f in NEEDED if f not in cpu_flags()]
    if missing:
        return f'this CPU lacks {", ".join(missing)} (AVX2 kernels would not run)'
    return None


def pin(environ: MutableMapping[str, str] = os.environ) -> str:
    """Cap torch, MKL and oneDNN at AVX2 in ``environ`` (call before torch is imported).

    Returns:
        what was done, one line: ``pinned to AVX2``, or why not (opted out, not x86-64,
        no AVX2, torch already imported).
    """
    why = unpinnable(environ)
    if why:
        return f'not pinned: {why}'
    environ.update(PIN)
    if 'torch' in sys.modules:
        return 'not pinned: torch was imported before the pin (kernels already chosen)'
    return 'pinned to AVX2'


def state(note: str | None = None) -> dict:
    """What a run record says about the CPU kernels: torch's capability, the variables, the CPU's flags."""
    capability = None
    if 'torch' in sys.modules:
        import torch
        # torch >= 2.1 has the public call; 2.0 (the images' torch) only the private one
        get = getattr(getattr(torch.backends, 'cpu', None), 'get_cpu_capability', None) or getattr(
            torch._C, '_get_cpu_capability', None)
        capability = get() if get else None
    flags = cpu_flags()
    return {'torch_capability': capability, 'pin': note or os.environ.get('HARNESS_CPU_PIN'),
            'variables': {k: os.environ.get(k) for k in (*PIN, OPT_OUT)},
            'cpu_flags': [f for f in SHOWN if f in flags], 'machine': platform.machine()}
