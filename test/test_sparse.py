"""Sparse 3D CNN layers against an explicit reference of torchsparse 1.4 semantics.

The reference below is written from the semantics (dictionary of coordinates, explicit offset
loops), independently of spconv and of sahmr_ros.networks.sparse's lookups.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import sahmr_ros.networks.sparse as sparse_module
from sahmr_ros.networks.sparse import (
    DownConv3d,
    SparseContext,
    SparseVoxels,
    SubmanifoldConv3d,
    UpConv3d,
    kernel_from_torchsparse,
    point_to_voxel,
    voxel_to_point,
)
from sahmr_ros.networks.spvcnn import SPVCNN, SPVCNNConfig

OFFSETS3 = [(ix, iy, iz) for iz in (-1, 0, 1) for iy in (-1, 0, 1) for ix in (-1, 0, 1)]  # x fastest
OFFSETS2 = [(ix, iy, iz) for ix in (0, 1) for iy in (0, 1) for iz in (0, 1)]  # z fastest


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(params=["torch", "torch-per-offset", "spconv"])
def backend(request, monkeypatch):
    """Sparse backend of a test: spconv, or torch in its one-GEMM or its per-offset form (forced)."""
    if request.param == "torch-per-offset":
        monkeypatch.setattr(sparse_module, "_MACS_PER_OFFSET_CALL", -1)
    elif request.param == "torch":
        monkeypatch.setattr(sparse_module, "_MACS_PER_OFFSET_CALL", float("inf"))
    return request.param.split("-")[0]


def _random_voxels(n=400, lo=-9, hi=9, batch=2, channels=5, stride=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randint(lo, hi, (n, 3), generator=g) * stride
    b = torch.randint(0, batch, (n, 1), generator=g)
    coords = torch.unique(torch.cat([b, xyz], 1), dim=0).to(torch.int32)
    feats = torch.randn(len(coords), channels, generator=g, dtype=torch.float64).float()
    return SparseVoxels(coords, feats, stride)


def _as_dict(coords, feats):
    return {tuple(c): f for c, f in zip(coords.tolist(), feats)}


def _ref_subm(x: SparseVoxels, kernel_ts: torch.Tensor):
    table = _as_dict(x.coords, x.feats)
    out = []
    for c in x.coords.tolist():
        acc = torch.zeros(kernel_ts.shape[2], dtype=torch.float64)
        for k, off in enumerate(OFFSETS3):
            n = (c[0],) + tuple(c[1 + a] + off[a] * x.stride for a in range(3))
            if n in table:
                acc += table[n].double() @ kernel_ts[k].double()
        out.append(acc)
    return torch.stack(out)


def _trunc_div(a, b):
    return int(np.trunc(a / b))


def _ref_down(x: SparseVoxels, kernel_ts, rounding):
    s2 = 2 * x.stride
    rnd = (lambda a: (a // s2) * s2) if rounding == "floor" else (lambda a: _trunc_div(a, s2) * s2)
    outs = sorted({(c[0], rnd(c[1]), rnd(c[2]), rnd(c[3])) for c in x.coords.tolist()})
    table = _as_dict(x.coords, x.feats)
    feats, pairs = [], []
    for o in outs:
        acc = torch.zeros(kernel_ts.shape[2], dtype=torch.float64)
        for k, off in enumerate(OFFSETS2):
            n = (o[0],) + tuple(o[1 + a] + off[a] * x.stride for a in range(3))
            if n in table:
                acc += table[n].double() @ kernel_ts[k].double()
                pairs.append((n, o, k))
        feats.append(acc)
    return outs, torch.stack(feats), pairs


def _ref_up(fine_coords, coarse_coords, coarse_feats, pairs, kernel_ts):
    coarse = _as_dict(coarse_coords, coarse_feats)
    out = {tuple(c): torch.zeros(kernel_ts.shape[2], dtype=torch.float64) for c in fine_coords.tolist()}
    for fine, o, k in pairs:
        out[fine] += coarse[o].double() @ kernel_ts[k].double()
    return torch.stack([out[tuple(c)] for c in fine_coords.tolist()])


def _sorted(coords, feats):
    order = sorted(range(len(coords)), key=lambda i: tuple(coords[i].tolist()))
    return coords[order], feats[order]


@pytest.mark.parametrize("threads", [1, 2])
def test_submanifold_conv_matches_reference(threads, backend):
    torch.set_num_threads(threads)  # spconv's CPU kernels race with >1 thread unless guarded
    x = _random_voxels(stride=2)
    conv = SubmanifoldConv3d(5, 3)
    kernel_ts = torch.randn(27, 5, 3)
    conv.conv.weight.data = kernel_from_torchsparse(kernel_ts, 3)
    ctx = SparseContext(x.coords, 2, backend=backend)
    with torch.no_grad():
        out = conv(x, ctx)
    ref = _ref_subm(x, kernel_ts)
    assert torch.equal(out.coords, x.coords)
    assert (out.feats.double() - ref).abs().max() < 1e-4


@pytest.mark.parametrize("rounding", ["floor", "trunc"])
@pytest.mark.parametrize("stride", [1, 4])
def test_down_and_transposed_conv_match_reference(rounding, stride, backend):
    x = _random_voxels(stride=stride, seed=stride)
    assert (x.coords[:, 1:] < 0).any(), "the test needs negative coordinates"
    down, up = DownConv3d(5, 4), UpConv3d(4, 6)
    k_down, k_up = torch.randn(8, 5, 4), torch.randn(8, 4, 6)
    down.conv.weight.data = kernel_from_torchsparse(k_down, 2)
    up.conv.weight.data = kernel_from_torchsparse(k_up, 2)
    ctx = SparseContext(x.coords, 2, rounding=rounding, backend=backend)
    with torch.no_grad():
        coarse = down(x, ctx)
        coarse_in = coarse.replace(torch.randn_like(coarse.feats))
        fine = up(coarse_in, ctx)
    ref_coords, ref_feats, pairs = _ref_down(x, k_down, rounding)
    got_coords, got_feats = _sorted(coarse.coords, coarse.feats)
    assert got_coords.tolist() == [list(c) for c in ref_coords]
    assert coarse.stride == 2 * stride
    assert (got_feats.double() - ref_feats).abs().max() < 1e-4
    # transposed conv returns exactly the finer coordinates in their original order
    assert torch.equal(fine.coords, x.coords) and fine.stride == stride
    ref_up = _ref_up(x.coords, coarse_in.coords, coarse_in.feats, pairs, k_up)
    assert (fine.feats.double() - ref_up).abs().max() < 1e-4


def test_trunc_and_floor_differ_only_for_negative_coordinates():
    pos = _random_voxels(lo=0, hi=12, seed=3)
    neg = _random_voxels(lo=-12, hi=0, seed=3)
    for x, same in ((pos, True), (neg, False)):
        a = SparseContext(x.coords, 2, rounding="floor").downsample_coords(x.coords, 1)
        b = SparseContext(x.coords, 2, rounding="trunc").downsample_coords(x.coords, 1)
        assert (a.shape == b.shape and torch.equal(a, b)) == same


def test_voxel_to_point_trilinear_reference():
    x = _random_voxels(stride=4, channels=3)
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(50, 3, generator=g) * 60 - 30
    batch = torch.randint(0, 2, (50,), generator=g)
    got = voxel_to_point(x, pts, batch)
    table = _as_dict(x.coords, x.feats)
    for i in range(50):
        p = pts[i].double()
        base = torch.floor(p / 4) * 4
        acc, wsum = torch.zeros(3, dtype=torch.float64), 0.0
        for off in itertools.product((0, 1), repeat=3):
            corner = base + torch.tensor(off, dtype=torch.float64) * 4
            w = float(torch.prod(1 - (p - corner).abs() / 4))
            key = (int(batch[i]),) + tuple(int(v) for v in corner)
            if key in table:
                acc += w * table[key].double()
                wsum += w
        assert torch.allclose(got[i].double(), acc / (wsum + 1e-8), atol=1e-5)


def test_point_to_voxel_is_the_mean_of_points_per_voxel():
    x = SparseVoxels(torch.tensor([[0, 0, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0]], dtype=torch.int32),
                     torch.zeros(3, 1), 2)
    pts = torch.tensor([[0.0, 0, 0], [1.5, 1, 1], [2.0, 0, 0], [0.5, 0, 0], [9.0, 9, 9]])
    batch = torch.tensor([0, 0, 0, 1, 0])
    feats = torch.tensor([[1.0], [3.0], [5.0], [7.0], [100.0]])
    out = point_to_voxel(x, feats, pts, batch)
    assert out.feats[:, 0].tolist() == [2.0, 5.0, 7.0]  # the point at (9,9,9) has no voxel


def test_spvcnn_rows_follow_input_order_and_are_deterministic(backend):
    net = SPVCNN(SPVCNNConfig.small(), rounding="trunc", sparse_backend=backend).eval()
    x = _random_voxels(n=600, lo=-15, hi=15, channels=35)
    with torch.no_grad():
        a = net(x.coords, x.feats, 2)
        perm = torch.randperm(len(x.coords), generator=torch.Generator().manual_seed(0))
        b = net(x.coords[perm], x.feats[perm], 2)
        c = net(x.coords, x.feats, 2)
    assert a.shape == (len(x.coords), 12)
    assert torch.equal(a, c)
    assert torch.allclose(a[perm], b, atol=1e-5)
