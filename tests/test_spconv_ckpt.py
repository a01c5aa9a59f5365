"""spconv layout by inspection: only the one bad combination is fixed, and loading then restores it."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from harness.backends.upstream import spconv_ckpt as sc
from harness.core.errors import HarnessError


def state(version: int | None, layout: str = 'krsc') -> OrderedDict:
    """A checkpoint state_dict with two sparse convs (6->16 k3, 16->32 k2), a BN and metadata."""
    g = torch.Generator().manual_seed(0)
    krsc = {'input_conv.0.weight': torch.randn(16, 3, 3, 3, 6, generator=g),
            'unet.down.weight': torch.randn(32, 2, 2, 2, 16, generator=g)}
    sd = OrderedDict((k, v.permute(*sc.TO_LEGACY) if layout == 'legacy' else v) for k, v in krsc.items())
    sd['output_layer.0.weight'] = torch.ones(16)
    sd._metadata = OrderedDict() if version is None else OrderedDict(
        (k[: -len('.weight')], {'version': version}) for k in krsc)
    return sd


def mmdet3d_loader_view(sd: OrderedDict) -> dict:
    """What mmdet3d's spconv _load_from_state_dict hands the module: permute unless version == 2."""
    meta = getattr(sd, '_metadata', {})
    out = {}
    for k, v in sd.items():
        version = (meta.get(k[: -len('.weight')]) or {}).get('version')
        out[k] = v.permute(4, 0, 1, 2, 3) if v.dim() == 5 and version != 2 else v
    return out


@pytest.mark.parametrize('version,layout,action', [(2, 'krsc', 'none'), (None, 'krsc', 'fix'),
                                                   (1, 'krsc', 'fix'), (None, 'legacy', 'none')])
def test_decision_and_round_trip(tmp_path, version, layout, action):
    sd = state(version, layout)
    report = sc.inspect_state_dict(sd)
    assert (report.layout, report.action) == (layout, action)
    path = tmp_path / 'iter_4.pth'
    torch.save({'state_dict': sd, 'meta': {}}, path)
    before = path.read_bytes()
    out, report = sc.prepare_for_test(path, tmp_path / 'test_checkpoint.pth')
    assert path.read_bytes() == before  # the trained checkpoint is never modified
    assert (out == path) == (action == 'none')
    loaded = torch.load(out, weights_only=False)['state_dict']
    expected = state(2, 'krsc')  # what the model must end up with
    for k, v in mmdet3d_loader_view(loaded).items():
        torch.testing.assert_close(v, expected[k], rtol=0, atol=0)


def test_blind_permutation_would_have_broken_a_good_checkpoint():
    """The reason for inspecting: fixing a version-2 checkpoint scrambles it (the test can fail)."""
    sd = state(2)
    sd['input_conv.0.weight'] = sd['input_conv.0.weight'].permute(*sc.TO_LEGACY)
    assert mmdet3d_loader_view(sd)['input_conv.0.weight'].shape != (16, 3, 3, 3, 6)


def test_unsafe_combinations_are_refused():
    with pytest.raises(HarnessError, match='marked version 2'):
        sc.inspect_state_dict(state(2, 'legacy'))
    mixed = state(None)
    mixed._metadata['input_conv.0'] = {'version': 2}
    with pytest.raises(HarnessError, match='mixed'):
        sc.inspect_state_dict(mixed)


def test_real_spconv_modules_are_krsc():
    spconv = pytest.importorskip('spconv.pytorch')
    net = spconv.SparseSequential(spconv.SubMConv3d(6, 16, 3, bias=False), spconv.SparseConv3d(16, 32, 2, 2))
    sd = net.state_dict()
    assert {sc.weight_layout(tuple(v.shape)) for k, v in sd.items() if v.dim() == 5} == {'krsc'}


@pytest.mark.parametrize('version', [None, 2])
def test_round_trip_through_mmdet3d_loader(tmp_path, version):
    """With the full stack (the images; opt-in here): mmdet3d's own loader gets the right weights."""
    pytest.importorskip('mmcv._ext', reason='needs full mmcv (the images); mmcv-lite cannot import mmdet3d.models')
    spconv = pytest.importorskip('spconv.pytorch')
    from mmdet3d.models.layers.spconv import IS_SPCONV2_AVAILABLE
    from mmengine.runner import load_checkpoint
    assert IS_SPCONV2_AVAILABLE  # mmdet3d patched spconv's loader on import
    torch.manual_seed(0)
    trained = spconv.SparseSequential(spconv.SubMConv3d(6, 16, 3, bias=False), spconv.SparseConv3d(16, 32, 2, 2))
    sd = trained.state_dict()
    if version is None:  # what mmengine 0.7.3 saved: no metadata
        sd = OrderedDict(sd.items())
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': sd}, path)
    out, report = sc.prepare_for_test(path, tmp_path / 'fixed.pth')
    assert report.action == ('fix' if version is None else 'none')
    fresh = spconv.SparseSequential(spconv.SubMConv3d(6, 16, 3, bias=False), spconv.SparseConv3d(16, 32, 2, 2))
    load_checkpoint(fresh, str(out), strict=True)
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v, rtol=0, atol=0)
