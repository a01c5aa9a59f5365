"""``TensorField`` with UNWEIGHTED_AVERAGE quantisation, ``.sparse()`` and ``.inverse_mapping``."""
from __future__ import annotations

import enum

import torch

from ._placeholders import StandInError


class SparseTensorQuantizationMode(enum.IntEnum):
    """MinkowskiEngine's quantisation modes; only UNWEIGHTED_AVERAGE is implemented."""
    RANDOM_SUBSAMPLE = 0
    UNWEIGHTED_AVERAGE = 1
    UNWEIGHTED_SUM = 2
    NO_QUANTIZATION = 3
    MAX_POOL = 4


class VoxelTensor:
    """What ``TensorField.sparse()`` returns: the voxels of the field.

    Attributes:
        coordinates: int32 (V, 4) unique ``(b, x, y, z)``, first-occurrence order.
        features: (V, C) unweighted mean of the points of each voxel.
        coordinate_map_key: the token ``TensorField.inverse_mapping`` expects.
    """

    def __init__(self, coordinates: torch.Tensor, features: torch.Tensor, key: object):
        self.coordinates = coordinates
        self.features = features
        self.coordinate_map_key = key

    @property
    def C(self) -> torch.Tensor:  # MinkowskiEngine's short names
        return self.coordinates

    @property
    def F(self) -> torch.Tensor:
        return self.features


class TensorField:
    """Points with integer coordinates; voxelised by :meth:`sparse`.

    Args:
        features: (N, C) float.
        coordinates: (N, 4) integer ``(b, x, y, z)`` (from ``batch_sparse_collate``).
        quantization_mode: UNWEIGHTED_AVERAGE (MinkowskiEngine's default) only.
    """

    def __init__(self, features: torch.Tensor, coordinates: torch.Tensor,
                 quantization_mode=SparseTensorQuantizationMode.UNWEIGHTED_AVERAGE, **kwargs):
        if quantization_mode != SparseTensorQuantizationMode.UNWEIGHTED_AVERAGE:
            raise StandInError(f'TensorField(quantization_mode={quantization_mode!r}) is not available '
                               'in the stand-in (UNWEIGHTED_AVERAGE only); build the image with '
                               '--build-arg MINKOWSKI=real')
        unknown = set(kwargs) - {'device', 'requires_grad', 'allocator_type', 'minkowski_algorithm'}
        if unknown:
            raise StandInError(f'TensorField({", ".join(sorted(unknown))}=...) is not available in the '
                               'stand-in; build the image with --build-arg MINKOWSKI=real')
        if coordinates.dim() != 2 or len(coordinates) != len(features):
            raise ValueError(f'TensorField: coordinates {tuple(coordinates.shape)} and features '
                             f'{tuple(features.shape)}; expected (N, D + 1) and (N, C)')
        self.features = features
        self.coordinates = coordinates
        self._key = object()
        self._inverse: torch.Tensor | None = None

    @property
    def F(self) -> torch.Tensor:
        return self.features

    @property
    def C(self) -> torch.Tensor:
        return self.coordinates

    def sparse(self) -> VoxelTensor:
        """Unique coordinates in first-occurrence order, mean features per voxel."""
        uniq, inverse = torch.unique(self.coordinates, dim=0, return_inverse=True)
        n_vox, n_pts = len(uniq), len(self.coordinates)
        arange = torch.arange(n_pts, device=inverse.device)
        first = torch.full((n_vox,), n_pts, dtype=torch.long, device=inverse.device)
        first = first.scatter_reduce(0, inverse, arange, reduce='amin')
        # Renumber voxels by their first point: the row order of CPU MinkowskiEngine.
        order = torch.argsort(first)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(n_vox, device=order.device)
        self._inverse = rank[inverse]
        counts = torch.zeros(n_vox, dtype=self.features.dtype, device=self.features.device)
        counts.index_add_(0, self._inverse, torch.ones_like(self._inverse, dtype=counts.dtype))
        sums = torch.zeros((n_vox,) + tuple(self.features.shape[1:]), dtype=self.features.dtype,
                           device=self.features.device)
        sums.index_add_(0, self._inverse, self.features)
        feats = sums / counts.view(-1, *([1] * (self.features.dim() - 1)))
        return VoxelTensor(uniq[order], feats, self._key)

    def inverse_mapping(self, key: object) -> torch.Tensor:
        """int64 (N,): the voxel row of every point, for the key ``sparse()`` returned."""
        if key is not self._key or self._inverse is None:
            raise StandInError('TensorField.inverse_mapping: pass the coordinate_map_key of this '
                               "field's own .sparse() result (the only mapping the stand-in keeps)")
        return self._inverse
