"""``python -m harness doctor``: is this environment able to run the upstream backend?

Checks imports and versions, the full mmcv ops, numpy <= 2.3, our criterion
in mmdet3d's registry after ``custom_imports``, a tiny spconv forward and
backward (on CUDA when a GPU is visible), the MinkowskiEngine flavour, and
the upstream checkout (commit pinned by the spec, no local changes). Prints
one screen; every problem comes with its fix on one line; exit 1 if any.
The last build step of both images runs it.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from harness.core import yamlfile
from harness.core.errors import HarnessError
from harness.core.io import result_line
from harness.core.paths import BASELINES

HELP = 'check that this environment can run the upstream backend (imports, versions, registry, spconv, upstream)'
SPEC = BASELINES / 's3dis-area5.yaml'


@dataclass
class Check:
    """One line of the report: ``status`` is 'ok', 'FAIL', 'info' or 'skip' (not run here, and why)."""
    name: str
    status: str
    detail: str
    fix: str = ''


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the doctor verb."""
    parser.add_argument('--spec', type=Path, default=SPEC, help='spec whose upstream commit to expect')
    parser.add_argument('--upstream-root', type=Path, default=None,
                        help="OneFormer3D checkout (default: $ONEFORMER3D_ROOT, else the spec's upstream.root)")
    parser.add_argument('--require-cuda', action='store_true',
                        help='fail unless a CUDA GPU is visible; run spconv on it (make doctor, at run time)')
    parser.add_argument('--skip-upstream', action='store_true',
                        help='no OneFormer3D checkout here (an offline replica of an image\'s stack): '
                             'report its checks as skipped')


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


# module -> its PyPI name, where they differ (a missing dependency's fix line names what to install)
PIP_NAMES = {'sklearn': 'scikit-learn', 'yaml': 'pyyaml', 'cv2': 'opencv-python', 'PIL': 'pillow'}
# built for a CUDA / torch pair or pinned to a commit: a plain pip install gets the wrong one
BUILT = ('torch', 'mmcv', 'mmdet', 'mmdet3d', 'spconv', 'torch_scatter', 'MinkowskiEngine')


def missing_module_fix(name: str) -> str:
    """The fix line for ``ModuleNotFoundError: No module named <name>``."""
    top = name.split('.')[0]
    if top in BUILT or '.' in name and importlib.util.find_spec(top) is not None:
        # an installed package lacking a part (mmcv-lite has no mmcv._ext), or one that needs its matched build
        return f'{name}: not in the build installed here; install the pinned build (docker/README.md) or use the images'
    return f'pip install {PIP_NAMES.get(top, top)} (the images pin it: docker/README.md)'


def check_import(module: str, dist: str | None = None, fix: str = '') -> Check:
    """Import ``module``; report the distribution's version. A dependency it lacks gets a fix line
    naming what to install where ``fix`` gives none."""
    try:
        importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - any import failure is the finding
        if not fix and isinstance(err, ModuleNotFoundError) and err.name:
            fix = missing_module_fix(err.name)
        return Check(f'import {module}', 'FAIL', f'{type(err).__name__}: {str(err)[:80]}', fix)
    return Check(f'import {module}', 'ok', version(dist or module) or '(no metadata)')


def check_mmcv_ops() -> Check:
    fix = 'install full mmcv with compiled ops (not mmcv-lite): see docker/README.md'
    try:
        importlib.import_module('mmcv._ext')
    except Exception as err:  # noqa: BLE001
        return Check('mmcv compiled ops', 'FAIL', f'{type(err).__name__}: {str(err)[:60]}', fix)
    return Check('mmcv compiled ops', 'ok', f'mmcv {version("mmcv")}')


def check_numpy() -> Check:
    import numpy as np
    ok = hasattr(np, 'in1d')
    return Check('numpy <= 2.3 (np.in1d)', 'ok' if ok else 'FAIL', np.__version__,
                 '' if ok else 'pip install "numpy<2.4" (upstream\'s evaluator calls np.in1d)')


def check_registry() -> Check:
    """InfluencerCriterion must be buildable by name after a config FILE's custom_imports."""
    fix = 'pip install -e . in this environment (influencerformer must be importable next to mmdet3d)'
    try:
        from mmengine.config import Config
        from mmdet3d.registry import MODELS
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / 'probe.py'
            path.write_text("custom_imports = dict(imports=['influencerformer.mmdet3d_plugin'])\n")
            Config.fromfile(str(path))
        found = 'InfluencerCriterion' in MODELS.module_dict  # .get() would import all of mmdet3d.models
    except Exception as err:  # noqa: BLE001
        return Check('registry: InfluencerCriterion', 'FAIL', f'{type(err).__name__}: {str(err)[:60]}', fix)
    return Check('registry: InfluencerCriterion', 'ok' if found else 'FAIL',
                 'in mmdet3d MODELS via custom_imports' if found else 'not registered', '' if found else fix)


def spconv_distribution() -> tuple[str | None, str | None]:
    """(name, version) of the installed spconv wheel: ``spconv`` (CPU) or ``spconv-cuXXX``."""
    for dist in ('spconv', 'spconv-cu118', 'spconv-cu117', 'spconv-cu120', 'spconv-cu121'):
        if version(dist):
            return dist, version(dist)
    return None, None


def check_spconv(require_cuda: bool = False) -> Check:
    """A SubMConv3d forward + backward: on CUDA when a GPU is visible, else on CPU with the stream shim.

    A CUDA build of spconv (the GPU image) cannot convolve on the CPU (its implicit
    GEMM kernels are CUDA only), and ``docker build`` sees no GPU: then the op is
    skipped with a note, and ``make doctor`` (``--require-cuda``) runs it on the GPU.
    """
    dist, dist_version = spconv_distribution()
    try:
        import torch
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    except Exception as err:  # noqa: BLE001
        return Check('spconv op', 'FAIL', f'torch: {type(err).__name__}: {str(err)[:60]}', 'install torch first')
    if device == 'cpu' and dist not in (None, 'spconv') and not require_cuda:
        return Check('spconv op', 'skip', f'{dist} {dist_version} needs a GPU and none is visible (docker build '
                     'sees none); `make doctor` runs it on the GPU (--require-cuda)')
    try:
        import spconv.pytorch as spconv

        from harness.backends.spconv_shim import apply_cpu_stream_shim
        apply_cpu_stream_shim()
        coords = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 1, 1]], dtype=torch.int32, device=device)
        feats = torch.ones(3, 2, device=device, requires_grad=True)
        conv = spconv.SubMConv3d(2, 4, 3, padding=1, bias=False, indice_key='doctor').to(device)
        out = conv(spconv.SparseConvTensor(feats, coords, [4, 4, 4], 1))
        out.features.sum().backward()
        ok = feats.grad is not None and out.features.shape == (3, 4)
    except Exception as err:  # noqa: BLE001
        return Check('spconv op', 'FAIL', f'{type(err).__name__}: {str(err)[:70]} (on {device})',
                     'install spconv-cu118 (GPU) or spconv (CPU) matching cumm; see docker/README.md')
    return Check('spconv op', 'ok' if ok else 'FAIL', f'SubMConv3d fwd+bwd on {device}, {dist} {dist_version}')


def check_cuda(require: bool) -> Check:
    import torch
    if not torch.cuda.is_available():
        return Check('CUDA', 'FAIL' if require else 'info',
                     f'no GPU visible (torch {torch.__version__}, built for CUDA {torch.version.cuda})',
                     'run the gpu service (docker compose run gpu ...) on a machine with an NVIDIA driver'
                     if require else '')
    major, minor = torch.cuda.get_device_capability()
    arch = f'sm_{major}{minor}'
    ok = arch in torch.cuda.get_arch_list()
    return Check('CUDA', 'ok' if ok else 'FAIL', f'{torch.cuda.get_device_name()} ({arch}), CUDA {torch.version.cuda}',
                 '' if ok else f'this torch has no {arch} kernels; use the image (torch cu118 covers sm_80/86/90)')


def check_minkowski() -> Check:
    try:
        me = importlib.import_module('MinkowskiEngine')
    except Exception as err:  # noqa: BLE001
        return Check('MinkowskiEngine', 'FAIL', f'{type(err).__name__}: {str(err)[:60]}',
                     'pip install ./docker/shims (the S3DIS-path stand-in) or the real MinkowskiEngine')
    flavour = 'stand-in (S3DIS path only)' if getattr(me, 'STAND_IN', False) else 'real'
    return Check('MinkowskiEngine', 'ok', f'{flavour}, {getattr(me, "__version__", "?")}')


def check_upstream(spec_path: Path, given: Path | None) -> list[Check]:
    """The checkout: present, at the spec's commit, unmodified, importable."""
    from harness import backends
    from harness.backends.upstream.tools import upstream_root
    from harness.core.env import checkout_commit, git_state
    spec, _ = backends.load(spec_path)
    source = spec.part.upstream
    root = upstream_root(source, given)
    want = source.commit
    if not (root / source.config).is_file():
        return [Check('upstream checkout', 'FAIL', f'{root}: no {source.config}',
                      f'git clone {source.repo} and check out {want[:7]}; pass --upstream-root')]
    sha = checkout_commit(root)   # a plain copy inside another checkout has no commit of its own
    if sha is None:   # git -C on it would act on the enclosing repository (a stash would take its work)
        return [Check('upstream checkout', 'FAIL', f'{root}: not a git checkout of its own (a plain copy)',
                      f'git clone {source.repo} DIR && git -C DIR checkout {want[:7]}; pass --upstream-root DIR')]
    at = sha == want
    clean = git_state(root)['dirty'] is False
    checks = [Check('upstream commit', 'ok' if at else 'FAIL', f'{root} @ {sha[:12]}',
                    '' if at else f'git -C {root} checkout {want[:7]}'),
              Check('upstream unmodified', 'ok' if clean else 'FAIL', 'git status --porcelain empty' if clean
                    else 'local changes', '' if clean else f'git -C {root} stash (never edit upstream)')]
    sys.path.insert(0, str(root))
    try:
        checks.append(check_import('oneformer3d', fix='the full upstream stack is needed (mmcv ops, spconv, '
                                   'torch-scatter, MinkowskiEngine or the stand-in); use the images'))
        checks[-1].detail = 'upstream package imports' if checks[-1].status == 'ok' else checks[-1].detail
    finally:
        sys.path.remove(str(root))
    return checks


def skipped_upstream() -> Check:
    return Check('upstream checkout', 'skip', '--skip-upstream: no OneFormer3D checkout checked or imported')


def upstream_spec(path: Path) -> Path:
    """``--spec`` as given, once it is a readable YAML file naming the upstream backend.

    Read as plain YAML, not through the spec loader: that imports torch, which doctor may be
    about to report missing.

    Raises:
        HarnessError: no such file, not YAML, or another backend's spec; names the file and the fix.
    """
    fix = f'pass an upstream spec (e.g. --spec {SPEC.relative_to(BASELINES.parent)}) or --skip-upstream'
    if not Path(path).exists():
        raise HarnessError(f'--spec {path}: no such file; {fix}')
    try:
        raw = yamlfile.read_yaml(path, 'spec', fix)
    except HarnessError as err:
        raise HarnessError(f'--spec {err}') from err
    backend = raw.get('backend') if isinstance(raw, dict) else None
    if backend != 'upstream':
        raise HarnessError(f'--spec {path}: backend {backend!r}, but doctor checks an upstream checkout; {fix}')
    return Path(path)


def run(args: argparse.Namespace) -> int:
    """Run every check; a crashing check becomes a FAIL line, never a traceback."""
    if not args.skip_upstream:
        upstream_spec(args.spec)   # a wrong --spec is the user's to fix, before a minute of import checks
    steps: list[Callable[[], Check | list[Check]]] = [
        lambda: check_import('torch'), lambda: check_numpy(), lambda: check_import('mmengine'),
        # Config pulls in yapf (and its importlib_metadata): every config upstream reads goes through it
        lambda: check_import('mmengine.config', 'mmengine'),
        lambda: check_import('mmcv'), check_mmcv_ops, lambda: check_import('mmdet'),
        lambda: check_import('mmdet3d'),
        # what `import oneformer3d` loads of mmdet3d; evaluation pulls in the lyft / nuScenes devkits (sklearn)
        lambda: check_import('mmdet3d.datasets', 'mmdet3d'), lambda: check_import('mmdet3d.models', 'mmdet3d'),
        lambda: check_import('mmdet3d.evaluation', 'mmdet3d'),
        # every derived config logs to TensorBoard: mmengine imports this when a Runner starts
        lambda: check_import('torch.utils.tensorboard', 'tensorboard', 'pip install tensorboard (pinned in the images)'),
        lambda: check_import('torch_scatter', 'torch-scatter', 'pip install torch-scatter for this torch/CUDA'),
        # --executor slurm submits job arrays through it, from inside the image on a cluster
        lambda: check_import('submitit', fix='pip install submitit (pinned in the images)'),
        lambda: check_spconv(args.require_cuda), lambda: check_cuda(args.require_cuda), check_minkowski,
        lambda: check_import('influencerformer', fix='pip install -e .'), check_registry,
        lambda: skipped_upstream() if args.skip_upstream else check_upstream(args.spec, args.upstream_root)]
    checks: list[Check] = []
    for step in steps:
        try:
            out = step()
        except Exception as err:  # noqa: BLE001 - the report must finish
            out = Check(getattr(step, '__name__', 'check'), 'FAIL', f'{type(err).__name__}: {err}',
                        traceback.format_exc(limit=1).splitlines()[-1])
        checks.extend(out if isinstance(out, list) else [out])
    print(report(checks))
    failed = [c.name for c in checks if c.status == 'FAIL']
    print(result_line('doctor', 'ok' if not failed else 'failed', failed=failed,
                      image=os.environ.get('HARNESS_IMAGE')))
    return 1 if failed else 0


def report(checks: list[Check]) -> str:
    """One screen: status, check, detail; then one fix line per failure."""
    width = max(len(c.name) for c in checks)
    lines = [f'{c.status:<4}  {c.name:<{width}}  {c.detail}' for c in checks]
    fixes = [f'  - {c.name}: {c.fix}' for c in checks if c.status == 'FAIL' and c.fix]
    return '\n'.join(lines + (['', 'fix:'] + fixes if fixes else []))
