"""A stand-in for MinkowskiEngine on OneFormer3D's S3DIS path (pure PyTorch).

Why: MinkowskiEngine is the most fragile build in upstream's stack and has no
Hopper support, yet the S3DIS model only uses it to voxelise the input in
``S3DISOneFormer3D.collate`` (its backbone is spconv). This module implements
exactly that, with MinkowskiEngine's documented semantics:

* ``utils.batch_sparse_collate([(coords, feats), ...])`` -> int32 (N, 4)
  coordinates ``[batch, floor(x), floor(y), floor(z)]`` and the concatenated
  features;
* ``TensorField(features, coordinates)`` (quantisation UNWEIGHTED_AVERAGE),
  ``.sparse()`` -> one row per unique ``(b, x, y, z)`` in first-occurrence
  order (as MinkowskiEngine on CPU), features = unweighted mean of the points
  in the voxel (duplicates counted with multiplicity), with ``.coordinates``,
  ``.features`` and ``.coordinate_map_key``;
* ``field.inverse_mapping(key)`` -> int64 (N,), each point's voxel row.

Every other name that ``oneformer3d/mink_unet.py`` touches at import time
exists as a placeholder (``RegionType``, ``MinkowskiOps``, the layer classes)
so that ``import oneformer3d`` works; constructing or calling any of them, or
asking for any other name, raises :class:`StandInError` saying so. Build the
image with ``--build-arg MINKOWSKI=real`` for the real library (needed for the
ScanNet models only).
"""
from __future__ import annotations

import enum

from . import MinkowskiOps, utils
from ._field import SparseTensorQuantizationMode, TensorField, VoxelTensor
from ._placeholders import StandInError, module_getattr, placeholder

__version__ = '0.5.4+standin'
STAND_IN = True  # read by `python -m harness doctor`


class RegionType(enum.IntEnum):
    """Kernel region types; only named at import time by mink_unet.py."""
    HYPER_CUBE = 0
    HYPER_CROSS = 1
    CUSTOM = 2


MinkowskiNetwork = placeholder('MinkowskiNetwork')
MinkowskiReLU = placeholder('MinkowskiReLU')
MinkowskiBatchNorm = placeholder('MinkowskiBatchNorm')
MinkowskiInstanceNorm = placeholder('MinkowskiInstanceNorm')
MinkowskiConvolution = placeholder('MinkowskiConvolution')
MinkowskiConvolutionTranspose = placeholder('MinkowskiConvolutionTranspose')
KernelGenerator = placeholder('KernelGenerator')
SparseTensor = placeholder('SparseTensor')

__all__ = ['utils', 'MinkowskiOps', 'TensorField', 'VoxelTensor', 'RegionType',
           'SparseTensorQuantizationMode', 'StandInError', 'STAND_IN']

# Any other MinkowskiEngine name: a clear error instead of a bare AttributeError.
__getattr__ = module_getattr('MinkowskiEngine')
