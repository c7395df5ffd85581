"""The torch sparse-conv backend: dense conv3d forward and gradients, gradcheck, and agreement with spconv.

Dense references: the sparse features are written into a zero grid and convolved with
``torch.nn.functional.conv3d`` / ``conv_transpose3d`` using spconv's weight ``[Cout, a, b, c, Cin]``
as the dense ``[Cout, Cin, a, b, c]`` (a, b, c over x, y, z); outputs are read at the active sites.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import sahmr_ros.networks.sparse as sparse_module
from sahmr_ros.networks.sparse import (
    BACKEND_ENV,
    DownConv3d,
    KernelMap,
    SparseContext,
    SparseVoxels,
    SubmanifoldConv3d,
    UpConv3d,
    default_backend,
    sparse_conv,
)
from sahmr_ros.data.probes import person_roi_voxels
from sahmr_ros.networks.spvcnn import SPVCNN, SPVCNNConfig


@pytest.fixture(params=["gemm", "per-offset"])
def strategy(request, monkeypatch):
    """Force the torch backend's one-GEMM form or its per-offset gather-GEMM-scatter form."""
    monkeypatch.setattr(sparse_module, "_MACS_PER_OFFSET_CALL", float("inf") if request.param == "gemm" else -1)
    return request.param


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _voxels(n=300, lo=-7, hi=7, batch=2, channels=4, stride=1, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randint(lo, hi, (n, 3), generator=g) * stride
    b = torch.randint(0, batch, (n, 1), generator=g)
    coords = torch.unique(torch.cat([b, xyz], 1), dim=0).to(torch.int32)
    coords = coords[torch.randperm(len(coords), generator=g)]  # rows in no particular order
    return SparseVoxels(coords, torch.randn(len(coords), channels, generator=g, dtype=dtype), stride)


class _Grid:
    """Dense grid of a batch at one stride, its origin a multiple of ``2 * stride`` (for stride 2)."""

    def __init__(self, coords, stride, batch):
        xyz = coords[:, 1:].to(torch.int64)
        self.stride, self.batch = stride, batch
        self.origin = torch.div(xyz.min(0).values, 2 * stride, rounding_mode="floor") * 2 * stride - 2 * stride
        extent = torch.div(xyz.max(0).values - self.origin, stride, rounding_mode="floor") + 3
        self.shape = [int(e) + int(e) % 2 for e in extent]  # even: stride-2 convs cover it exactly

    def index(self, coords, stride):
        g = torch.div(coords[:, 1:].to(torch.int64) - self.origin, stride, rounding_mode="floor")
        return (coords[:, 0].to(torch.int64), g[:, 0], g[:, 1], g[:, 2])

    def scatter(self, coords, feats, stride):
        """(B, C, X, Y, Z) grid, zero where inactive (differentiable in ``feats``)."""
        shape = [s * self.stride // stride for s in self.shape]
        dense = feats.new_zeros(self.batch, *shape, feats.shape[1])
        return dense.index_put(self.index(coords, stride), feats).permute(0, 4, 1, 2, 3)

    def gather(self, dense, coords, stride):
        return dense.permute(0, 2, 3, 4, 1)[self.index(coords, stride)]


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("stride", [1, 2])
def test_submanifold_forward_and_gradients_equal_dense_conv3d(stride, strategy):
    x = _voxels(stride=stride, seed=stride)
    w = torch.randn(3, 3, 3, 3, 4, dtype=torch.float64, requires_grad=True)  # spconv (Cout, a, b, c, Cin)
    f = x.feats.clone().requires_grad_(True)
    g_out = torch.randn(len(x.coords), 3, dtype=torch.float64)

    ctx = SparseContext(x.coords, 2, backend="torch")
    out = sparse_conv(f, w, ctx.subm_map(x))
    got = (out, *_grads((out * g_out).sum(), f, w))

    grid = _Grid(x.coords, stride, 2)
    dense = F.conv3d(grid.scatter(x.coords, f, stride), w.permute(0, 4, 1, 2, 3), padding=1)
    ref_out = grid.gather(dense, x.coords, stride)
    ref = (ref_out, *_grads((ref_out * g_out).sum(), f, w))
    for a, b in zip(got, ref):
        assert (a - b).abs().max() < 1e-4 * max(1.0, b.abs().max())


@pytest.mark.parametrize("rounding", ["floor", "trunc"])
@pytest.mark.parametrize("stride", [1, 2])
def test_strided_and_transposed_gradients_equal_dense_conv3d(rounding, stride, strategy):
    x = _voxels(stride=stride, seed=10 + stride)
    assert (x.coords[:, 1:] < 0).any(), "the test needs negative coordinates"
    w_down = torch.randn(5, 2, 2, 2, 4, dtype=torch.float64, requires_grad=True)
    w_up = torch.randn(3, 2, 2, 2, 5, dtype=torch.float64, requires_grad=True)
    f = x.feats.clone().requires_grad_(True)
    ctx = SparseContext(x.coords, 2, rounding=rounding, backend="torch")
    kmap = ctx.down_map(x)
    coarse = kmap.out_coords
    rnd = math.floor if rounding == "floor" else math.trunc
    expected = {(c[0], *(rnd(v / (2 * stride)) * 2 * stride for v in c[1:])) for c in x.coords.tolist()}
    assert sorted(expected) == [tuple(c) for c in coarse.tolist()]
    g_down = torch.randn(len(coarse), 5, dtype=torch.float64)
    c_in = torch.randn(len(coarse), 5, dtype=torch.float64, requires_grad=True)
    g_up = torch.randn(len(x.coords), 3, dtype=torch.float64)

    down = sparse_conv(f, w_down, kmap)
    up = sparse_conv(c_in, w_up, kmap, transposed=True)
    got = (down, *_grads((down * g_down).sum(), f, w_down), up, *_grads((up * g_up).sum(), c_in, w_up))

    grid = _Grid(x.coords, stride, 2)
    dense_down = F.conv3d(grid.scatter(x.coords, f, stride), w_down.permute(0, 4, 1, 2, 3), stride=2)
    ref_down = grid.gather(dense_down, coarse, 2 * stride)
    dense_up = F.conv_transpose3d(grid.scatter(coarse, c_in, 2 * stride), w_up.permute(4, 0, 1, 2, 3), stride=2)
    ref_up = grid.gather(dense_up, x.coords, stride)
    ref = (ref_down, *_grads((ref_down * g_down).sum(), f, w_down),
           ref_up, *_grads((ref_up * g_up).sum(), c_in, w_up))
    for a, b in zip(got, ref):
        assert (a - b).abs().max() < 1e-4 * max(1.0, b.abs().max())


def test_gradcheck_float64(strategy):
    x = _voxels(n=24, lo=-2, hi=2, batch=1, channels=2, seed=3)
    ctx = SparseContext(x.coords, 1, rounding="trunc", backend="torch")
    subm, down = ctx.subm_map(x), ctx.down_map(x)

    def net(f, w1, w2, w3):
        y = sparse_conv(f, w1, subm)
        return sparse_conv(torch.tanh(sparse_conv(y, w2, down)), w3, down, transposed=True)

    g = torch.Generator().manual_seed(0)
    args = [x.feats.clone()] + [torch.randn(s, generator=g, dtype=torch.float64)
                                for s in ((2, 3, 3, 3, 2), (3, 2, 2, 2, 2), (2, 2, 2, 2, 3))]
    assert torch.autograd.gradcheck(net, [a.requires_grad_(True) for a in args])


@pytest.mark.parametrize("rounding", ["floor", "trunc"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_layers_equal_spconv(rounding, n_threads, strategy):
    torch.set_num_threads(n_threads)
    x = _voxels(n=800, lo=-12, hi=12, channels=16, stride=2, seed=4, dtype=torch.float32)
    torch.manual_seed(0)
    subm, down, up = SubmanifoldConv3d(16, 24), DownConv3d(24, 32), UpConv3d(32, 16)
    outs = {}
    for backend in ("spconv", "torch"):
        ctx = SparseContext(x.coords, 2, rounding=rounding, backend=backend)
        with torch.no_grad():
            a = subm(x, ctx)
            b = down(a, ctx)
            order = torch.argsort(sparse_module._coord_keys(b.coords))
            c = up(b, ctx)
        assert torch.equal(c.coords, x.coords)
        outs[backend] = (a.feats, b.coords[order], b.feats[order], c.feats)
    for s, t in zip(outs["spconv"], outs["torch"]):
        assert s.shape == t.shape and (s.double() - t.double()).abs().max() < 1e-4


@pytest.mark.parametrize("preset", ["small", "official"])
def test_spvcnn_equal_between_backends_on_a_person_roi(preset):
    coords = person_roi_voxels()
    assert 2000 < len(coords) < 4000 and (coords[:, 1:3] < 0).any()
    config = SPVCNNConfig.small() if preset == "small" else SPVCNNConfig.official()
    torch.manual_seed(0)
    net = SPVCNN(config, rounding="trunc" if preset == "official" else "floor").eval()
    feats = torch.randn(len(coords), config.in_channels, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net.sparse_backend = "spconv"
        ref = net(coords, feats, 1)
        for n_threads in (1, 2) if preset == "small" else (1,):  # 2 threads: per layer and small
            torch.set_num_threads(n_threads)
            net.sparse_backend = "torch"
            got = net(coords, feats, 1)
            assert (got - ref).abs().max() < 1e-4


@pytest.mark.parametrize("preset", ["small", "official"])
def test_spvcnn_trains_on_cpu(preset):
    coords = person_roi_voxels()[::3]
    config = SPVCNNConfig.small() if preset == "small" else SPVCNNConfig.official()
    torch.manual_seed(0)
    net = SPVCNN(config, rounding="trunc", sparse_backend="torch").train()
    feats = torch.randn(len(coords), config.in_channels, generator=torch.Generator().manual_seed(1))
    net(coords, feats, 1).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    conv_grads = [p.grad.abs().sum() for name, p in net.named_parameters() if name.endswith("conv.weight")]
    assert len(conv_grads) == 42 and all(g > 0 for g in conv_grads)  # 34 submanifold, 4 down, 4 up


def test_kernel_maps_are_built_once_per_stride_and_kind(monkeypatch):
    built = []
    init = KernelMap.__init__
    monkeypatch.setattr(KernelMap, "__init__", lambda self, *a, **k: (built.append(a[-1]), init(self, *a, **k))[1])
    coords = person_roi_voxels()[::4]
    net = SPVCNN(SPVCNNConfig.small(), sparse_backend="torch").eval()
    with torch.no_grad():
        net(coords, torch.randn(len(coords), 35), 1)
    # 5 submanifold maps (strides 1..16) and 4 down maps, shared by 34 + 4 + 4 convolutions
    assert sorted(built) == [8] * 4 + [27] * 5


def test_backend_selection(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert default_backend("cpu") == "torch"
    assert SparseContext(torch.zeros(1, 4, dtype=torch.int32), 1).backend == "torch"
    monkeypatch.setenv(BACKEND_ENV, "spconv")
    assert SparseContext(torch.zeros(1, 4, dtype=torch.int32), 1).backend == "spconv"
    monkeypatch.setenv(BACKEND_ENV, "cuda")
    with pytest.raises(ValueError, match=BACKEND_ENV):
        default_backend("cpu")
    with pytest.raises(ValueError, match="backend"):
        SparseContext(torch.zeros(1, 4, dtype=torch.int32), 1, backend="dense")


def test_without_spconv_same_parameters_and_torch_backend_runs(monkeypatch):
    with_spconv = SPVCNN(SPVCNNConfig.small()).state_dict()
    monkeypatch.setattr(sparse_module, "spconv", None)
    net = SPVCNN(SPVCNNConfig.small()).eval()
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in with_spconv.items()}
    net.load_state_dict(with_spconv)
    coords = person_roi_voxels()[::4]
    with torch.no_grad():
        assert torch.isfinite(net(coords, torch.randn(len(coords), 35), 1)).all()
    with pytest.raises(ImportError, match="spconv"):
        SparseContext(coords, 1, backend="spconv")


def _no_grid(monkeypatch):
    """Make every VoxelGrid too large, so that lookups fall back to CoordIndex (sorted keys)."""
    monkeypatch.setattr(sparse_module, "_GRID_CELLS_PER_VOXEL", 0)
    monkeypatch.setattr(sparse_module, "_GRID_MIN_CELLS", 0)


def test_voxel_grid_lookup_equals_coord_index():
    x = _voxels(n=400, lo=-9, hi=9, batch=3, stride=2, seed=5)
    grid = sparse_module.VoxelGrid.build(x.coords, 2)
    assert grid is not None and len(grid.lo) == 3
    g = torch.Generator().manual_seed(0)
    queries = torch.cat([torch.randint(-1, 4, (3000, 1), generator=g),  # batch ids outside 0..2 too
                         torch.randint(-24, 24, (3000, 3), generator=g)], 1)  # odd (non-multiple) and outside
    queries = torch.cat([queries, x.coords.to(torch.int64)])
    valid_batch = queries.clone()
    valid_batch[:, 0] = valid_batch[:, 0].clamp(min=0)  # the key index takes no negative batch id
    expected = sparse_module.CoordIndex(x.coords).lookup(valid_batch).where(queries[:, 0] >= 0, -1)
    assert torch.equal(grid.lookup(queries), expected)
    assert torch.equal(grid.lookup(x.coords), torch.arange(len(x.coords)))


def test_voxel_to_point_grid_equals_coord_index():
    x = _voxels(n=300, batch=2, channels=3, stride=4, seed=6)
    g = torch.Generator().manual_seed(2)
    pts = torch.rand(400, 3, generator=g, dtype=torch.float64) * 80 - 40  # partly outside the voxels' boxes
    pts = torch.cat([pts, x.coords[:, 1:].double() + 1])  # and on / next to the voxels
    batch = torch.randint(0, 3, (len(pts),), generator=g)  # batch 2 has no voxel
    ref = sparse_module.voxel_to_point(x, pts, batch, sparse_module.CoordIndex(x.coords))
    got = sparse_module.voxel_to_point(x, pts, batch, sparse_module.VoxelGrid.build(x.coords, 4))
    assert (got - ref).abs().max() < 1e-10 and ref.abs().sum() > 0


@pytest.mark.parametrize("n_threads", [1, 2])
def test_spvcnn_grid_lookups_equal_sorted_key_lookups(n_threads, monkeypatch):
    """The dense-grid kernel maps and interpolation give the search-based (CoordIndex) results, batch of 2."""
    torch.set_num_threads(n_threads)
    x = _voxels(n=1500, lo=-15, hi=15, batch=2, channels=35, seed=7, dtype=torch.float32)
    torch.manual_seed(0)
    net = SPVCNN(SPVCNNConfig.small(), rounding="trunc", sparse_backend="torch").eval()
    with torch.no_grad():
        got = net(x.coords, x.feats, 2)
        _no_grid(monkeypatch)
        ref = net(x.coords, x.feats, 2)
    assert (got - ref).abs().max() < 1e-4


@pytest.mark.parametrize("preset", ["small", "official"])
def test_spvcnn_under_bf16_autocast_is_close_to_float32(preset):
    """Under CPU bf16 autocast the sparse convolutions multiply bf16 operands, summing in float32."""
    coords = person_roi_voxels()[::2]
    config = SPVCNNConfig.small() if preset == "small" else SPVCNNConfig.official()
    torch.manual_seed(0)
    net = SPVCNN(config, rounding="trunc", sparse_backend="torch").eval()
    feats = torch.randn(len(coords), config.in_channels, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(coords, feats, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = net(coords, feats, 1)
    assert got.dtype in (torch.float32, torch.bfloat16) and torch.isfinite(got).all()
    assert (got.float() - ref).abs().max() < 2e-2 * ref.abs().max()


def _randomise_batch_norms(net, seed=5):
    """Non-trivial running statistics and affine parameters (folding must use them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("form", ["gemm", "pairs"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fused_convs_equal_conv_then_batch_norm(form, n_threads, monkeypatch):
    """Inference path (BN folded, one-GEMM / pairs-only subm, im2col down, gather up) vs sparse_conv + BN."""
    torch.set_num_threads(n_threads)
    monkeypatch.setattr(sparse_module, "_PAIRS_MIN_WASTED_MACS", -1 if form == "pairs" else float("inf"))
    monkeypatch.setattr(sparse_module, "_PAIRS_MIN_OUT_CHANNELS", 0)
    x = _voxels(n=900, lo=-12, hi=12, channels=16, stride=2, seed=6, dtype=torch.float32)
    torch.manual_seed(0)
    subm, down, up = SubmanifoldConv3d(16, 24), DownConv3d(24, 32), UpConv3d(32, 16)
    bns = torch.nn.ModuleList([torch.nn.BatchNorm1d(c) for c in (24, 32, 16)])
    _randomise_batch_norms(bns)
    bns.eval()
    for rounding in ("floor", "trunc"):
        ctx = SparseContext(x.coords, 2, rounding=rounding, backend="torch")
        with torch.no_grad():
            a = bns[0](subm(x, ctx).feats).relu()
            b = down(x.replace(a), ctx)
            b_feats = bns[1](b.feats).relu()
            c = bns[2](up(b.replace(b_feats), ctx).feats)
            fa = subm.fused(x, ctx, bns[0], relu=True)
            fb = down.fused(fa, ctx, bns[1], relu=True)
            fc = up.fused(fb, ctx, bns[2])
        assert torch.equal(fb.coords, b.coords) and torch.equal(fc.coords, x.coords)
        for ref, got in ((a, fa.feats), (b_feats, fb.feats), (c, fc.feats)):
            assert ref.shape == got.shape and (ref - got).abs().max() < 1e-4


@pytest.mark.parametrize("preset,rounding", [("small", "floor"), ("small", "trunc"), ("official", "trunc")])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_spvcnn_inference_path_equals_autograd_path(preset, rounding, n_threads):
    """Eval + no_grad runs the fused path; eval with autograd on runs the layer-by-layer one."""
    torch.set_num_threads(n_threads)
    coords = person_roi_voxels()
    config = SPVCNNConfig.small() if preset == "small" else SPVCNNConfig.official()
    torch.manual_seed(0)
    net = SPVCNN(config, rounding=rounding, sparse_backend="torch").eval()
    _randomise_batch_norms(net)
    feats = torch.randn(len(coords), config.in_channels, generator=torch.Generator().manual_seed(1))
    ref = net(coords, feats, 1).detach()
    with torch.no_grad():
        got = net(coords, feats, 1)
    assert (got - ref).abs().max() < 1e-4


def test_folded_weights_follow_parameter_changes_and_leave_the_state_dict_alone():
    coords = person_roi_voxels()[::2]
    torch.manual_seed(0)
    net = SPVCNN(SPVCNNConfig.small(), sparse_backend="torch").eval()
    keys = list(net.state_dict())
    feats = torch.randn(len(coords), 35, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net(coords, feats, 1)  # folds and caches
        _randomise_batch_norms(net, seed=9)
        net.stem[0].conv.weight.mul_(1.5)
        got = net(coords, feats, 1)
    assert list(net.state_dict()) == keys
    assert (got - net(coords, feats, 1).detach()).abs().max() < 1e-4  # autograd path: unfolded
    net.load_state_dict(SPVCNN(SPVCNNConfig.small(), sparse_backend="torch").state_dict())
    with torch.no_grad():
        got = net(coords, feats, 1)
    assert (got - net(coords, feats, 1).detach()).abs().max() < 1e-4


def test_training_mode_keeps_batch_statistics():
    """In training mode (even without autograd) batch norm uses batch statistics, not the folded ones."""
    coords = person_roi_voxels()[::2]
    torch.manual_seed(0)
    net = SPVCNN(SPVCNNConfig.small(), sparse_backend="torch")
    _randomise_batch_norms(net)
    feats = torch.randn(len(coords), 35, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        train = net.train()(coords, feats, 1)
        infer = net.eval()(coords, feats, 1)
    assert (train - infer).abs().max() > 1e-3


def test_point_voxel_bags_equal_the_interpolation_matrices():
    """Inference point <-> voxel maps (embedding bags) against voxel_to_point / point_to_voxel."""
    from sahmr_ros.networks.sparse import point_to_voxel, point_to_voxel_fused, voxel_to_point, voxel_to_point_fused

    g = torch.Generator().manual_seed(3)
    x = _voxels(n=400, lo=-6, hi=6, channels=5, stride=4, seed=7, dtype=torch.float32)
    points = torch.rand(500, 3, generator=g) * 48 - 24
    batch = torch.randint(0, 2, (500,), generator=g)
    ctx = SparseContext(x.coords, 2, backend="torch")
    ctx._indices[4] = sparse_module.VoxelGrid.build(x.coords, 4)
    with torch.no_grad():
        assert (voxel_to_point_fused(x, points, batch, ctx) - voxel_to_point(x, points, batch)).abs().max() < 1e-6
        pf = torch.randn(500, 3, generator=g)
        ref = point_to_voxel(x, pf, points, batch).feats
        got = point_to_voxel_fused(x, pf, points, batch, ctx).feats
    assert (ref == 0).all(1).any() and (ref - got).abs().max() < 1e-6


def _pyramid_cases():
    """Coordinate sets for the one-pass map builder: a person ROI (negative coordinates) and random batches."""
    return [person_roi_voxels(), _voxels(n=1500, lo=-15, hi=15, batch=2, seed=7).coords,
            _voxels(n=1500, lo=-8, hi=8, batch=3, seed=4).coords, _voxels(n=40, lo=-3, hi=3, batch=1, seed=2).coords]


@pytest.mark.parametrize("rounding", ["floor", "trunc"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_pyramid_maps_equal_the_lazily_built_maps(rounding, n_threads):
    """build_pyramid (cells marked and ranked, no unique) gives the grids and kernel maps of subm_map / down_map."""
    torch.set_num_threads(n_threads)
    for coords in _pyramid_cases():
        fast = SparseContext(coords, 3, rounding=rounding, backend="torch")
        assert fast.build_pyramid() and fast.build_pyramid()  # a second call keeps the maps
        lazy = SparseContext(coords, 3, rounding=rounding, backend="torch")
        x = SparseVoxels(coords, torch.zeros(len(coords), 1), 1)
        for s in (1, 2, 4, 8, 16):
            ref, got = lazy.subm_map(x), fast.subm_map(x)
            assert torch.equal(ref.out_coords, got.out_coords) and torch.equal(ref.table, got.table)
            assert ref.n_pairs == got.n_pairs
            grid, ref_grid = fast.coord_index(x), lazy.coord_index(x)
            assert torch.equal(grid.table, ref_grid.table) and torch.equal(grid.lo, ref_grid.lo)
            assert grid.size == ref_grid.size
            if s < 16:
                ref, got = lazy.down_map(x), fast.down_map(x)
                assert got.out_coords.dtype == torch.int32 and torch.equal(ref.out_coords, got.out_coords)
                assert torch.equal(ref.table, got.table) and torch.equal(ref.sources, got.sources)
                x = SparseVoxels(ref.out_coords, torch.zeros(len(ref.out_coords), 1), 2 * s)


def test_pyramid_declines_sparse_boxes_and_spconv(monkeypatch):
    coords = person_roi_voxels()
    assert not SparseContext(coords[:0], 1, backend="torch").build_pyramid()
    if sparse_module.spconv is not None:
        assert not SparseContext(coords, 1, backend="spconv").build_pyramid()
    _no_grid(monkeypatch)
    ctx = SparseContext(coords, 1, backend="torch")
    assert not ctx.build_pyramid() and not ctx._maps and not ctx._indices


@pytest.mark.parametrize("rounding", ["floor", "trunc"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_spvcnn_one_pass_maps_equal_lazy_maps(rounding, n_threads, monkeypatch):
    """SPVCNN's inference forward with the one-pass maps and fast point maps vs the lazily built ones."""
    torch.set_num_threads(n_threads)
    x = _voxels(n=1500, lo=-15, hi=15, batch=2, channels=35, seed=7, dtype=torch.float32)
    torch.manual_seed(0)
    net = SPVCNN(SPVCNNConfig.small(), rounding=rounding, sparse_backend="torch").eval()
    _randomise_batch_norms(net)
    with torch.no_grad():
        got = net(x.coords, x.feats, 2)
        monkeypatch.setattr(SparseContext, "build_pyramid", lambda self: False)
        ref = net(x.coords, x.feats, 2)
    assert (got - ref).abs().max() < 1e-5


def test_input_point_corners_equal_the_checked_corners():
    """Corner rows and weights of SPVCNN's points (the stride-1 coordinates) without bounds checks."""
    for coords in _pyramid_cases():
        for rounding in ("floor", "trunc"):
            ctx = SparseContext(coords, 3, rounding=rounding, backend="torch")
            assert ctx.build_pyramid()
            points, batch = coords[:, 1:].float(), coords[:, 0].to(torch.int64)
            for s in (2, 4, 16):
                grid = ctx._indices[s]
                x = SparseVoxels(ctx._maps[("subm", s)].out_coords, torch.zeros(1, 1), s)
                rows, w = sparse_module._input_point_corners(points, ctx, grid)
                ref_rows, ref_w = sparse_module._grid_corners(x, points, batch, grid)
                assert torch.equal(rows, ref_rows) and (w - ref_w).abs().max() < 1e-7


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_offset_pairs_equal_the_transposed_table_lists(stride):
    """:meth:`KernelMap.offset_pairs` (column cumulative sum) gives the pairs read off the offset-major table."""
    ctx = SparseContext(person_roi_voxels(), 1, rounding="trunc", backend="torch")
    assert ctx.build_pyramid()
    kmap = ctx._maps[("subm", stride)]
    in_rows, counts, order, starts = kmap.offset_pairs()
    present = kmap.present.clone()
    present[:, kmap.identity] = False
    by_offset = present.t().contiguous()  # reference: the lists walked offset-major, outputs ascending
    position = (torch.cumsum(by_offset.view(-1), 0) - 1).view(by_offset.shape).t()
    assert torch.equal(in_rows, kmap.table.t()[by_offset])
    assert counts == by_offset.sum(1).tolist()
    assert torch.equal(order, position[present])
    assert torch.equal(starts, torch.cumsum(present.sum(1), 0) - present.sum(1))
    assert torch.equal(in_rows[order], kmap.table[present])  # output-major: each output's pairs in offset order


@pytest.mark.parametrize("n_threads", [1, 2])
def test_one_pass_point_maps_equal_the_per_stride_maps(n_threads):
    """:meth:`SparseContext.build_point_maps` (strides stacked) vs the per-stride ``on_input_coords`` maps."""
    torch.set_num_threads(n_threads)
    for coords in _pyramid_cases():
        n_batch = int(coords[:, 0].max()) + 1
        points, batch = coords[:, 1:].float(), coords[:, 0].to(torch.int64)
        for rounding in ("floor", "trunc"):
            one_pass = SparseContext(coords, n_batch, rounding=rounding, backend="torch")
            per_stride = SparseContext(coords, n_batch, rounding=rounding, backend="torch")
            assert one_pass.build_pyramid() and per_stride.build_pyramid()
            assert one_pass.build_point_maps(points, (2, 4, 16))
            for s in (2, 4, 16):
                x = SparseVoxels(per_stride._maps[("subm", s)].out_coords, torch.randn(1, 3), s)
                x = x.replace(torch.randn(len(x.coords), 3))
                sparse_module.voxel_to_point_fused(x, points, batch, per_stride, on_input_coords=True)
                sparse_module.point_to_voxel_fused(x, torch.randn(len(points), 3), points, batch, per_stride,
                                                   on_input_coords=True)
                for kind in ("v2p", "p2v"):
                    for got, ref in zip(one_pass._point_maps[(kind, s)], per_stride._point_maps[(kind, s)]):
                        assert torch.equal(got, ref), (kind, s, rounding)
    lazy = SparseContext(coords, 1, backend="torch")
    assert not lazy.build_point_maps(points, (4,))  # needs the one-pass grids
