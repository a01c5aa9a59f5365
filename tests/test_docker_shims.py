"""The MinkowskiEngine stand-in (docker/shims) against a direct NumPy reading of ME's semantics."""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

SHIMS = Path(__file__).resolve().parents[1] / 'docker' / 'shims'


@pytest.fixture(scope='module')
def ME():
    """The stand-in package, imported from docker/shims (never a real MinkowskiEngine)."""
    sys.path.insert(0, str(SHIMS))
    try:
        for name in [m for m in sys.modules if m.split('.')[0] == 'MinkowskiEngine']:
            del sys.modules[name]
        module = importlib.import_module('MinkowskiEngine')
        assert module.STAND_IN
        yield module
    finally:
        sys.path.remove(str(SHIMS))
        for name in [m for m in sys.modules if m.split('.')[0] == 'MinkowskiEngine']:
            del sys.modules[name]


def reference_voxelise(samples: list[tuple[np.ndarray, np.ndarray]]):
    """Documented semantics, one point at a time: floor, batch column, first-occurrence rows, means."""
    rows: dict[tuple, int] = {}
    sums: list[np.ndarray] = []
    counts: list[int] = []
    inverse, coords = [], []
    for b, (xyz, feats) in enumerate(samples):
        for p, f in zip(xyz, feats):
            key = (b, *(int(np.floor(v)) for v in p))
            coords.append(key)
            if key not in rows:
                rows[key] = len(rows)
                sums.append(np.zeros_like(f, dtype=np.float64))
                counts.append(0)
            sums[rows[key]] += f
            counts[rows[key]] += 1
            inverse.append(rows[key])
    voxels = np.array(list(rows), dtype=np.int64).reshape(-1, 4)
    means = np.array([s / c for s, c in zip(sums, counts)])
    return np.array(coords), voxels, means, np.array(inverse)


def random_samples(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Float coordinates around zero (negatives, exact integers) and forced duplicate points."""
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(rng.integers(1, 4)):
        n = int(rng.integers(5, 300))
        xyz = rng.uniform(-3, 3, (n, 3)).astype(np.float32)
        xyz[: n // 5] = np.round(xyz[: n // 5])  # exact integers, incl. -0.0 / negatives
        dup = rng.integers(0, n, n // 4)
        xyz = np.concatenate([xyz, xyz[dup]])  # with-replacement sampling duplicates
        feats = rng.normal(size=(len(xyz), 6)).astype(np.float32)
        samples.append((xyz, feats))
    return samples


@pytest.mark.parametrize('seed', range(8))
def test_voxelisation_matches_reference(ME, seed):
    samples = random_samples(seed)
    coords, feats = ME.utils.batch_sparse_collate([(torch.from_numpy(x), torch.from_numpy(f))
                                                   for x, f in samples])
    ref_coords, ref_vox, ref_means, ref_inv = reference_voxelise(samples)
    assert coords.dtype == torch.int32
    np.testing.assert_array_equal(coords.numpy(), ref_coords)
    np.testing.assert_array_equal(feats.numpy(), np.concatenate([f for _, f in samples]))
    field = ME.TensorField(features=feats, coordinates=coords)
    tensor = field.sparse()
    np.testing.assert_array_equal(tensor.coordinates.numpy(), ref_vox)
    np.testing.assert_allclose(tensor.features.numpy(), ref_means, rtol=1e-5, atol=1e-6)
    inverse = field.inverse_mapping(tensor.coordinate_map_key)
    assert inverse.dtype == torch.int64
    np.testing.assert_array_equal(inverse.numpy(), ref_inv)


def test_collate_accepts_numpy_and_floors_negatives(ME):
    xyz = np.array([[-0.5, 0.0, 1.99], [-1.0, -0.01, 2.0]], dtype=np.float32)
    coords, _ = ME.utils.batch_sparse_collate([(xyz, np.zeros((2, 1), np.float32))] * 2)
    assert coords.tolist() == [[0, -1, 0, 1], [0, -1, -1, 2], [1, -1, 0, 1], [1, -1, -1, 2]]


def test_names_mink_unet_needs_at_import(ME):
    assert [ME.RegionType(i) for i in range(3)][:2] == [ME.RegionType.HYPER_CUBE, ME.RegionType.HYPER_CROSS]
    ops = importlib.import_module('MinkowskiEngine.MinkowskiOps')
    from MinkowskiEngine import MinkowskiReLU  # as mink_unet.py does

    class Net(ME.MinkowskiNetwork):  # subclassing must work; building must not
        pass
    assert MinkowskiReLU is ME.MinkowskiReLU

    with pytest.raises(ME.StandInError, match='not available in the stand-in'):
        Net()
    with pytest.raises(ME.StandInError, match='MINKOWSKI=real'):
        ops.cat
    with pytest.raises(ME.StandInError, match='MinkowskiEngine.MinkowskiPruning'):
        ME.MinkowskiPruning
    assert not hasattr(ME, 'SomethingElse')  # probes see a missing name, not a crash


def test_unsupported_modes_and_foreign_keys_fail_clearly(ME):
    coords, feats = ME.utils.batch_sparse_collate([(np.zeros((3, 3)), np.ones((3, 2)))])
    with pytest.raises(ME.StandInError, match='UNWEIGHTED_AVERAGE only'):
        ME.TensorField(feats, coords, quantization_mode=ME.SparseTensorQuantizationMode.RANDOM_SUBSAMPLE)
    field = ME.TensorField(features=feats, coordinates=coords)
    field.sparse()
    with pytest.raises(ME.StandInError, match='coordinate_map_key'):
        field.inverse_mapping(object())


def test_package_installs_as_MinkowskiEngine(tmp_path):
    """The images `pip install docker/shims`; the wheel must carry the package."""
    src = shutil.copytree(SHIMS, tmp_path / 'src', ignore=shutil.ignore_patterns('__pycache__'))
    out = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                          '-q', '-w', str(tmp_path), str(src)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob('*.whl'))
    names = zipfile.ZipFile(wheel).namelist()
    assert 'MinkowskiEngine/__init__.py' in names and 'MinkowskiEngine/_field.py' in names
