"""Sparse voxel tensors for the point-voxel 3D CNN (SPVCNN): a pure-torch path and spconv.

The official model was trained with torchsparse 1.4. This module reproduces its semantics on two
backends that read the same weights (spconv's layout ``[Cout, k, k, k, Cin]``), chosen per forward
by :class:`SparseContext` (``backend``; the environment variable ``SAHMR_SPARSE_BACKEND``):

* ``"torch"`` (default on CPU): gather-GEMM-scatter over kernel maps built once per stride and
  kind in the context (as spconv's ``indice_key``), differentiable by autograd, multi-threaded;
* ``"spconv"`` (default on CUDA): spconv 2.x, whose CPU backward does not run and whose CPU kernels
  race with several threads (run single-threaded here).

Semantics, in both:

* a sparse tensor holds integer voxel coordinates ``(b, x, y, z)`` in units of the *finest* voxel
  (5 cm), all multiples of the tensor's ``stride`` (1, 2, 4, 8, 16);
* 3x3x3 stride-1 convolutions are submanifold: ``out[o] = sum_k in[o + off_k * s] W[k]``;
* 2x2x2 stride-2 convolutions output the coordinates ``down(c) = round(c / 2s) * 2s`` and gather
  ``in[o + off_k * s]`` for ``off_k`` in {0, 1}^3; transposed convolutions reuse that map with input
  and output swapped, returning to the exact finer coordinates;
* ``round`` is floor division in torchsparse under torch >= 1.13 but *truncation toward zero* under
  torch 1.12 (the official environment): camera-frame coordinates are often negative, so the two
  give different voxel sets. :class:`SparseContext` takes ``rounding="trunc"`` or ``"floor"``.

The torch path computes the output coordinates with either rule directly. spconv needs
non-negative indices, so coordinates are shifted by an origin that is a multiple of
the coarsest stride; floor division commutes with such a shift, and the truncating variant is
computed from the unshifted coordinates and mapped onto spconv's (floor) result: both share the
same 2x2x2 neighbourhoods, they only differ in which coarse voxels exist (see
:meth:`SparseContext.downsample_coords`).
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn

from sahmr_ros.networks.fusion import bn_affine, bn_tensors, derived
from sahmr_ros.networks.precision import at_least_float32, full_precision

try:  # spconv is a hard dependency of the sparse CNN; imported lazily for a clear error.
    import spconv.pytorch as spconv
except ImportError:  # pragma: no cover - exercised only on broken installs
    spconv = None

__all__ = [
    "SparseVoxels",
    "SparseContext",
    "BACKEND_ENV",
    "default_backend",
    "CoordIndex",
    "VoxelGrid",
    "SubmanifoldConv3d",
    "DownConv3d",
    "UpConv3d",
    "PointwiseConv",
    "KernelMap",
    "sparse_conv",
    "voxel_to_point",
    "point_to_voxel",
    "fusable",
    "fused_conv",
    "fused_linear",
    "voxel_to_point_fused",
    "point_to_voxel_fused",
]

Rounding = Literal["trunc", "floor"]
Backend = Literal["torch", "spconv"]
# One per-offset gather-GEMM-scatter (3 calls) costs about as much as this many multiply-adds in the
# one-GEMM form (chosen by timing both presets' forwards on 1 thread; bench/sparse.py)
_MACS_PER_OFFSET_CALL = 500_000
BACKEND_ENV = "SAHMR_SPARSE_BACKEND"  # "torch", "spconv" or "auto" (default)
# a dense lookup grid (:class:`VoxelGrid`) may have up to this many cells per voxel, plus _GRID_MIN_CELLS;
# larger (voxels spread thinly, e.g. people far apart in one box) falls back to sorted keys (CoordIndex)
_GRID_CELLS_PER_VOXEL = 128
_GRID_MIN_CELLS = 1 << 16
_KEY_BITS = 16  # bits per spatial axis in a coordinate key: +-32768 voxels (+-1.6 km at 5 cm)
_KEY_OFFSET = 1 << (_KEY_BITS - 1)


def _require_spconv():
    if spconv is None:
        raise ImportError(
            "the 'spconv' sparse backend needs spconv: pip install spconv (CPU) or spconv-cu121 "
            f"(CUDA 12.x), see README.md; or use the torch backend ({BACKEND_ENV}=torch)"
        )
    return spconv


def default_backend(device: torch.device | str) -> Backend:
    """Sparse-conv backend for tensors on ``device``: ``SAHMR_SPARSE_BACKEND`` if set, else auto.

    Auto is ``"spconv"`` on CUDA (when spconv is installed) and ``"torch"`` elsewhere: on CPU the
    torch path is faster, multi-threaded and has a backward, and spconv's CPU backward does not run.
    """
    forced = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if forced in ("torch", "spconv"):
        return forced
    if forced != "auto":
        raise ValueError(f"{BACKEND_ENV} must be 'torch', 'spconv' or 'auto', got {forced!r}")
    if torch.device(device).type == "cuda" and spconv is not None:
        return "spconv"
    return "torch"


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
        return self.lookup_keys(_coord_keys(coords.reshape(-1, 4))).reshape(coords.shape[:-1])

    def neighbour_rows(self, coords: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Row of ``coords[i] + (0, offsets[j])`` for (N, 4) coordinates and (M, 3) offsets, or -1: (N, M) int64."""
        margin = int(offsets.abs().max()) if len(offsets) else 0
        return self.lookup_keys(_coord_keys(coords, margin=margin)[:, None] + _key_delta(offsets)[None, :])

    def lookup_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """Row of each coordinate key (any shape, int64), or -1 where absent."""
        if len(self.sorted_keys) == 0:
            return torch.full_like(keys, -1)
        pos = torch.searchsorted(self.sorted_keys, keys).clamp(max=len(self.sorted_keys) - 1)
        return torch.where(self.sorted_keys[pos] == keys, self.order[pos], torch.full_like(pos, -1))


class VoxelGrid:
    """Exact lookup of the coordinates of one stride -> row, in a dense table of cells (no search).

    Each sample ``b`` has a box of ``X * Y * Z`` cells of side ``stride`` whose corner ``lo[b]`` is one
    cell below its lowest voxel on every axis; ``X, Y, Z`` (the largest extent over the samples, plus one
    cell on either side) are shared, so cell ``(b, i, j, k)`` is entry ``((b X + i) Y + j) Z + k`` of
    ``table`` (-1: no voxel). The one-cell margin lets :meth:`neighbour_rows` look up the 26 neighbours
    of any voxel, or any cell of its box, without a bounds check. Build with :meth:`build`, which gives
    None where the table would exceed ``_GRID_CELLS_PER_VOXEL`` cells per voxel (use :class:`CoordIndex`).

    Attributes:
        stride: cell side in finest-voxel units.
        lo: (B, 3) int64 box corner of each sample, in cells (coordinate / stride).
        size: [X, Y, Z] box size in cells; volume: X * Y * Z.
        table: (B * volume,) int64 row of each cell, -1 where empty.
    """

    def __init__(self, coords: torch.Tensor, stride: int, lo: torch.Tensor, size: list[int]):
        self.stride, self.lo, self.size = stride, lo, size
        self.volume = size[0] * size[1] * size[2]
        self._axis = torch.tensor([size[1] * size[2], size[2], 1], dtype=torch.int64, device=coords.device)
        self.table = torch.full((len(lo) * self.volume,), -1, dtype=torch.int64, device=coords.device)
        self.table[self.cells(coords)] = torch.arange(len(coords), device=coords.device)

    @classmethod
    def build(cls, coords: torch.Tensor, stride: int) -> "VoxelGrid | None":
        """Grid of (N, 4) unique coordinates, multiples of ``stride``; None if too large (see class doc)."""
        if len(coords) == 0:
            return None
        c = coords.to(torch.int64)
        b = c[:, 0]
        cells = torch.div(c[:, 1:], stride, rounding_mode="floor")
        n_batch = int(b.max()) + 1
        if int(b.min()) < 0:
            return None
        lo, hi = _per_sample_bounds(b, cells, n_batch)
        size = ((hi - lo).max(0).values + 3).tolist()  # one cell of margin on either side
        if n_batch * size[0] * size[1] * size[2] > _GRID_CELLS_PER_VOXEL * len(c) + _GRID_MIN_CELLS:
            return None
        return cls(c, stride, lo - 1, size)

    @classmethod
    def from_table(cls, stride: int, lo: torch.Tensor, size: list[int], table: torch.Tensor) -> "VoxelGrid":
        """Wrap a filled ``table`` (B * X * Y * Z,) int64 or None (set later); ``lo``, ``size``: see the class."""
        grid = cls.__new__(cls)
        grid.stride, grid.lo, grid.size, grid.table = stride, lo, size, table
        grid.volume = size[0] * size[1] * size[2]
        grid._axis = torch.tensor([size[1] * size[2], size[2], 1], dtype=torch.int64, device=lo.device)
        return grid

    def cells(self, coords: torch.Tensor) -> torch.Tensor:
        """Table entry of each (N, 4) coordinate, a multiple of ``stride`` inside its box: (N,) int64."""
        c = coords.to(torch.int64)
        b = c[:, 0]
        r = torch.div(c[:, 1:], self.stride, rounding_mode="floor") - (self.lo if len(self.lo) == 1 else self.lo[b])
        return (r * self._axis).sum(1) + b * self.volume

    def neighbour_rows(self, coords: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Row of ``coords[i] + (0, offsets[j])``, or -1: (N, M) int64.

        ``coords``: (N, 4), ``offsets``: (M, 3), multiples of ``stride``; every query must lie in its
        sample's box (true for the grid's own voxels and offsets of at most one cell, or cells of the box).
        """
        delta = (torch.div(offsets.to(torch.int64), self.stride, rounding_mode="floor") * self._axis).sum(1)
        return self.table[self.cells(coords)[:, None] + delta[None, :]]

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """Row of each query coordinate (..., 4), or -1 where absent (anywhere: checked). Returns (...,) int64."""
        c = coords.reshape(-1, 4).to(torch.int64)
        b = c[:, 0]
        ok = (b >= 0) & (b < len(self.lo))
        b = torch.where(ok, b, torch.zeros_like(b))
        cells = torch.div(c[:, 1:], self.stride, rounding_mode="floor")
        r = cells - self.lo[b]
        ok &= ((cells * self.stride == c[:, 1:]) & (r >= 0) & (r < self._size_tensor())).all(1)
        flat = torch.where(ok, (r * self._axis).sum(1) + b * self.volume, torch.zeros_like(b))
        return torch.where(ok, self.table[flat], torch.full_like(b, -1)).reshape(coords.shape[:-1])

    def _size_tensor(self) -> torch.Tensor:
        return torch.tensor(self.size, dtype=torch.int64, device=self.lo.device)


def _per_sample_bounds(batch: torch.Tensor, cells: torch.Tensor, n_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample lowest and highest cell: (N,) sample ids in 0..n_batch-1, (N, 3) int -> 2 x (n_batch, 3).

    A sample without cells gets zeros (callers size grids from the samples present).
    """
    if n_batch == 1:
        lo, hi = torch.aminmax(cells, dim=0)
        return lo[None], hi[None]
    index = batch[:, None].expand(-1, 3)
    lo = cells.new_zeros(n_batch, 3).scatter_reduce(0, index, cells, "amin", include_self=False)
    hi = cells.new_zeros(n_batch, 3).scatter_reduce(0, index, cells, "amax", include_self=False)
    return lo, hi


def _key_delta(offsets: torch.Tensor) -> torch.Tensor:
    """Key increments of (M, 3) integer offsets: key(c + d) = key(c) + delta(d) while no axis overflows."""
    d = offsets.to(torch.int64)
    return (d[:, 0] << (2 * _KEY_BITS)) + (d[:, 1] << _KEY_BITS) + d[:, 2]


def _coord_keys(coords: torch.Tensor, margin: int = 0) -> torch.Tensor:
    """Sortable int64 keys of (N, 4) coordinates; ``margin``: offsets up to it must stay in range too."""
    c = coords.to(torch.int64)
    xyz = c[:, 1:] + _KEY_OFFSET
    if len(c) and (xyz.min() - margin < 0 or xyz.max() + margin >= (1 << _KEY_BITS)):
        raise ValueError("voxel coordinates exceed the +-32768 range of the coordinate index")
    return (c[:, 0] << (3 * _KEY_BITS)) | (xyz[:, 0] << (2 * _KEY_BITS)) | (xyz[:, 1] << _KEY_BITS) | xyz[:, 2]


def _coords_from_keys(keys: torch.Tensor) -> torch.Tensor:
    mask = (1 << _KEY_BITS) - 1
    xyz = [((keys >> (shift * _KEY_BITS)) & mask) - _KEY_OFFSET for shift in (2, 1, 0)]
    return torch.stack([keys >> (3 * _KEY_BITS)] + xyz, dim=1)


@dataclass
class SparseContext:
    """Per-forward state shared by the sparse layers: backend, kernel maps, rounding, spconv origin.

    Args:
        coords: (N, 4) finest-level coordinates of the whole batch.
        batch_size: number of samples B (batch ids in 0..B-1).
        rounding: ``"trunc"`` (torch 1.12 torchsparse, what the released weights saw) or ``"floor"``.
        max_stride: coarsest stride used (16 for SPVCNN's 4 down-samplings).
        backend: ``"torch"`` or ``"spconv"``; None: :func:`default_backend` of ``coords``' device.
    """

    coords: torch.Tensor
    batch_size: int
    rounding: Rounding = "floor"
    max_stride: int = 16
    backend: Backend | None = None
    indice_dict: dict = field(default_factory=dict)
    _down: dict = field(default_factory=dict)  # stride -> (floor coords, trunc coords, floor row of trunc)
    _maps: dict = field(default_factory=dict)  # torch backend: (kind, stride) -> kernel map
    _indices: dict = field(default_factory=dict)  # stride -> CoordIndex of that stride's coordinates
    _point_maps: dict = field(default_factory=dict)  # inference: (kind, stride) -> point <-> voxel bags
    _pyramid: bool = False  # every stride's maps built by :meth:`build_pyramid`
    gemm: torch.dtype | None = None  # inference: GEMM operand dtype fixed for the forward (None: per call)

    def __post_init__(self):
        if self.rounding not in ("trunc", "floor"):
            raise ValueError(f"rounding must be 'trunc' or 'floor', got {self.rounding!r}")
        if self.backend is None:
            self.backend = default_backend(self.coords.device)
        if self.backend not in ("torch", "spconv"):
            raise ValueError(f"backend must be 'torch' or 'spconv', got {self.backend!r}")
        if self.backend == "spconv":
            _require_spconv()
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
        # unique rows, sorted as torch.unique(dim=0) sorts them: keys are monotone in (b, x, y, z)
        return _coords_from_keys(torch.unique(_coord_keys(c))).to(torch.int32)

    def coord_index(self, x: SparseVoxels) -> "VoxelGrid | CoordIndex":
        """Lookup of ``x.coords`` -> row, built once per stride (every tensor of one stride shares them).

        A :class:`VoxelGrid` (one table read per query), or a :class:`CoordIndex` (sorted keys, binary
        search) where the grid would be too large; both have ``lookup`` and ``neighbour_rows``.
        """
        if x.stride not in self._indices:
            self._indices[x.stride] = VoxelGrid.build(x.coords, x.stride) or CoordIndex(x.coords)
        return self._indices[x.stride]

    # -- torch backend: kernel maps, built once per (kind, stride) and reused ----------------------
    def subm_map(self, x: SparseVoxels) -> "KernelMap":
        """Kernel map of the 3x3x3 submanifold conv at ``x.stride`` (built on first use).

        Output ``o`` reads input ``n`` at offset ``k = 9 a + 3 b + c`` when
        ``x.coords[n] = x.coords[o] + (a - 1, b - 1, c - 1) * stride`` over (x, y, z): spconv's weight
        index order ``[:, a, b, c, :]``.
        """
        key = ("subm", x.stride)
        if key not in self._maps:
            with torch.no_grad():
                offsets = (_offsets(3, x.coords.device) - 1) * x.stride  # (27, 3)
                table = self.coord_index(x).neighbour_rows(x.coords, offsets)  # (N, 27): one lookup for all
                self._maps[key] = KernelMap(x.coords, x.coords, table, 27, identity=13)
        return self._maps[key]

    def down_map(self, x: SparseVoxels) -> "KernelMap":
        """Kernel map of the 2x2x2 stride-2 conv from ``x.stride`` (its transposed conv swaps it).

        Output coordinates follow :meth:`downsample_coords` (``rounding``); output ``o`` reads
        ``o + (a, b, c) * stride`` at offset ``k = 4 a + 2 b + c`` (spconv's weight order). Each fine
        voxel ``n`` lies in the 2x2x2 block of one coarse position, ``floor(n / 2s) * 2s``, which
        truncation may leave out of the output: that fine voxel then feeds (and receives) nothing.
        The coarse coordinates' lookup becomes the context's index of stride ``2 * x.stride``.
        """
        key = ("down", x.stride)
        if key not in self._maps:
            with torch.no_grad():
                s = x.stride
                fine = x.coords.to(torch.int64)
                coarse = self.downsample_coords(x.coords, s)
                if 2 * s not in self._indices:
                    self._indices[2 * s] = VoxelGrid.build(coarse, 2 * s) or CoordIndex(coarse)
                block = fine.clone()
                block[:, 1:] = torch.div(fine[:, 1:], 2 * s, rounding_mode="floor") * (2 * s)
                bits = torch.div(fine[:, 1:] - block[:, 1:], s, rounding_mode="floor")  # (N, 3) in {0, 1}
                k = bits[:, 0] * 4 + bits[:, 1] * 2 + bits[:, 2]
                # a block is at most one coarse cell from its (floor or truncated) coarse voxel: in the grid
                parent = self._indices[2 * s].neighbour_rows(block, bits.new_zeros(1, 3))[:, 0]
                hit = (parent >= 0).nonzero(as_tuple=True)[0]
                table = torch.full((len(coarse) * 8,), -1, dtype=torch.int64, device=fine.device)
                table[parent[hit] * 8 + k[hit]] = hit  # each fine voxel has one (parent, offset) pair
                sources = torch.where(parent >= 0, parent * 8 + k, torch.full_like(parent, -1))
                self._maps[key] = KernelMap(x.coords, coarse, table.view(-1, 8), 8, sources=sources)
        return self._maps[key]

    # -- inference: every stride's grid and kernel maps in one pass (no sort, no unique) -----------------
    def build_pyramid(self) -> bool:
        """Build the lookup grids, submanifold maps and down maps of strides 1 .. ``max_stride`` at once.

        The same maps as :meth:`subm_map` and :meth:`down_map` build lazily, found without a sort: the
        voxels of stride ``2s`` are the cells marked by the stride-``s`` voxels (their ``rounding`` parents)
        in a dense per-sample table of stride-``2s`` cells (a :class:`VoxelGrid`'s), numbered in table order
        by a cumulative sum, which is the (b, x, y, z) order of :meth:`downsample_coords`; the numbered table
        is the stride-``2s`` lookup. Each sample's box at every stride follows from its stride-1 box (the
        cells ``round(c / s)`` of a sample span ``round(lo / s) .. round(hi / s)``, ``round`` monotone).

        Returns:
            True when built (or already built); False, building nothing, where a table would exceed
            ``_GRID_CELLS_PER_VOXEL`` cells per input voxel (plus ``_GRID_MIN_CELLS``), a batch id is
            negative, there are no voxels or the backend is spconv (the lazy builders then apply).
        """
        if self._pyramid:
            return True
        if self.backend != "torch" or len(self.coords) == 0 or self._maps or self._indices:
            return False
        strides = [1 << i for i in range(int(math.log2(self.max_stride)) + 1)]
        mode = "floor" if self.rounding == "floor" else "trunc"
        with torch.no_grad():
            c = self.coords.to(torch.int64)
            b, xyz = c[:, 0], c[:, 1:]
            b_lo, b_hi = torch.aminmax(b)
            if int(b_lo) < 0:
                return False
            n_batch = int(b_hi) + 1
            lo, hi = _per_sample_bounds(b, xyz, n_batch)
            s_t = torch.tensor(strides, dtype=torch.int64, device=c.device)[:, None, None]
            lo_all = torch.div(lo[None], s_t, rounding_mode=mode) - 1  # (L, B, 3) box corners, one cell margin
            hi_all = torch.div(hi[None], s_t, rounding_mode=mode) + 1
            sizes = ((hi_all - lo_all).amax(1) + 1).tolist()  # (L, 3)
            if any(n_batch * x * y * z > _GRID_CELLS_PER_VOXEL * len(c) + _GRID_MIN_CELLS for x, y, z in sizes):
                return False
            offsets = _offsets(3, c.device) - 1  # (27, 3) submanifold offsets in cells
            corner = torch.tensor([4, 2, 1], dtype=torch.int64, device=c.device)
            fine_coords = self.coords
            for level, s in enumerate(strides):
                grid_lo = lo_all[level]
                grid = VoxelGrid.from_table(s, grid_lo, sizes[level], None)
                axis, volume = grid._axis, grid.volume
                box_lo = grid_lo if n_batch == 1 else grid_lo[b]
                if level == 0:
                    cells = ((xyz - box_lo) * axis).sum(1) + b * volume
                    table = torch.full((n_batch * volume,), -1, dtype=torch.int64, device=c.device)
                    table.index_copy_(0, cells, torch.arange(len(c), device=c.device))
                    coords = self.coords
                else:
                    # mark the cells of the finer voxels' parents; rank them in table order
                    q = torch.div(xyz, s, rounding_mode=mode)
                    parent_cells = ((q - box_lo) * axis).sum(1) + b * volume
                    occupied = torch.zeros(n_batch * volume, dtype=torch.bool, device=c.device)
                    occupied.index_fill_(0, parent_cells, True)
                    rank = torch.cumsum(occupied, 0)
                    n = int(rank[-1])
                    table = torch.where(occupied, rank - 1, -1)
                    row = table.index_select(0, parent_cells)  # (N_fine,) coarse row of each finer voxel
                    # (index_copy_ with repeated rows: every copy to a row carries the same value)
                    cells = torch.empty(n, dtype=torch.int64, device=c.device).index_copy_(0, row, parent_cells)
                    coords = torch.empty(n, 4, dtype=torch.int32, device=c.device).index_copy_(
                        0, row, torch.cat([b[:, None], q * s], 1).to(torch.int32))
                    # down map from the finer stride: each finer voxel's 2x2x2 block is its floor parent
                    if mode == "floor":
                        block, parent = q, row
                    else:
                        block = torch.div(xyz, s, rounding_mode="floor")
                        parent = table.index_select(0, ((block - box_lo) * axis).sum(1) + b * volume)
                    k = ((torch.div(xyz, s // 2, rounding_mode="floor") - 2 * block) * corner).sum(1)
                    sources = parent * 8 + k
                    slot = sources
                    if mode != "floor":
                        hit = parent >= 0
                        sources = torch.where(hit, sources, -1)
                        slot = torch.where(hit, sources, n * 8)
                    down = torch.full((n * 8 + 1,), -1, dtype=torch.int64, device=c.device)
                    down.index_copy_(0, slot, torch.arange(len(xyz), device=c.device))  # repeats: the unused slot
                    self._maps[("down", s // 2)] = KernelMap(fine_coords, coords, down[:-1].view(n, 8), 8,
                                                             sources=sources)
                    b, xyz, fine_coords = coords[:, 0].to(torch.int64), coords[:, 1:].to(torch.int64), coords
                grid.table = table
                self._indices[s] = grid
                neighbours = table.index_select(0, (cells[:, None] + (offsets * axis).sum(1)).view(-1)).view(-1, 27)
                self._maps[("subm", s)] = KernelMap(coords, coords, neighbours, 27, identity=13)
        self._pyramid = True
        return True

    def build_point_maps(self, points: torch.Tensor, strides: tuple[int, ...]) -> bool:
        """Inference: the point <-> voxel maps of the input voxels' points at several strides in one pass.

        The maps :func:`voxel_to_point_fused` and :func:`point_to_voxel_fused` build one stride at a time with
        ``on_input_coords`` (same values, same order), for all ``strides`` at once: each operation runs on
        the stacked strides (corner weights, one read of the stacked lookup tables, one stable sort of the
        points by their voxel with every stride's keys in its own range).

        Args:
            points: (P, 3) float, the context's stride-1 coordinates ``coords[:, 1:]`` in row order.
            strides: strides whose maps to build (those already cached are kept).

        Returns:
            True when built; False, building nothing, unless :meth:`build_pyramid` built every stride's grid.
        """
        if not self._pyramid or not all(isinstance(self._indices.get(s), VoxelGrid) for s in strides):
            return False
        strides = tuple(s for s in strides if ("v2p", s) not in self._point_maps or ("p2v", s) not in self._point_maps)
        if not strides:
            return True
        grids = [self._indices[s] for s in strides]
        device = points.device
        with torch.no_grad():
            c = self.coords.to(torch.int64)
            b, xyz = c[:, 0], c[:, 1:]
            s_int = torch.tensor(strides, dtype=torch.int64, device=device)
            lo = torch.stack([g.lo for g in grids])  # (L, B, 3)
            lo = lo if lo.shape[1] == 1 else lo[:, b]
            axis = torch.stack([g._axis for g in grids])  # (L, 3)
            sizes = [len(g.table) for g in grids]
            base = torch.tensor([sum(sizes[:i]) for i in range(len(sizes))], dtype=torch.int64, device=device)
            volume = torch.tensor([g.volume for g in grids], dtype=torch.int64, device=device)
            # (L, P) table entry of each point's cell floor(c / s) (corner 0), in the stacked tables
            cell = torch.div(xyz[None], s_int[:, None, None], rounding_mode="floor") - lo
            first = (cell * axis[:, None]).sum(2).add_(b * volume[:, None]).add_(base[:, None])
            # corner weights as :func:`_input_point_corners` computes them: (L, 8, P)
            s_f = s_int.to(points.dtype)[:, None, None]
            p = points.t()[None]
            frac = (p - torch.floor(p / s_f) * s_f) / s_f  # (L, 3, P)
            w_axis = torch.stack([1.0 - frac, frac], dim=2)  # (L, 3, 2, P)
            w = (w_axis[:, 0, :, None, None] * w_axis[:, 1, None, :, None] * w_axis[:, 2, None, None, :])
            w = w.view(len(strides), 8, -1)
            delta = (_CORNERS.to(device)[None] * axis[:, None]).sum(2)  # (L, 8)
            tables = torch.cat([g.table for g in grids])
            rows = tables.index_select(0, (delta[:, :, None] + first[:, None]).view(-1)).view(w.shape)
            present = (rows >= 0) & (w != 0)
            w = torch.where(present, w, 0.0)
            w = w / (w.sum(dim=1, keepdim=True) + 1e-8)
            v2p_rows = torch.where(present, rows, 0).transpose(1, 2).contiguous()  # (L, P, 8)
            v2p_w = w.transpose(1, 2).contiguous()
            # point -> voxel bags: each point's voxel is its corner-0 row (-1: none); sort the points by voxel
            own = rows[:, 0]  # (L, P)
            n = [len(self._maps[("subm", s)].out_coords) for s in strides]  # voxels per stride
            slot = [sum(n[:i]) + i for i in range(len(n))]  # level l's keys: slot[l] .. slot[l] + n[l] (absent)
            valid = own >= 0
            absent = torch.tensor(n, dtype=torch.int64, device=device)[:, None]
            key = (torch.where(valid, own, absent) + torch.tensor(slot, dtype=torch.int64, device=device)[:, None])
            key = key.view(-1)
            order = torch.argsort(key, stable=True)  # level-major: level l's points are entries l P .. l P + P - 1
            counts = torch.bincount(key, minlength=slot[-1] + n[-1] + 1)
            n_points = len(points)
            n_valid = valid.sum(1).tolist()
            for level, s in enumerate(strides):
                begin = level * n_points
                self._point_maps[("v2p", s)] = (v2p_rows[level], v2p_w[level])
                self._point_maps[("p2v", s)] = (order[begin:begin + n_valid[level]] - begin,
                                                _exclusive_cumsum(counts[slot[level]:slot[level] + n[level]]))
        return True


class KernelMap:
    """Which input row each output row reads at each kernel offset, for the torch backend.

    ``out[o] = sum over k of feats[table[o, k]] @ W[k]`` over the present entries (``table >= 0``); the
    transposed conv reads the same pairs swapped. :func:`sparse_conv` runs it in one of these forms:

    * submanifold maps, narrow layers: one GEMM of every input with all offsets' weights,
      ``Y = feats @ [W_0 .. W_K-1]`` (rows ``n * K + k``), then one sparse 0/1 matrix product
      ``out = S @ Y`` (:meth:`selection`, CSR): it multiplies absent neighbours too;
    * maps whose inputs each feed one pair (down-sampling, ``sources``), narrow layers: forward, one
      gather of each output's K inputs (zeros where absent) and one GEMM with the stacked weights
      (im2col); transposed, ``Y`` of the coarse rows and one gather of each fine row's ``sources`` row;
    * wide layers: per offset, gather the pairs' inputs, multiply by ``W[k]``, scatter-add
      (:meth:`groups`): only the existing pairs' products, K operations each.

    Attributes:
        in_coords: (N_in, 4) int32; out_coords: (N_out, 4) int32.
        table: (N_out, K) int64 input row of output o at offset k, -1 where absent; K: ``volume``.
        sources: None, or (N_in,) int64 ``o * K + k`` of the one pair input n feeds (-1: none).
        n_pairs: number of present entries.
        in_rows, out_rows, offsets: (n_pairs,) int64 pair lists, output-major (built on first use).
    """

    def __init__(self, in_coords, out_coords, table, volume: int, identity: int | None = None,
                 sources: torch.Tensor | None = None):
        self.in_coords, self.out_coords, self.table, self.volume = in_coords, out_coords, table, volume
        self.identity = identity  # offset whose pairs are (n, n) for every row (submanifold centre)
        self.sources = sources
        self.present = table >= 0
        self.n_pairs = int(self.present.sum())
        self._pairs: tuple | None = None
        self._select: dict = {}
        self._groups: list | None = None
        self._padded: torch.Tensor | None = None

    def _pair_lists(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._pairs is None:
            out_rows, offsets = self.present.nonzero(as_tuple=True)  # row-major: outputs ascending
            self._pairs = (self.table[self.present], out_rows, offsets)
        return self._pairs

    in_rows = property(lambda self: self._pair_lists()[0])
    out_rows = property(lambda self: self._pair_lists()[1])
    offsets = property(lambda self: self._pair_lists()[2])

    def padded_table(self) -> torch.Tensor:
        """(N_out * K,) ``table`` with N_in where absent: indices into the inputs plus one zero row."""
        if self._padded is None:
            self._padded = torch.where(self.present, self.table, len(self.in_coords)).reshape(-1)
        return self._padded

    def groups(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per offset k: (input rows, output rows) of its pairs."""
        if self._groups is None:
            order = torch.argsort(self.offsets, stable=True)
            counts = torch.bincount(self.offsets, minlength=self.volume).tolist()
            self._groups = list(zip(self.in_rows[order].split(counts), self.out_rows[order].split(counts)))
        return self._groups

    def source_index(self) -> torch.Tensor:
        """(N_in,) ``sources`` with ``N_out * K`` (one row past ``Y``) where a row feeds no pair."""
        if "sources" not in self._select:
            self._select["sources"] = torch.where(self.sources >= 0, self.sources, self.sources.new_tensor(
                len(self.out_coords) * self.volume))
        return self._select["sources"]

    def bag(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Output-major bags over ``Y`` rows ``n * K + k`` (the one-GEMM form): (rows (n_pairs,), starts (N_out,)).

        ``out[o]`` sums ``Y[rows[starts[o]:starts[o + 1]]]`` (one 1-d ``embedding_bag``; its 2-d form with a
        padding index is ~20x slower on CPU); built from the table without a sort.
        """
        if "bag" not in self._select:
            k = torch.arange(self.volume, device=self.table.device)
            self._select["bag"] = (torch.masked_select(self.table * self.volume + k, self.present),
                                   _exclusive_cumsum(self.present.sum(1)))
        return self._select["bag"]

    def offset_pairs(self) -> tuple[torch.Tensor, list[int], torch.Tensor, torch.Tensor]:
        """Pairs of every offset but ``identity``, offset-major, for the pairs-only (gather-GEMM) form.

        Returns (in_rows (P,), per-offset counts (K,), order (P,), starts (N_out,)): pair ``j`` of offset
        ``k`` is row ``sum(counts[:k]) + j`` (outputs ascending); ``order`` lists the pair rows
        output-major and ``starts`` each output's first entry in it (the bags of one ``embedding_bag``).
        """
        if "pairs" not in self._select:
            present = self.present.clone()
            if self.identity is not None:
                present[:, self.identity] = False
            # pair (o, k)'s row in the offset-major list: offset k's first row plus the present entries of
            # column k above o (a cumulative sum down the columns; no transposed copies of the table)
            column = torch.cumsum(present, 0)  # (N_out, K)
            counts = column[-1].clone() if len(column) else present.new_zeros(self.volume, dtype=torch.int64)
            position = column.add_(_exclusive_cumsum(counts).sub_(1))
            order = torch.masked_select(position, present)  # output-major (masked_select walks memory order)
            in_rows = torch.empty_like(order).index_copy_(0, order, torch.masked_select(self.table, present))
            self._select["pairs"] = (in_rows, counts.tolist(), order, _exclusive_cumsum(present.sum(1)))
        return self._select["pairs"]

    def selection(self, transposed: bool) -> "_SparseMatrix":
        """0/1 matrix S mapping ``Y`` rows ``n * K + k`` to output rows ``o`` (``out = S @ Y``)."""
        if transposed not in self._select:
            n_in, n_out = len(self.in_coords), len(self.out_coords)
            src, dst = (self.out_rows, self.in_rows) if transposed else (self.in_rows, self.out_rows)
            if transposed:
                n_in, n_out = n_out, n_in
            self._select[transposed] = _SparseMatrix(dst, src * self.volume + self.offsets, None,
                                                     (n_out, n_in * self.volume), rows_sorted=not transposed)
        return self._select[transposed]


class _SparseMatrix:
    """A constant sparse matrix (COO pairs, values or ones) and its CSR forms, built on first use.

    ``rows_sorted``: the pairs are already in ascending row order (their CSR needs no sort; columns
    within a row may be in any order).
    """

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor | None, shape: tuple[int, int],
                 rows_sorted: bool = False):
        self.rows, self.cols, self.values, self.shape = rows, cols, values, shape
        self.rows_sorted = rows_sorted
        self._csr: dict = {}

    def csr(self, dtype: torch.dtype, transposed: bool = False) -> torch.Tensor:
        key = (dtype, transposed)
        if key not in self._csr:
            rows, cols = (self.cols, self.rows) if transposed else (self.rows, self.cols)
            shape = self.shape[::-1] if transposed else self.shape
            order = None if self.rows_sorted and not transposed else torch.argsort(rows * shape[1] + cols)
            counts = torch.bincount(rows, minlength=shape[0])
            crow = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
            if self.values is None:
                values = torch.ones(len(rows), dtype=dtype, device=rows.device)
            else:
                values = (self.values if order is None else self.values[order]).to(dtype)
            with warnings.catch_warnings():  # "sparse CSR tensor support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                self._csr[key] = torch.sparse_csr_tensor(crow, cols if order is None else cols[order], values,
                                                         shape, check_invariants=False)
        return self._csr[key]

    def __matmul__(self, y: torch.Tensor) -> torch.Tensor:
        """``M @ y`` (y dense, (shape[1], C)), differentiable in ``y``."""
        if torch.is_grad_enabled() and y.requires_grad:
            return _SparseMatmul.apply(self, y)
        return self.csr(y.dtype) @ y


class _SparseMatmul(torch.autograd.Function):
    """``M @ y`` for a constant sparse M; the backward ``M^T @ grad`` uses M's transposed CSR."""

    @staticmethod
    def forward(ctx, m, y):
        ctx.m = m
        return m.csr(y.dtype) @ y

    @staticmethod
    def backward(ctx, grad):
        return None, ctx.m.csr(grad.dtype, transposed=True) @ grad.contiguous()


def _exclusive_cumsum(counts: torch.Tensor) -> torch.Tensor:
    """(N,) int64 start of each bag of ``counts`` (N,) in a concatenation: ``[0, c0, c0 + c1, ...]``."""
    return torch.cumsum(counts, 0).sub_(counts)


def _offsets(k: int, device: torch.device) -> torch.Tensor:
    """(k^3, 3) int64 kernel offsets ``(a, b, c)`` in spconv's weight order (c fastest)."""
    return torch.tensor(list(itertools.product(range(k), repeat=3)), dtype=torch.int64, device=device)


def _pad_row(f: torch.Tensor) -> torch.Tensor:
    """(N + 1, C): ``f`` and a zero row (the gather target of absent entries)."""
    return torch.cat([f, f.new_zeros(1, f.shape[1])])


_NO_CONTEXT = nullcontext()


def _autocast_off(device: torch.device):
    """:func:`full_precision` where autocast is on for ``device``'s type, else a no-op (no context object built)."""
    return full_precision(device) if torch.is_autocast_enabled(device.type) else _NO_CONTEXT


def _bag(indices: torch.Tensor, table: torch.Tensor, starts: torch.Tensor, mode: int = 0,
         weights: torch.Tensor | None = None) -> torch.Tensor:
    """1-d ``embedding_bag`` without the functional wrapper's checks: (B,) bags of rows of ``table`` (R, C).

    ``indices``: (L,) int64 rows; ``starts``: (B,) int64 first entry of each bag; ``mode``: 0 sum, 1 mean;
    ``weights``: optional (L,) per-entry weights (sum only). Returns (B, C), ``table``'s dtype.
    """
    return torch.embedding_bag(table, indices, starts, False, mode, False, weights, False, None)[0]


def _gemm_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """Dtype of the sparse convolutions' matrix products: bf16 under CPU bf16 autocast, else ``dtype``.

    Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` the products' operands are rounded to bf16 (as
    autocast does for nn.Linear; oneDNN multiplies them on AMX / AVX512-BF16 and accumulates each in
    float32); every sum over offsets and neighbours stays in float32. Elsewhere: ``dtype``.
    """
    if (device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16):
        return torch.bfloat16
    return dtype


def sparse_conv(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, transposed: bool = False) -> torch.Tensor:
    """Sparse convolution over a kernel map (torch backend), differentiable by autograd.

    ``out[o] = sum over pairs (n, o, k) of feats[n] @ W[k]``, ``W[k] = weight[:, a, b, c, :].T`` for
    the offset ``k`` of ``(a, b, c)`` (spconv's weight order, c fastest); ``transposed`` swaps each
    pair's input and output. Sums run in float32 or better with autocast off (sums of up to 27 x Cin
    products); the matrix products' operands are bf16 under CPU bf16 autocast (:func:`_gemm_dtype`).
    Returns the dtype of ``feats``. The form (see :class:`KernelMap`) is chosen per call: the one-GEMM
    forms where the multiply-adds they spend on absent pairs cost less than the per-offset form's 3 K
    calls (``_MACS_PER_OFFSET_CALL`` each).

    Args:
        feats: (N_in, Cin) input features (N_out, Cin when transposed).
        weight: (Cout, k, k, k, Cin) spconv-layout kernel.
        kmap: the layer's :class:`KernelMap`.
        transposed: apply the map's transposed convolution.

    Returns:
        (N_out, Cout) (N_in, Cout when transposed).
    """
    dtype = torch.promote_types(at_least_float32(feats).dtype, at_least_float32(weight).dtype)
    gemm = _gemm_dtype(dtype, feats.device)
    c_out, c_in = weight.shape[0], weight.shape[-1]
    volume = kmap.volume
    n_src = len(kmap.out_coords if transposed else kmap.in_coords)
    n_dst = len(kmap.in_coords if transposed else kmap.out_coords)
    # rows the one-GEMM form multiplies by all K kernels: the im2col form's outputs, else the sources
    n_gemm = len(kmap.out_coords) if kmap.sources is not None else n_src
    wasted = (n_gemm * volume - kmap.n_pairs) * c_in * c_out
    with full_precision(feats.device):
        f = feats.to(gemm)
        if wasted <= volume * _MACS_PER_OFFSET_CALL:
            if kmap.sources is not None and not transposed:  # im2col: (N_out, K * Cin) @ (K * Cin, Cout)
                w = weight.to(gemm).permute(1, 2, 3, 4, 0).reshape(volume * c_in, c_out)  # row k * Cin + i
                out = _pad_row(f).index_select(0, kmap.padded_table()).view(-1, volume * c_in) @ w
                return out.to(feats.dtype)
            w = weight.to(gemm).permute(4, 1, 2, 3, 0).reshape(c_in, -1)  # (Cin, K * Cout), column k * Cout + j
            y = (f @ w).view(-1, c_out).to(dtype)  # (N * K, Cout), row n * K + k
            if kmap.sources is not None:  # transposed: each fine row reads one row of Y (or zeros)
                index = torch.where(kmap.sources >= 0, kmap.sources, len(y))
                out = _pad_row(y).index_select(0, index)
            elif not transposed:  # sum of each output's rows of Y: one embedding bag (CSR gather-sum)
                csr = kmap.selection(False).csr(dtype)
                out = nn.functional.embedding_bag(csr.col_indices(), y, csr.crow_indices()[:-1], mode="sum")
            else:
                out = kmap.selection(transposed) @ y
        else:
            # unbind, not w[k]: each select's backward would write a zero (K, Cin, Cout) gradient
            w = weight.to(gemm).permute(1, 2, 3, 4, 0).reshape(volume, c_in, c_out).unbind(0)
            if kmap.identity is not None:
                out = (f @ w[kmap.identity]).to(dtype)
            else:
                out = f.new_zeros(n_dst, c_out, dtype=dtype)
            for k, (src, dst) in enumerate(kmap.groups()):
                if k == kmap.identity or len(src) == 0:
                    continue
                if transposed:
                    src, dst = dst, src
                out.index_add_(0, dst, (f.index_select(0, src) @ w[k]).to(dtype))
    return out.to(feats.dtype)


class _ConvWeight(nn.Module):
    """Holds a spconv-layout kernel (Cout, k, k, k, Cin) where spconv is not installed.

    Same parameter name and shape as spconv's modules (so checkpoints load either way) and the same
    initialisation law (kaiming uniform, a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in))).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, *(kernel_size,) * 3, in_channels))
        bound = 1.0 / math.sqrt(in_channels * kernel_size**3)
        nn.init.uniform_(self.weight, -bound, bound)
        self.indice_key = None


def _conv_module(kind: str, in_channels: int, out_channels: int) -> nn.Module:
    """Build the spconv module of ``kind`` (``subm``, ``down``, ``up``), or a weight holder without spconv."""
    kernel_size = 3 if kind == "subm" else 2
    if spconv is None:
        return _ConvWeight(in_channels, out_channels, kernel_size)
    if kind == "subm":
        return spconv.SubMConv3d(in_channels, out_channels, 3, bias=False)
    if kind == "down":
        return spconv.SparseConv3d(in_channels, out_channels, 2, stride=2, bias=False)
    return spconv.SparseInverseConv3d(in_channels, out_channels, 2, indice_key="unset", bias=False)


class SubmanifoldConv3d(nn.Module):
    """3x3x3 stride-1 submanifold convolution, no bias. Weight: spconv layout (Cout, 3, 3, 3, Cin)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = _conv_module("subm", in_channels, out_channels)

    def forward(self, x: SparseVoxels, ctx: SparseContext) -> SparseVoxels:
        if ctx.backend == "torch":
            return x.replace(sparse_conv(x.feats, self.conv.weight, ctx.subm_map(x)))
        self.conv.indice_key = f"subm{x.stride}"
        out = ctx.run(self.conv, x)
        return x.replace(out.features)

    def fused(self, x: SparseVoxels, ctx: SparseContext, bn: nn.BatchNorm1d | None = None,
              relu: bool = False) -> SparseVoxels:
        """Inference ``relu?(bn(self(x)))`` (torch backend, :func:`fused_conv`)."""
        return x.replace(fused_conv(self.conv, x.feats, ctx.subm_map(x), "subm", bn, relu, ctx.gemm))


class DownConv3d(nn.Module):
    """2x2x2 stride-2 convolution, no bias. Weight: spconv layout (Cout, 2, 2, 2, Cin)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = _conv_module("down", in_channels, out_channels)

    def forward(self, x: SparseVoxels, ctx: SparseContext) -> SparseVoxels:
        if ctx.backend == "torch":
            m = ctx.down_map(x)
            return SparseVoxels(m.out_coords, sparse_conv(x.feats, self.conv.weight, m), 2 * x.stride)
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

    def fused(self, x: SparseVoxels, ctx: SparseContext, bn: nn.BatchNorm1d | None = None,
              relu: bool = False) -> SparseVoxels:
        """Inference ``relu?(bn(self(x)))`` (torch backend, :func:`fused_conv`)."""
        m = ctx.down_map(x)
        return SparseVoxels(m.out_coords, fused_conv(self.conv, x.feats, m, "down", bn, relu, ctx.gemm), 2 * x.stride)


class UpConv3d(nn.Module):
    """2x2x2 transposed convolution reusing the kernel map of the matching :class:`DownConv3d`.

    Weight: spconv layout (Cout, 2, 2, 2, Cin). Output coordinates are exactly the finer tensor's
    that entered the down-sampling, in the same row order (so skip connections concatenate).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = _conv_module("up", in_channels, out_channels)

    def forward(self, x: SparseVoxels, ctx: SparseContext) -> SparseVoxels:
        fine = x.stride // 2
        if ctx.backend == "torch":
            m = ctx._maps[("down", fine)]
            return SparseVoxels(m.in_coords, sparse_conv(x.feats, self.conv.weight, m, transposed=True), fine)
        self.conv.indice_key = f"down{fine}"
        floor_coords, trunc_coords, rows = ctx._down[fine]
        feats = x.feats
        if rows is not None:  # truncation: put the coarse features back on spconv's floor set
            feats = x.feats.new_zeros(len(floor_coords), x.feats.shape[1])
            hit = rows >= 0
            feats[rows[hit]] = x.feats[hit]
        out = ctx.run(self.conv, SparseVoxels(floor_coords, feats, x.stride))
        return SparseVoxels(ctx.from_spconv_coords(out.indices, fine), out.features, fine)

    def fused(self, x: SparseVoxels, ctx: SparseContext, bn: nn.BatchNorm1d | None = None,
              relu: bool = False) -> SparseVoxels:
        """Inference ``relu?(bn(self(x)))`` (torch backend, :func:`fused_conv`)."""
        m = ctx._maps[("down", x.stride // 2)]
        return SparseVoxels(m.in_coords, fused_conv(self.conv, x.feats, m, "up", bn, relu, ctx.gemm), x.stride // 2)


class PointwiseConv(nn.Linear):
    """1x1x1 sparse convolution without bias: a per-voxel linear map. Weight (Cout, Cin)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, bias=False)


_CORNERS = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.int64)


def voxel_to_point(
    x: SparseVoxels, points: torch.Tensor, batch: torch.Tensor, index: "VoxelGrid | CoordIndex | None" = None,
    cache: dict | None = None,
) -> torch.Tensor:
    """Trilinear devoxelisation over the existing corners (torchsparse ``voxel_to_point``).

    Each point reads the 8 voxels at ``floor(p / s) * s + {0, s}^3``; weights are the trilinear
    weights of the missing corners set to 0 and renormalised (``w / (sum w + 1e-8)``).

    Args:
        x: sparse voxels at stride s.
        points: (P, 3) float point coordinates in finest-voxel units.
        batch: (P,) int64 batch id of each point.
        index: optional prebuilt lookup of ``x.coords`` (:meth:`SparseContext.coord_index`).
        cache: optional dict keeping the (P, N) interpolation matrix per stride, for calls with the same
            points and, per stride, the same coordinates (one :class:`SparseContext`'s).

    Returns:
        (P, C) point features.
    """
    s = x.stride
    interp = None if cache is None else cache.get(s)
    if interp is None:
        interp = _interpolation(x, points, batch, index or CoordIndex(x.coords))
        if cache is not None:
            cache[s] = interp
    dtype = torch.promote_types(at_least_float32(x.feats).dtype, interp.values.dtype)
    with full_precision(x.feats.device):
        out = interp @ x.feats.to(dtype)
    return out.to(x.feats.dtype)


def _interpolation(x: SparseVoxels, points: torch.Tensor, batch: torch.Tensor, index) -> "_SparseMatrix":
    """(P, N) trilinear weights of :func:`voxel_to_point` as a sparse matrix (rows ascending)."""
    s = x.stride
    if isinstance(index, VoxelGrid):
        return _grid_interpolation(x, points, batch, index)
    with torch.no_grad():
        base = torch.floor(points / s) * s  # (P, 3)
        frac = (points - base) / s  # (P, 3) in [0, 1)
        w_axis = torch.stack([1.0 - frac, frac], dim=1)  # (P, 2, 3): weight of offset 0 / 1 per axis
        c = _CORNERS.to(points.device)
        w = w_axis[:, c[:, 0], 0] * w_axis[:, c[:, 1], 1] * w_axis[:, c[:, 2], 2]  # (P, 8)
        # only corners of nonzero weight can contribute, so only those are looked up (one per point
        # where points lie on voxel corners, as SPVCNN's do at stride 1)
        p, k = (w != 0).nonzero(as_tuple=True)
        corners = torch.cat([batch[p, None].to(torch.int64), base.to(torch.int64)[p] + c[k] * s], dim=1)
        rows = index.lookup(corners)
        present = torch.zeros_like(w, dtype=torch.bool).index_put_((p, k), rows >= 0)
        w = torch.where(present, w, torch.zeros_like(w))
        w = w / (w.sum(dim=1, keepdim=True) + 1e-8)
        # one sparse (P, N) matrix product instead of a (P, 8, C) gather
        hit = rows >= 0
        p, k = p[hit], k[hit]
        return _SparseMatrix(p, rows[hit], w[p, k], (len(points), len(x.coords)), rows_sorted=True)


def _grid_interpolation(x: SparseVoxels, points: torch.Tensor, batch: torch.Tensor, grid: VoxelGrid) -> "_SparseMatrix":
    """:func:`_interpolation` with a :class:`VoxelGrid`: all 8 corners of every point read at once.

    Corners outside their sample's box (or of a batch id the grid lacks) get weight 0 before the read,
    so every read is in the table; the weights are those of the search-based form.
    """
    rows, w = _grid_corners(x, points, batch, grid)
    present = w != 0
    p = present.nonzero(as_tuple=True)[0]
    return _SparseMatrix(p, rows[present], w[present], (len(points), len(x.coords)), rows_sorted=True)


def _grid_corners(x: SparseVoxels, points: torch.Tensor, batch: torch.Tensor, grid: VoxelGrid):
    """Row and normalised trilinear weight of each point's 8 corners: ((P, 8) int64, (P, 8) float).

    Absent corners have weight 0 and row 0 (a valid row: ``x`` must not be empty).
    """
    s = x.stride
    with torch.no_grad():
        base = torch.floor(points / s) * s  # (P, 3)
        frac = (points - base) / s  # (P, 3) in [0, 1)
        w_axis = torch.stack([1.0 - frac, frac], dim=1)  # (P, 2, 3): weight of offset 0 / 1 per axis
        b = batch.to(torch.int64)
        in_batch = (b >= 0) & (b < len(grid.lo))
        b = torch.where(in_batch, b, torch.zeros_like(b))
        r = torch.floor(points / s).to(torch.int64) - grid.lo[b]  # (P, 3) cell of corner 0 in the box
        size = grid._size_tensor()
        r1 = torch.stack([r, r + 1], dim=1)  # (P, 2, 3)
        inside = (r1 >= 0) & (r1 < size) & in_batch[:, None, None]
        w_axis = torch.where(inside, w_axis, torch.zeros_like(w_axis))
        c = _CORNERS.to(points.device)
        w = w_axis[:, c[:, 0], 0] * w_axis[:, c[:, 1], 1] * w_axis[:, c[:, 2], 2]  # (P, 8)
        first = (r * grid._axis).sum(1) + b * grid.volume
        flat = (first[:, None] + (c * grid._axis).sum(1)[None, :]).clamp_(0, len(grid.table) - 1)
        rows = grid.table[flat]  # (P, 8): a row, or -1; meaningless where w == 0
        present = (rows >= 0) & (w != 0)
        w = torch.where(present, w, torch.zeros_like(w))
        w = w / (w.sum(dim=1, keepdim=True) + 1e-8)
        return torch.where(present, rows, torch.zeros_like(rows)), w


def _input_point_corners(points: torch.Tensor, ctx: "SparseContext", grid: VoxelGrid):
    """:func:`_grid_corners` of the points ``ctx.coords[:, 1:]`` (batch ``ctx.coords[:, 0]``), ``points`` as float.

    Every corner ``floor(c / s) + {0, 1}^3`` of such a point is in its sample's box (the box spans the
    rounded coordinates plus one cell, and floor differs from truncation by at most one cell), so no
    bounds checks; the weights are the same float operations, computed corner-major ((8, P): long
    contiguous rows vectorise, (P, 8) broadcasts do not). Returns ((P, 8) int64 rows, (P, 8) weights).
    """
    s = grid.stride
    with torch.no_grad():
        first = grid.cells(ctx.coords)  # (P,) cell of corner 0, floor(c / s)
        p = points.t()
        frac = (p - torch.floor(p / s) * s) / s  # (3, P) in [0, 1)
        w_axis = torch.stack([1.0 - frac, frac], dim=1)  # (3, 2, P): weight of offset 0 / 1 per axis
        w = (w_axis[0, :, None, None] * w_axis[1, None, :, None] * w_axis[2, None, None, :]).view(8, -1)
        delta = (_CORNERS.to(points.device) * grid._axis).sum(1)  # corner 4 i + 2 j + k, as _CORNERS
        rows = grid.table.index_select(0, (delta[:, None] + first).view(-1)).view(8, -1)
        present = (rows >= 0) & (w != 0)
        w = torch.where(present, w, 0.0)
        w = w / (w.sum(dim=0, keepdim=True) + 1e-8)
        return torch.where(present, rows, 0).t().contiguous(), w.t().contiguous()


def voxel_to_point_fused(x: SparseVoxels, points: torch.Tensor, batch: torch.Tensor, ctx: "SparseContext",
                         on_coords: bool = False, on_input_coords: bool = False) -> torch.Tensor:
    """Inference :func:`voxel_to_point` with per-stride cached corner tables (one ``embedding_bag``).

    Args:
        x: sparse voxels at stride s; points: (P, 3) float, finest-voxel units; batch: (P,) int64.
        ctx: the forward's context (caches the tables per stride; ``x.coords`` must be the context's
            coordinates of that stride).
        on_coords: the points are exactly ``x``'s voxel coordinates, in row order (stride 1 of SPVCNN):
            each point reads its own voxel with weight ``1 / (1 + 1e-8)`` (1 in float32).
        on_input_coords: the points are the context's stride-1 coordinates in row order (``batch`` their
            batch ids), as SPVCNN's: the corners are read without bounds checks (same result).

    Returns:
        (P, C) point features, float32 or better.
    """
    dtype = torch.promote_types(at_least_float32(x.feats).dtype, points.dtype)
    if on_coords:
        one = torch.ones((), dtype=points.dtype)
        w = float(one / (one + 1e-8))
        return x.feats.to(dtype) if w == 1.0 else x.feats.to(dtype) * w
    index = ctx.coord_index(x)
    if not isinstance(index, VoxelGrid):
        return voxel_to_point(x, points, batch, index, ctx._point_maps.setdefault("v2p csr", {}))
    key = ("v2p", x.stride)
    if key not in ctx._point_maps:
        if on_input_coords:
            ctx._point_maps[key] = _input_point_corners(points, ctx, index)
        else:
            ctx._point_maps[key] = _grid_corners(x, points, batch, index)
    rows, w = ctx._point_maps[key]  # (P, 8) each: bags of 8 entries
    with _autocast_off(x.feats.device):
        starts = torch.arange(0, rows.numel(), rows.shape[1], device=rows.device)
        return _bag(rows.view(-1), x.feats.to(dtype), starts, weights=w.to(dtype).view(-1))


def point_to_voxel_fused(x: SparseVoxels, point_feats: torch.Tensor, points: torch.Tensor, batch: torch.Tensor,
                         ctx: "SparseContext", on_coords: bool = False, on_input_coords: bool = False) -> SparseVoxels:
    """Inference :func:`point_to_voxel`: one ``embedding_bag`` (mean) over per-stride cached bags.

    Args:
        x: sparse voxels at stride s (only coords and stride are used; the context's of that stride).
        point_feats: (P, C); points: (P, 3) finest-voxel units; batch: (P,) int64.
        ctx: the forward's context (caches the bags per stride).
        on_coords: the points are exactly ``x``'s voxel coordinates, in row order: the identity.
        on_input_coords: the points are the context's stride-1 coordinates in row order (``batch`` their
            batch ids) and ``x``'s lookup is a grid: each point's cell is read from it without a search.

    Returns:
        SparseVoxels with ``x``'s coordinates and the averaged features (zeros where no point falls).
    """
    if on_coords:
        return x.replace(point_feats)
    key = ("p2v", x.stride)
    if key not in ctx._point_maps:
        with torch.no_grad():
            index = ctx.coord_index(x)
            if on_input_coords and isinstance(index, VoxelGrid):
                rows = index.table.index_select(0, index.cells(ctx.coords))  # cell floor(c / s): in the box
            else:
                cell = (torch.floor(points / x.stride) * x.stride).to(torch.int64)
                rows = index.lookup(torch.cat([batch[:, None].to(torch.int64), cell], dim=1))
            valid = rows >= 0
            order = torch.argsort(torch.where(valid, rows, len(x.coords)), stable=True)[:int(valid.sum())]
            counts = torch.bincount(rows[valid], minlength=len(x.coords))
            ctx._point_maps[key] = (order, _exclusive_cumsum(counts))
    order, starts = ctx._point_maps[key]
    with _autocast_off(point_feats.device):
        return x.replace(_bag(order, point_feats, starts, mode=1))


def point_to_voxel(
    x: SparseVoxels, point_feats: torch.Tensor, points: torch.Tensor, batch: torch.Tensor,
    index: "VoxelGrid | CoordIndex | None" = None,
) -> SparseVoxels:
    """Average point features into the voxels of ``x`` (torchsparse ``point_to_voxel``).

    Point p goes to voxel ``floor(p / s) * s`` if that voxel exists in ``x``; voxels that receive
    no point get zeros.

    Args:
        x: sparse voxels at stride s (only coords and stride are used).
        point_feats: (P, C).
        points: (P, 3) finest-voxel units.
        batch: (P,) int64.
        index: optional prebuilt lookup of ``x.coords`` (:meth:`SparseContext.coord_index`).

    Returns:
        SparseVoxels with ``x``'s coordinates and the averaged features.
    """
    s = x.stride
    index = index or CoordIndex(x.coords)
    with torch.no_grad():
        cell = (torch.floor(points / s) * s).to(torch.int64)
        rows = index.lookup(torch.cat([batch[:, None], cell], dim=1))
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


# -- inference fast path: batch norm folded into the convolutions, fewer and larger operations ----------
# Rows x output columns above which a submanifold conv multiplies only the present pairs (one GEMM per
# offset into one buffer) instead of all K offsets of every input (one GEMM): the per-offset form's ~26
# calls cost about as much as this many wasted multiply-adds (timed on the stride-1 maps, bench/sparse.py)
_PAIRS_MIN_WASTED_MACS = 6_000_000
_PAIRS_MIN_OUT_CHANNELS = 16


def fusable(module: nn.Module, ctx: "SparseContext") -> bool:
    """Whether ``module`` runs the inference fast path: torch backend, eval mode, no autograd."""
    return ctx.backend == "torch" and not module.training and not torch.is_grad_enabled()


def fused_linear(linear: nn.Linear, feats: torch.Tensor, bn: nn.BatchNorm1d | None = None,
                 relu: bool = False, gemm: torch.dtype | None = None) -> torch.Tensor:
    """Inference ``relu?(bn(linear(feats)))`` as one GEMM with the batch norm folded in.

    Args:
        linear: (Cout, Cin) weight, optional bias (a :class:`PointwiseConv` or ``nn.Linear``).
        feats: (N, Cin).
        bn: eval-mode batch norm of the Cout outputs, or None.
        relu: apply ReLU.
        gemm: dtype of the GEMM's operands; None: :func:`_gemm_dtype` (bf16 under CPU bf16 autocast).

    Returns:
        (N, Cout) float32 (float64 for float64 inputs); the GEMM's operands are bf16 under CPU bf16 autocast.
    """
    dtype = torch.promote_types(at_least_float32(feats).dtype, at_least_float32(linear.weight).dtype)
    gemm = gemm or _gemm_dtype(dtype, feats.device)

    def build():
        scale, shift = bn_affine(bn, linear.weight.shape[0], dtype, feats.device)
        w = (linear.weight.to(dtype) * scale[:, None]).t().to(gemm)
        if linear.bias is not None:
            shift = shift + linear.bias.to(dtype) * scale
        return w, shift.to(gemm), shift

    tensors = (linear.weight,) + (() if linear.bias is None else (linear.bias,)) + bn_tensors(bn)
    w, shift_gemm, shift = derived(linear, ("linear", gemm, dtype), tensors, build)
    with _autocast_off(feats.device):
        if gemm == dtype:
            out = torch.addmm(shift, feats.to(gemm), w)
        else:
            out = (feats.to(gemm) @ w).to(dtype).add_(shift)
    return out.relu_() if relu else out


def fused_conv(conv: nn.Module, feats: torch.Tensor, kmap: KernelMap, kind: str, bn: nn.BatchNorm1d | None = None,
               relu: bool = False, gemm: torch.dtype | None = None) -> torch.Tensor:
    """Inference ``relu?(bn(conv(feats)))`` of a sparse convolution, batch norm folded into its kernel.

    Same result as :func:`sparse_conv` followed by the eval-mode batch norm (within float rounding) in
    fewer operations; the folded kernels are cached on ``conv`` (rebuilt when a weight changes). Forms:

    * ``"subm"``: narrow layers, ``Y = feats @ [W_0 .. W_K-1]`` and one ``embedding_bag`` summing each
      output's present rows of Y (:meth:`KernelMap.bag`); wider ones, one gather of the present pairs'
      inputs (all offsets but the centre), one GEMM per offset into one buffer, one ``embedding_bag``
      summing each output's pairs, plus the centre offset's GEMM (:meth:`KernelMap.offset_pairs`);
    * ``"down"``: im2col, one gather of each output's 8 inputs and one GEMM;
    * ``"up"`` (transposed ``down`` map): ``Y`` of the coarse rows and one gather per fine row; a fine row
      without a coarse parent gets the batch norm's shift (its convolution is 0).

    Args:
        conv: module holding the spconv-layout kernel ``weight`` (Cout, k, k, k, Cin).
        feats: (N_in, Cin) (the coarse rows for ``"up"``).
        kmap: the layer's kernel map.
        kind: ``"subm"``, ``"down"`` or ``"up"``.
        bn: eval-mode batch norm of the outputs, or None.
        relu: apply ReLU.
        gemm: dtype of the GEMMs' operands; None: :func:`_gemm_dtype` (bf16 under CPU bf16 autocast).

    Returns:
        (N_out, Cout) float32 (float64 for float64 inputs); GEMM operands bf16 under CPU bf16 autocast.
    """
    weight = conv.weight
    dtype = torch.promote_types(at_least_float32(feats).dtype, at_least_float32(weight).dtype)
    gemm = gemm or _gemm_dtype(dtype, feats.device)
    c_out, c_in, volume = weight.shape[0], weight.shape[-1], kmap.volume
    form = kind
    if kind == "subm":
        wasted = (len(kmap.out_coords) * volume - kmap.n_pairs) * c_in * c_out
        pairs = c_out >= _PAIRS_MIN_OUT_CHANNELS and wasted > _PAIRS_MIN_WASTED_MACS and kmap.identity is not None
        form = "pairs" if pairs else "subm"

    def build():
        scale, shift = bn_affine(bn, c_out, dtype, feats.device)
        w = weight.to(dtype).reshape(c_out, volume, c_in) * scale[:, None, None]  # (Cout, K, Cin)
        if form == "down":
            return w.permute(1, 2, 0).reshape(volume * c_in, c_out).to(gemm), shift  # row k * Cin + i
        if form == "pairs":
            return w.permute(1, 2, 0).to(gemm).unbind(0), shift  # K of (Cin, Cout)
        return w.permute(2, 1, 0).reshape(c_in, volume * c_out).to(gemm), shift  # column k * Cout + j

    w, shift = derived(conv, ("conv", form, gemm, dtype), (weight,) + bn_tensors(bn), build)
    with _autocast_off(feats.device):
        f = feats.to(gemm)
        if form == "subm":
            rows, starts = kmap.bag()
            y = (f @ w).view(-1, c_out).to(dtype)
            out = _bag(rows, y, starts).add_(shift)
        elif form == "pairs":
            in_rows, counts, order, starts = kmap.offset_pairs()
            g = f.index_select(0, in_rows)
            z = torch.empty(len(in_rows), c_out, dtype=gemm, device=f.device)
            begin = 0
            for k, n in enumerate(counts):
                if n:
                    torch.mm(g[begin:begin + n], w[k], out=z[begin:begin + n])
                    begin += n
            out = _bag(order, z.to(dtype), starts)
            out.add_((f @ w[kmap.identity]).to(dtype)).add_(shift)
        elif form == "down":
            out = (_pad_row(f).index_select(0, kmap.padded_table()).view(-1, volume * c_in) @ w).to(dtype)
            out.add_(shift)
        else:
            y = (f @ w).view(-1, c_out).to(dtype).add_(shift)
            out = torch.cat([y, shift[None]]).index_select(0, kmap.source_index())
    return out.relu_() if relu else out
