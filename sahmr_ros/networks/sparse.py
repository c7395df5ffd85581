"""Sparse voxel tensors for the point-voxel 3D CNN (SPVCNN), on spconv.

The official model was trained with torchsparse 1.4. This module reproduces its semantics on top
of spconv 2.x so the released weights give the same numbers:

* a sparse tensor holds integer voxel coordinates ``(b, x, y, z)`` in units of the *finest* voxel
  (5 cm), all multiples of the tensor's ``stride`` (1, 2, 4, 8, 16);
* 3x3x3 stride-1 convolutions are submanifold: ``out[o] = sum_k in[o + off_k * s] W[k]``;
* 2x2x2 stride-2 convolutions output the coordinates ``down(c) = round(c / 2s) * 2s`` and gather
  ``in[o + off_k * s]`` for ``off_k`` in {0, 1}^3; transposed convolutions reuse that map with input
  and output swapped, returning to the exact finer coordinates;
* ``round`` is floor division in torchsparse under torch >= 1.13 but *truncation toward zero* under
  torch 1.12 (the official environment): camera-frame coordinates are often negative, so the two
  give different voxel sets. :class:`SparseContext` takes ``rounding="trunc"`` or ``"floor"``.

spconv needs non-negative indices, so coordinates are shifted by an origin that is a multiple of
the coarsest stride; floor division commutes with such a shift, and the truncating variant is
computed from the unshifted coordinates and mapped onto spconv's (floor) result: both share the
same 2x2x2 neighbourhoods, they only differ in which coarse voxels exist (see
:meth:`SparseContext.downsample_coords`).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn

from sahmr_ros.networks.precision import at_least_float32, full_precision

try:  # spconv is a hard dependency of the sparse CNN; imported lazily for a clear error.
    import spconv.pytorch as spconv
except ImportError:  # pragma: no cover - exercised only on broken installs
    spconv = None

__all__ = [
    "SparseVoxels",
    "SparseContext",
    "CoordIndex",
    "SubmanifoldConv3d",
    "DownConv3d",
    "UpConv3d",
    "PointwiseConv",
    "voxel_to_point",
    "point_to_voxel",
]

Rounding = Literal["trunc", "floor"]
_KEY_BITS = 16  # bits per spatial axis in a coordinate key: +-32768 voxels (+-1.6 km at 5 cm)
_KEY_OFFSET = 1 << (_KEY_BITS - 1)


def _require_spconv():
    if spconv is None:
        raise ImportError(
            "spconv is required for the sparse 3D CNN: pip install spconv (CPU) or spconv-cu121 "
            "(CUDA 12.x); see README.md"
        )
    return spconv


@contextmanager
def _spconv_threads(device: torch.device):
    """Run spconv's CPU kernels on one thread.

    spconv 2.3.8's CPU gather/scatter kernels race when torch uses several threads: outputs of
    both submanifold and strided convolutions were off by up to 0.5 against a dense reference
    with 2 threads, and exact with 1 (see test/test_sparse.py). CUDA is unaffected.
    """
    if device.type != "cpu":
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@dataclass
class SparseVoxels:
    """A batch of sparse voxel features.

    Attributes:
        coords: (N, 4) int32 ``(batch, x, y, z)`` in units of the finest voxel, multiples of stride.
        feats: (N, C) float.
        stride: tensor stride in finest-voxel units.
    """

    coords: torch.Tensor
    feats: torch.Tensor
    stride: int = 1

    def replace(self, feats: torch.Tensor) -> "SparseVoxels":
        return SparseVoxels(self.coords, feats, self.stride)


class CoordIndex:
    """Exact lookup of integer coordinates ``(b, x, y, z)`` -> row, by sorted 64-bit keys.

    Args:
        coords: (N, 4) integer tensor; rows must be unique.
    """

    def __init__(self, coords: torch.Tensor):
        keys = _coord_keys(coords)
        self.sorted_keys, self.order = torch.sort(keys)

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """Row of each query coordinate (..., 4), or -1 where absent. Returns (...,) int64."""
        keys = _coord_keys(coords.reshape(-1, 4))
        if len(self.sorted_keys) == 0:
            return torch.full(coords.shape[:-1], -1, dtype=torch.long, device=coords.device)
        pos = torch.searchsorted(self.sorted_keys, keys).clamp(max=len(self.sorted_keys) - 1)
        found = self.sorted_keys[pos] == keys
        rows = torch.where(found, self.order[pos], torch.full_like(pos, -1))
        return rows.reshape(coords.shape[:-1])


def _coord_keys(coords: torch.Tensor) -> torch.Tensor:
    c = coords.to(torch.int64)
    xyz = c[:, 1:] + _KEY_OFFSET
    if len(c) and (xyz.min() < 0 or xyz.max() >= (1 << _KEY_BITS)):
        raise ValueError("voxel coordinates exceed the +-32768 range of the coordinate index")
    return (c[:, 0] << (3 * _KEY_BITS)) | (xyz[:, 0] << (2 * _KEY_BITS)) | (xyz[:, 1] << _KEY_BITS) | xyz[:, 2]


@dataclass
class SparseContext:
    """Per-forward state shared by the sparse layers: spconv index origin, kernel maps, rounding.

    Args:
        coords: (N, 4) finest-level coordinates of the whole batch.
        batch_size: number of samples B (batch ids in 0..B-1).
        rounding: ``"trunc"`` (torch 1.12 torchsparse, what the released weights saw) or ``"floor"``.
        max_stride: coarsest stride used (16 for SPVCNN's 4 down-samplings).
    """

    coords: torch.Tensor
    batch_size: int
    rounding: Rounding = "floor"
    max_stride: int = 16
    indice_dict: dict = field(default_factory=dict)
    _down: dict = field(default_factory=dict)  # stride -> (floor coords, trunc coords, floor row of trunc)

    def __post_init__(self):
        if self.rounding not in ("trunc", "floor"):
            raise ValueError(f"rounding must be 'trunc' or 'floor', got {self.rounding!r}")
        xyz = self.coords[:, 1:].to(torch.int64)
        if len(xyz):
            lo = torch.div(xyz.min(0).values, self.max_stride, rounding_mode="floor") - 1
            hi = torch.div(xyz.max(0).values, self.max_stride, rounding_mode="floor") + 2
        else:
            lo = torch.zeros(3, dtype=torch.int64, device=xyz.device)
            hi = torch.ones(3, dtype=torch.int64, device=xyz.device)
        self.origin = lo * self.max_stride  # (3,) a multiple of max_stride, below every coordinate
        self.extent = ((hi - lo) * self.max_stride).tolist()  # finest-level spatial shape

    # -- spconv conversion ---------------------------------------------------------------------
    def to_spconv(self, x: SparseVoxels):
        sp = _require_spconv()
        idx = x.coords.to(torch.int64).clone()
        idx[:, 1:] = torch.div(idx[:, 1:] - self.origin, x.stride, rounding_mode="floor")
        shape = [e // x.stride for e in self.extent]
        t = sp.SparseConvTensor(x.feats, idx.to(torch.int32), shape, self.batch_size)
        t.indice_dict = self.indice_dict  # share kernel maps across every layer of this forward
        return t

    def run(self, conv: nn.Module, x: SparseVoxels):
        """Apply a spconv layer to ``x`` and keep the kernel maps it built (spconv copies the dict).

        Under autocast on CUDA, spconv casts to fp16 itself. Its CPU path has no autocast rule and no
        bf16 kernels, so on CPU the convolution runs in float32 with autocast off, and the result
        has the dtype of ``x``'s features.
        """
        dtype = x.feats.dtype
        device = x.feats.device
        precision = nullcontext()
        if device.type == "cpu":
            precision = full_precision(device)
            x = x.replace(at_least_float32(x.feats))
        with _spconv_threads(device), precision:
            out = conv(self.to_spconv(x))
        self.indice_dict = out.indice_dict
        if out.features.dtype != dtype:
            out = out.replace_feature(out.features.to(dtype))
        return out

    def from_spconv_coords(self, indices: torch.Tensor, stride: int) -> torch.Tensor:
        c = indices.to(torch.int64).clone()
        c[:, 1:] = c[:, 1:] * stride + self.origin
        return c.to(torch.int32)

    # -- torchsparse down-sampling rule -----------------------------------------------------------
    def downsample_coords(self, coords: torch.Tensor, stride: int) -> torch.Tensor:
        """Coarse coordinates of a stride-``stride`` -> ``2 * stride`` down-sampling (unique rows).

        floor: ``floor(c / 2s) * 2s``; trunc: ``trunc(c / 2s) * 2s`` (torch < 1.13 ``//`` on ints).
        """
        c = coords.to(torch.int64).clone()
        mode = "floor" if self.rounding == "floor" else "trunc"
        c[:, 1:] = torch.div(c[:, 1:], 2 * stride, rounding_mode=mode) * (2 * stride)
        return torch.unique(c, dim=0).to(torch.int32)


class SubmanifoldConv3d(nn.Module):
    """3x3x3 stride-1 submanifold convolution, no bias. Weight: spconv layout (Cout, 3, 3, 3, Cin)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        sp = _require_spconv()
        self.conv = sp.SubMConv3d(in_channels, out_channels, 3, bias=False)

    def forward(self, x: SparseVoxels, ctx: SparseContext) -> SparseVoxels:
        self.conv.indice_key = f"subm{x.stride}"
        out = ctx.run(self.conv, x)
        return x.replace(out.features)


class DownConv3d(nn.Module):
    """2x2x2 stride-2 convolution, no bias. Weight: spconv layout (Cout, 2, 2, 2, Cin)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        sp = _require_spconv()
        self.conv = sp.SparseConv3d(in_channels, out_channels, 2, stride=2, bias=False)

    def forward(self, x: SparseVoxels, ctx: SparseContext) -> SparseVoxels:
        self.conv.indice_key = f"down{x.stride}"
        out = ctx.run(self.conv, x)
        coarse = 2 * x.stride
        floor_coords = ctx.from_spconv_coords(out.indices, coarse)
        if ctx.rounding == "floor":
            ctx._down[x.stride] = (floor_coords, floor_coords, None)
            return SparseVoxels(floor_coords, out.features, coarse)
        # Truncation keeps the same 2x2x2 neighbourhoods but decides differently which coarse voxels
        # exist: a coarse voxel absent from spconv's (floor) set has no input in its neighbourhood,
        # so its convolution is 0; a floor voxel absent from the truncated set is dropped.
        trunc_coords = ctx.downsample_coords(x.coords, x.stride)
        rows = CoordIndex(floor_coords).lookup(trunc_coords)
        feats = out.features.new_zeros(len(trunc_coords), out.features.shape[1])
        hit = rows >= 0
        feats[hit] = out.features[rows[hit]]
        ctx._down[x.stride] = (floor_coords, trunc_coords, rows)
        return SparseVoxels(trunc_coords, feats, coarse)


class UpConv3d(nn.Module):
    """2x2x2 transposed convolution reusing the kernel map of the matching :class:`DownConv3d`.

    Weight: spconv layout (Cout, 2, 2, 2, Cin). Output coordinates are exactly the finer tensor's
    that entered the down-sampling, in the same row order (so skip connections concatenate).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        sp = _require_spconv()
        self.conv = sp.SparseInverseConv3d(in_channels, out_channels, 2, indice_key="unset", bias=False)

    def forward(self, x: SparseVoxels, ctx: SparseContext) -> SparseVoxels:
        fine = x.stride // 2
        self.conv.indice_key = f"down{fine}"
        floor_coords, trunc_coords, rows = ctx._down[fine]
        feats = x.feats
        if rows is not None:  # truncation: put the coarse features back on spconv's floor set
            feats = x.feats.new_zeros(len(floor_coords), x.feats.shape[1])
            hit = rows >= 0
            feats[rows[hit]] = x.feats[hit]
        out = ctx.run(self.conv, SparseVoxels(floor_coords, feats, x.stride))
        return SparseVoxels(ctx.from_spconv_coords(out.indices, fine), out.features, fine)


class PointwiseConv(nn.Linear):
    """1x1x1 sparse convolution without bias: a per-voxel linear map. Weight (Cout, Cin)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, bias=False)


_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.int64)


def voxel_to_point(
    x: SparseVoxels, points: torch.Tensor, batch: torch.Tensor, index: CoordIndex | None = None
) -> torch.Tensor:
    """Trilinear devoxelisation over the existing corners (torchsparse ``voxel_to_point``).

    Each point reads the 8 voxels at ``floor(p / s) * s + {0, s}^3``; weights are the trilinear
    weights of the missing corners set to 0 and renormalised (``w / (sum w + 1e-8)``).

    Args:
        x: sparse voxels at stride s.
        points: (P, 3) float point coordinates in finest-voxel units.
        batch: (P,) int64 batch id of each point.
        index: optional prebuilt :class:`CoordIndex` of ``x.coords``.

    Returns:
        (P, C) point features.
    """
    s = x.stride
    index = index or CoordIndex(x.coords)
    with torch.no_grad():
        base = torch.floor(points / s) * s  # (P, 3)
        corners = base.to(torch.int64)[:, None, :] + _CORNERS.to(points.device) * s  # (P, 8, 3)
        query = torch.cat([batch[:, None, None].expand(-1, 8, 1), corners], dim=-1)
        rows = index.lookup(query)  # (P, 8)
        frac = (points - base) / s  # (P, 3) in [0, 1)
        w_axis = torch.stack([1.0 - frac, frac], dim=1)  # (P, 2, 3): weight of offset 0 / 1 per axis
        c = _CORNERS.to(points.device)
        w = w_axis[:, c[:, 0], 0] * w_axis[:, c[:, 1], 1] * w_axis[:, c[:, 2], 2]  # (P, 8)
        w = torch.where(rows >= 0, w, torch.zeros_like(w))
        w = w / (w.sum(dim=1, keepdim=True) + 1e-8)
    gathered = x.feats[rows.clamp(min=0)]  # (P, 8, C)
    return (gathered * w.to(x.feats.dtype)[..., None]).sum(dim=1)


def point_to_voxel(
    x: SparseVoxels, point_feats: torch.Tensor, points: torch.Tensor, batch: torch.Tensor
) -> SparseVoxels:
    """Average point features into the voxels of ``x`` (torchsparse ``point_to_voxel``).

    Point p goes to voxel ``floor(p / s) * s`` if that voxel exists in ``x``; voxels that receive
    no point get zeros.

    Args:
        x: sparse voxels at stride s (only coords and stride are used).
        point_feats: (P, C).
        points: (P, 3) finest-voxel units.
        batch: (P,) int64.

    Returns:
        SparseVoxels with ``x``'s coordinates and the averaged features.
    """
    s = x.stride
    with torch.no_grad():
        cell = (torch.floor(points / s) * s).to(torch.int64)
        rows = CoordIndex(x.coords).lookup(torch.cat([batch[:, None], cell], dim=1))
        valid = rows >= 0
        counts = torch.bincount(rows[valid], minlength=len(x.coords)).to(point_feats.dtype)
    feats = point_feats.new_zeros(len(x.coords), point_feats.shape[1])
    r = rows[valid]
    feats = feats.index_add(0, r, point_feats[valid] / counts[r][:, None])
    return x.replace(feats)


def kernel_from_torchsparse(kernel: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Convert a torchsparse 1.4 kernel (K^3, Cin, Cout) to spconv's layout (Cout, k, k, k, Cin).

    torchsparse orders the K^3 offsets x-fastest for odd kernels (``k = ix + 3 iy + 9 iz``) and
    z-fastest for even ones (``k = 4 ix + 2 iy + iz``); spconv indexes ``[out, ix, iy, iz, in]``.
    """
    n, c_in, c_out = kernel.shape
    if n != kernel_size**3:
        raise ValueError(f"kernel has {n} offsets, expected {kernel_size}^3 = {kernel_size ** 3}")
    w = kernel.reshape(kernel_size, kernel_size, kernel_size, c_in, c_out)
    if kernel_size % 2 == 1:  # axes are (iz, iy, ix)
        return w.permute(4, 2, 1, 0, 3).contiguous()
    return w.permute(4, 0, 1, 2, 3).contiguous()  # axes are (ix, iy, iz)
