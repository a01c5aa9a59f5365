"""A compact model of OneFormer3D's S3DIS family (upstream's S3DISOneFormer3D decoder, scaled down).

SpConv U-Net over 5 cm voxels -> query decoder (learned instance + semantic
queries; per layer: masked cross-attention to voxel features, self-attention,
FFN; a prediction after every layer) -> unified criterion: the last n_sem
queries get a semantic cross-entropy, the instance queries the configured
``inst_criterion`` (any criterion of influencerformer.registry, built from the arm's block).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import Tensor, nn

from influencerformer import InstanceGT

from harness.study.arms import build_criterion
from harness.backends.native.postprocess import predict_instances
from harness.backends.spconv_shim import apply_cpu_stream_shim
from harness.backends.native.voxel import voxel_gt, voxelise


class SparseUNet(nn.Module):
    """Sparse U-Net: stem, strided encoder levels, inverse-conv decoder with skip concatenation."""

    def __init__(self, in_channels: int = 6, channels: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        import spconv.pytorch as sp
        apply_cpu_stream_shim()

        def block(cin: int, cout: int, key: str) -> nn.Module:
            return sp.SparseSequential(sp.SubMConv3d(cin, cout, 3, padding=1, bias=False, indice_key=key),
                                       nn.BatchNorm1d(cout), nn.ReLU())
        self.stem = block(in_channels, channels[0], 'subm0')
        self.down, self.up, self.fuse = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in range(1, len(channels)):
            self.down.append(sp.SparseSequential(
                sp.SparseConv3d(channels[i - 1], channels[i], 2, stride=2, bias=False, indice_key=f'down{i}'),
                nn.BatchNorm1d(channels[i]), nn.ReLU(), block(channels[i], channels[i], f'subm{i}')))
            self.up.append(sp.SparseSequential(
                sp.SparseInverseConv3d(channels[i], channels[i - 1], 2, bias=False, indice_key=f'down{i}'),
                nn.BatchNorm1d(channels[i - 1]), nn.ReLU()))
            self.fuse.append(block(2 * channels[i - 1], channels[i - 1], f'subm{i - 1}'))
        self.out_channels = channels[0]

    def forward(self, x):
        """SparseConvTensor in -> SparseConvTensor with out_channels features, same voxels and order."""
        levels = [self.stem(x)]
        for down in self.down:
            levels.append(down(levels[-1]))
        y = levels[-1]
        for i in reversed(range(len(self.up))):
            y = self.up[i](y)
            y = y.replace_feature(torch.cat([y.features, levels[i].features], 1))
            y = self.fuse[i](y)
        return y


class DecoderLayer(nn.Module):
    """Masked cross-attention to voxels, self-attention, FFN (post-norm, as upstream)."""

    def __init__(self, d_model: int, n_heads: int, hidden: int) -> None:
        super().__init__()
        self.cross = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), nn.Linear(hidden, d_model))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))

    def forward(self, q: Tensor, x: Tensor, attn_mask: Tensor) -> Tensor:
        """q (1, Q, d), x (1, V, d), attn_mask bool (Q, V), True = not attended."""
        # need_weights=False: the fused attention kernel, without averaging per-head weights nobody reads
        q = self.norms[0](q + self.cross(q, x, x, attn_mask=attn_mask, need_weights=False)[0])
        q = self.norms[1](q + self.self_attn(q, q, q, need_weights=False)[0])
        return self.norms[2](q + self.ffn(q))


class QueryDecoder(nn.Module):
    """Instance + semantic queries, iterative prediction after the input projection and every layer.

    ``query_init``: ``learned`` (upstream's S3DIS model: one embedding per
    query) or ``anchored`` (as Mask3D and OneFormer3D's ScanNet model: each
    instance query starts from the feature of a sampled voxel, its anchor).
    ``seeded`` is the earlier name of ``anchored`` (records written before the
    rename): it builds the same decoder.
    """

    def __init__(self, in_channels: int, d_model: int = 64, n_inst: int = 32, n_sem: int = 13,
                 n_classes: int = 13, n_layers: int = 2, n_heads: int = 4, hidden: int = 128,
                 query_init: str = 'learned') -> None:
        super().__init__()
        query_init = 'anchored' if query_init == 'seeded' else query_init
        self.n_inst, self.n_sem, self.query_init = n_inst, n_sem, query_init
        self.input_proj = nn.Sequential(nn.Linear(in_channels, d_model), nn.LayerNorm(d_model), nn.ReLU())
        self.x_mask = nn.Sequential(nn.Linear(in_channels, d_model), nn.ReLU(), nn.Linear(d_model, d_model))
        self.query = nn.Embedding(n_sem + (n_inst if query_init == 'learned' else 0), d_model)
        if query_init == 'anchored':
            self.anchor_proj = nn.Sequential(nn.Linear(in_channels, d_model), nn.LayerNorm(d_model))
        self.layers = nn.ModuleList(DecoderLayer(d_model, n_heads, hidden) for _ in range(n_layers))
        self.out_norm = nn.LayerNorm(d_model)
        self.cls = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, n_classes + 1))
        self.score = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, 1))
        self._register_load_state_dict_pre_hook(_renamed_anchor_weights)

    def _head(self, q: Tensor, mask_feats: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Class logits (Q, C+1), scores (Q, 1), and mask logits of the instance and the semantic queries.

        The two mask products are separate tensors (rows of one product): each loss then
        sends its gradient to its own tensor, where a shared (Q, V) product would first be
        zero-filled for every slice's gradient.
        """
        q = self.out_norm(q)
        n = self.n_inst
        return self.cls(q), self.score(q), q[:n] @ mask_feats.T, q[n:] @ mask_feats.T

    def initial_queries(self, feats: Tensor) -> tuple[Tensor, Tensor | None]:
        """(Q, d) starting queries, instance queries first; and the anchor voxel of each (None if learned).

        Anchors are drawn at random (the global RNG while training; a fixed
        generator in eval mode, so predictions are reproducible).
        """
        if self.query_init == 'learned':
            return self.query.weight, None
        n = feats.shape[0]
        gen = None if self.training else torch.Generator().manual_seed(0)
        anchors = torch.randperm(n, generator=gen)[:self.n_inst]
        if n < self.n_inst:   # fewer voxels than queries: some voxels anchor two queries
            anchors = torch.cat([anchors, torch.randint(0, n, (self.n_inst - n,), generator=gen)])
        anchors = anchors.to(feats.device)
        return torch.cat([self.anchor_proj(feats[anchors]), self.query.weight]), anchors

    def forward(self, feats: Tensor) -> tuple[list[tuple[Tensor, Tensor, Tensor, Tensor]], Tensor | None]:
        """feats (V, C) of one scene -> per prediction: cls (Q, C+1), score (Q, 1), instance mask
        logits (n_inst, V), semantic mask logits (n_sem, V); and the instance queries' anchor voxels
        (long (n_inst,), or None)."""
        x, mask_feats = self.input_proj(feats)[None], self.x_mask(feats)
        q0, anchors = self.initial_queries(feats)
        q = q0[None]
        preds = [self._head(q[0], mask_feats)]
        for layer in self.layers:
            # upstream's sigmoid(mask) < 0.5, read off the logits (one (Q, V) pass fewer)
            attn = torch.cat([preds[-1][2].detach() < 0, preds[-1][3].detach() < 0])
            attn[attn.all(1)] = False  # a query that would see nothing sees everything
            q = layer(q, x, attn)
            preds.append(self._head(q[0], mask_feats))
        return preds, anchors


def _renamed_anchor_weights(state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints written before the rename call the anchor projection ``seed_proj``."""
    for key in [k for k in state_dict if k.startswith(prefix + 'seed_proj.')]:
        state_dict[prefix + 'anchor_proj.' + key[len(prefix + 'seed_proj.'):]] = state_dict.pop(key)


class NativeOneFormer3D(BaseModel):
    """mmengine model: ``forward(scenes, mode)`` with mode 'loss' or 'predict'.

    Each scene is a dict: ``points`` float32 (N, 6) (xyz, rgb in [-1, 1]), and for
    training ``instance`` / ``semantic`` long (N,).
    """

    def __init__(self, backbone: dict, decoder: dict, criterion: dict, test_cfg: dict,
                 voxel_size: float = 0.05, num_classes: int = 13) -> None:
        super().__init__()
        self.voxel_size, self.num_classes, self.test_cfg = voxel_size, num_classes, test_cfg
        self.backbone = SparseUNet(**backbone)
        self.decoder = QueryDecoder(self.backbone.out_channels, n_classes=num_classes, **decoder)
        self.inst_criterion = build_criterion(criterion['inst_criterion'])
        self.sem_loss_weight = criterion['sem_loss_weight']

    def _features(self, scenes: list[dict]) -> tuple[list, list[Tensor]]:
        """Voxelise every scene, one sparse batch through the backbone, features split per scene."""
        import spconv.pytorch as sp
        voxels = [voxelise(s['points'], self.voxel_size) for s in scenes]
        coords = torch.cat([torch.cat([torch.full((len(v.coords), 1), i, dtype=torch.int32), v.coords], 1)
                            for i, v in enumerate(voxels)])
        shape = (coords[:, 1:].max(0).values + 1).clamp_min(8).tolist()
        x = sp.SparseConvTensor(torch.cat([v.feats for v in voxels]), coords, shape, len(scenes))
        feats = self.backbone(x).features
        return voxels, list(feats.split([len(v.coords) for v in voxels]))

    def forward(self, scenes: list[dict], data_samples=None, mode: str = 'loss'):
        """'loss' -> dict of losses; 'predict' -> list of evaluator predictions per scene."""
        voxels, feats = self._features(scenes)
        decoded = [self.decoder(f) for f in feats]
        preds, anchors = [d[0] for d in decoded], [d[1] for d in decoded]
        if mode == 'loss':
            return self.loss(scenes, voxels, preds, anchors)
        if mode == 'predict':
            return [predict_instances(p[-1][0][:self.decoder.n_inst], p[-1][1][:self.decoder.n_inst],
                                      p[-1][2], v.inverse, self.test_cfg)
                    for p, v in zip(preds, voxels)]
        raise ValueError(f"mode must be 'loss' or 'predict', got {mode!r}")

    def loss(self, scenes: list[dict], voxels: list, preds: list, anchors: list) -> dict[str, Tensor]:
        """Unified criterion: instance queries -> inst_criterion, semantic queries -> CE over voxels."""
        n = self.decoder.n_inst
        gts, sem_labels = [], []
        for s, v in zip(scenes, voxels):
            masks, labels, sem = voxel_gt(s['instance'], s['semantic'], v.inverse, len(v.coords), self.num_classes)
            gts.append(InstanceGT(masks, labels))
            sem_labels.append(sem)
        layers = [{'cls_preds': [p[i][0][:n] for p in preds], 'scores': [p[i][1][:n] for p in preds],
                   'masks': [p[i][2] for p in preds]} for i in range(len(preds[0]))]
        if not all(torch.isfinite(m).all() for m in layers[-1]['masks']):
            raise FloatingPointError('model outputs became non-finite')   # e.g. NaN weights after a bad step
        pred = dict(layers[-1], aux_outputs=layers[:-1])
        if anchors[0] is not None:
            pred['query_anchors'] = anchors
        start = time.perf_counter()
        out = self.inst_criterion(pred, gts)
        # forward time of the instance criterion (its backward runs inside the whole model's)
        out['criterion_ms'] = torch.tensor(1000 * (time.perf_counter() - start))
        sem = sum(F.cross_entropy(p[i][3].T, y) for p, y in zip(preds, sem_labels)
                  for i in range(len(p))) / len(preds)
        out['sem_loss'] = self.sem_loss_weight * sem
        return out
