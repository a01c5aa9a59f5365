"""spconv on a CPU-only torch: its backward asks torch for the current CUDA stream, which fails without CUDA."""
from __future__ import annotations

import torch

_APPLIED = False


def apply_cpu_stream_shim() -> bool:
    """Make spconv's ``get_current_stream`` return 0 when CUDA is unavailable. Idempotent.

    Returns:
        True if the shim is (now) in place, False when CUDA is available (not needed).
    """
    global _APPLIED
    if torch.cuda.is_available():
        return False
    if not _APPLIED:
        import spconv.pytorch.cppcore as cppcore
        import spconv.pytorch.ops as ops

        def no_stream() -> int:
            return 0
        cppcore.get_current_stream = no_stream
        ops.get_current_stream = no_stream  # imported by name into ops
        _APPLIED = True
    return True
