"""spconv weight layout of a checkpoint: decide, by inspection, whether it needs the fix before testing.

mmdet3d's spconv loader permutes every sparse-conv weight by (4, 0, 1, 2, 3)
unless the checkpoint's ``state_dict._metadata`` says version 2 for that
module (mmdet3d's spconv2 loader hook). spconv 2.x keeps weights as
[out, k0, k1, k2, in] (KRSC). So a KRSC checkpoint without version-2
metadata (mmengine 0.7.3 dropped it) would be scrambled on load; upstream's
tools/fix_spconv_checkpoint.py pre-permutes by (1, 2, 3, 4, 0) for that case.
We never permute blindly: the metadata says what the loader will do, the
weight shapes say which layout the file holds, and only the one bad
combination is fixed, into a new file.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.core.errors import HarnessError
from harness.core.io import atomic_write

TO_LEGACY = (1, 2, 3, 4, 0)  # KRSC -> [k0, k1, k2, in, out]; the loader's (4, 0, 1, 2, 3) undoes it


@dataclass
class LayoutReport:
    """What inspection found.

    Attributes:
        weights: 5-D weight keys inspected.
        layout: 'krsc', 'legacy' or 'none' (no 5-D weights).
        loader_permutes: whether mmdet3d's loader will permute them (metadata version != 2).
        action: 'none' (loads correctly) or 'fix' (pre-permute needed).
    """
    weights: list[str]
    layout: str
    loader_permutes: bool
    action: str

    def as_record(self) -> dict:
        return {'n_weights': len(self.weights), 'layout': self.layout,
                'loader_permutes': self.loader_permutes, 'action': self.action}


def weight_layout(shape: tuple[int, ...]) -> str:
    """'krsc' if the kernel sits in dims 1-3, 'legacy' if in dims 0-2, else 'ambiguous'.

    Kernels here are cubic (k, k, k); channel counts differ from k, so only a
    weight whose channels equal its kernel size could be ambiguous.
    """
    krsc = shape[1] == shape[2] == shape[3]
    legacy = shape[0] == shape[1] == shape[2]
    if krsc != legacy:
        return 'krsc' if krsc else 'legacy'
    return 'ambiguous'


def inspect_state_dict(state: dict) -> LayoutReport:
    """Layout of the 5-D (sparse conv) weights and what mmdet3d's loader will do with them.

    Raises:
        HarnessError: mixed or ambiguous layouts, or mixed metadata (nothing safe to do).
    """
    metadata = getattr(state, '_metadata', None) or {}
    weights = [k for k, v in state.items() if k.endswith('.weight') and getattr(v, 'dim', lambda: 0)() == 5]
    if not weights:
        return LayoutReport([], 'none', False, 'none')
    layouts = {weight_layout(tuple(state[k].shape)) for k in weights}
    versions = {(metadata.get(k[: -len('.weight')]) or {}).get('version') for k in weights}
    if len(layouts) != 1 or 'ambiguous' in layouts:
        raise HarnessError(f'sparse-conv weights have layouts {sorted(layouts)}; cannot tell how to load them')
    if len(versions) != 1:
        raise HarnessError(f'sparse-conv modules carry metadata versions {sorted(map(str, versions))}; '
                           'mixed checkpoints are not supported')
    layout, permutes = layouts.pop(), versions.pop() != 2
    if layout == 'legacy' and not permutes:
        raise HarnessError('legacy-layout sparse-conv weights marked version 2: the loader would not '
                           'permute them and loading would fail on shapes')
    return LayoutReport(weights, layout, permutes, 'fix' if layout == 'krsc' and permutes else 'none')


def prepare_for_test(checkpoint: Path, out: Path) -> tuple[Path, LayoutReport]:
    """The checkpoint to test: itself, or a fixed copy at ``out`` (the original is never modified).

    Only for checkpoints this harness trained (loaded with weights_only=False).
    """
    ckpt = torch.load(checkpoint, map_location='cpu', weights_only=False)
    if 'state_dict' not in ckpt:
        raise HarnessError(f'{checkpoint}: no state_dict; not an mmengine checkpoint')
    report = inspect_state_dict(ckpt['state_dict'])
    if report.action == 'none':
        return Path(checkpoint), report
    for key in report.weights:
        ckpt['state_dict'][key] = ckpt['state_dict'][key].permute(*TO_LEGACY).contiguous()
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return atomic_write(out, buf.getvalue(), overwrite=True), report
