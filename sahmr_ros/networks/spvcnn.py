"""SPVCNN: the point-voxel sparse 3D U-Net of RCNet's contact network.

Channel plan (official ``cs``): stem 32; encoder 32, 64, 128, 256 at strides 2, 4, 8, 16; decoder
256, 128, 96, 96 back to stride 1 with skip concatenations; a point branch (one "point" per input
voxel) fused with the devoxelised features after the stem, after stage 4, after up 2 and after up 4.
Dropout 0.3 before up 1 and up 3 (training only). Output: one row per input voxel, in input order.

Submodule names follow the official release (``stem``, ``stage1``..``stage4``, ``up1``..``up4``,
``point_transforms``, ``classifier``, ``fc_in``) so the checkpoint import is a layout conversion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from sahmr_ros.networks.precision import full_precision

from sahmr_ros.networks.sparse import (
    DownConv3d,
    PointwiseConv,
    SparseContext,
    SparseVoxels,
    SubmanifoldConv3d,
    UpConv3d,
    _gemm_dtype,
    fusable,
    fused_linear,
    point_to_voxel,
    point_to_voxel_fused,
    voxel_to_point,
    voxel_to_point_fused,
)

__all__ = ["SPVCNNConfig", "SPVCNN"]


@dataclass(frozen=True)
class SPVCNNConfig:
    """Widths of the SPVCNN.

    Attributes:
        in_channels: per-voxel input features (35 = 3 offset + 32 image feature).
        out_channels: per-voxel outputs (12 = confidence + offset xyz + 8 contact logits).
        channels: the 9 widths ``cs`` (stem, 4 encoder stages, 4 decoder stages).
        dropout: dropout before up1 and up3 while training.
    """

    in_channels: int = 35
    out_channels: int = 12
    channels: tuple[int, ...] = (32, 32, 64, 128, 256, 256, 128, 96, 96)
    dropout: float = 0.3

    @classmethod
    def official(cls) -> "SPVCNNConfig":
        return cls()

    @classmethod
    def small(cls) -> "SPVCNNConfig":
        return cls(channels=(8, 8, 16, 16, 32, 32, 16, 16, 16))


class _Seq(nn.ModuleList):
    """A ModuleList called like nn.Sequential, passing the sparse context to sparse layers."""

    def forward(self, x: SparseVoxels, ctx: SparseContext) -> SparseVoxels:
        for m in self:
            if isinstance(m, (SubmanifoldConv3d, DownConv3d, UpConv3d, ResidualBlock, _ConvBlock)):
                x = m(x, ctx)
            elif isinstance(m, PointwiseConv):
                x = x.replace(m(x.feats))
            else:  # BatchNorm1d / ReLU act on features
                x = x.replace(m(x.feats))
        return x


class _ConvBlock(nn.Module):
    """conv -> BN -> ReLU, held in ``net`` (official ``BasicConvolutionBlock`` / ``...Deconvolution``)."""

    def __init__(self, conv: nn.Module, out_channels: int):
        super().__init__()
        self.net = _Seq([conv, nn.BatchNorm1d(out_channels), nn.ReLU(True)])

    def forward(self, x: SparseVoxels, ctx: SparseContext) -> SparseVoxels:
        if fusable(self, ctx):  # inference: batch norm folded into the convolution
            return self.net[0].fused(x, ctx, self.net[1], relu=True)
        return self.net(x, ctx)


class ResidualBlock(nn.Module):
    """Two 3x3x3 submanifold convs with BN, plus a 1x1 conv + BN shortcut when channels change."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.net = _Seq(
            [
                SubmanifoldConv3d(in_channels, out_channels),
                nn.BatchNorm1d(out_channels),
                nn.ReLU(True),
                SubmanifoldConv3d(out_channels, out_channels),
                nn.BatchNorm1d(out_channels),
            ]
        )
        if in_channels == out_channels:
            self.downsample = None
        else:
            self.downsample = _Seq([PointwiseConv(in_channels, out_channels), nn.BatchNorm1d(out_channels)])
        self.relu = nn.ReLU(True)

    def forward(self, x: SparseVoxels, ctx: SparseContext) -> SparseVoxels:
        if fusable(self, ctx):  # inference: batch norms folded into the convolutions
            conv1, bn1, _, conv2, bn2 = self.net
            y = conv2.fused(conv1.fused(x, ctx, bn1, relu=True), ctx, bn2)
            if self.downsample is None:
                shortcut = x.feats
            else:
                shortcut = fused_linear(self.downsample[0], x.feats, self.downsample[1], gemm=ctx.gemm)
            return y.replace(y.feats.add_(shortcut).relu_())
        shortcut = x.feats if self.downsample is None else self.downsample(x, ctx).feats
        return x.replace(self.relu(self.net(x, ctx).feats + shortcut))


def _encoder_stage(c_in: int, c_out: int) -> _Seq:
    return _Seq([_ConvBlock(DownConv3d(c_in, c_in), c_in), ResidualBlock(c_in, c_out), ResidualBlock(c_out, c_out)])


def _decoder_stage(c_in: int, c_out: int, c_skip: int) -> nn.ModuleList:
    return nn.ModuleList(
        [
            _ConvBlock(UpConv3d(c_in, c_out), c_out),
            _Seq([ResidualBlock(c_out + c_skip, c_out), ResidualBlock(c_out, c_out)]),
        ]
    )


def _point_transform(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, c_out), nn.BatchNorm1d(c_out), nn.ReLU(True))


class SPVCNN(nn.Module):
    """Point-voxel sparse CNN over the voxels of the region of interest.

    Args:
        config: widths.
        rounding: coordinate down-sampling rule, ``"trunc"`` (as the released weights were trained,
            torch 1.12 + torchsparse 1.4) or ``"floor"``; see :mod:`sahmr_ros.networks.sparse`.
        sparse_backend: ``"torch"``, ``"spconv"`` or None (per device, see
            :func:`sahmr_ros.networks.sparse.default_backend`); an attribute, may be changed later.
    """

    def __init__(self, config: SPVCNNConfig = SPVCNNConfig(), rounding: str = "floor",
                 sparse_backend: str | None = None):
        super().__init__()
        self.config = config
        self.rounding = rounding
        self.sparse_backend = sparse_backend
        cs = config.channels
        self.fc_in = nn.Linear(config.in_channels, config.in_channels)
        self.stem = _Seq(
            [
                SubmanifoldConv3d(config.in_channels, cs[0]),
                nn.BatchNorm1d(cs[0]),
                nn.ReLU(True),
                SubmanifoldConv3d(cs[0], cs[0]),
                nn.BatchNorm1d(cs[0]),
                nn.ReLU(True),
            ]
        )
        self.stage1 = _encoder_stage(cs[0], cs[1])
        self.stage2 = _encoder_stage(cs[1], cs[2])
        self.stage3 = _encoder_stage(cs[2], cs[3])
        self.stage4 = _encoder_stage(cs[3], cs[4])
        self.up1 = _decoder_stage(cs[4], cs[5], cs[3])
        self.up2 = _decoder_stage(cs[5], cs[6], cs[2])
        self.up3 = _decoder_stage(cs[6], cs[7], cs[1])
        self.up4 = _decoder_stage(cs[7], cs[8], cs[0])
        self.classifier = nn.Sequential(nn.Linear(cs[8], config.out_channels))
        self.point_transforms = nn.ModuleList(
            [_point_transform(cs[0], cs[4]), _point_transform(cs[4], cs[6]), _point_transform(cs[6], cs[8])]
        )
        self.dropout = nn.Dropout(config.dropout)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, coords: torch.Tensor, feats: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Per-voxel outputs.

        Args:
            coords: (N, 4) int32 ``(batch, x, y, z)`` unique voxel coordinates (5 cm units).
            feats: (N, in_channels) per-voxel input features.
            batch_size: B.

        Returns:
            (N, out_channels), row i for input voxel i.
        """
        ctx = SparseContext(coords, batch_size, rounding=self.rounding, backend=self.sparse_backend)
        # one point per input voxel, at its integer coordinate: float32 (bf16 is exact only to 256)
        points = coords[:, 1:].to(torch.promote_types(feats.dtype, torch.float32))
        batch = coords[:, 0].to(torch.int64)
        if fusable(self, ctx):
            return self._forward_fused(coords, feats, points, batch, ctx)
        interp: dict = {}  # interpolation matrices per stride: x0 and y4 share stride 1's coordinates

        x0 = SparseVoxels(coords, self.fc_in(feats), 1)
        x0 = self.stem(x0, ctx)
        z0 = voxel_to_point(x0, points, batch, ctx.coord_index(x0), interp)

        x1 = self.stage1(point_to_voxel(x0, z0, points, batch, ctx.coord_index(x0)), ctx)
        x2 = self.stage2(x1, ctx)
        x3 = self.stage3(x2, ctx)
        x4 = self.stage4(x3, ctx)
        z1 = voxel_to_point(x4, points, batch, ctx.coord_index(x4), interp) + self.point_transforms[0](z0)

        y1 = point_to_voxel(x4, z1, points, batch, ctx.coord_index(x4))
        y1 = y1.replace(self.dropout(y1.feats))
        y1 = self._up(self.up1, y1, x3, ctx)
        y2 = self._up(self.up2, y1, x2, ctx)
        z2 = voxel_to_point(y2, points, batch, ctx.coord_index(y2), interp) + self.point_transforms[1](z1)

        y3 = point_to_voxel(y2, z2, points, batch, ctx.coord_index(y2))
        y3 = y3.replace(self.dropout(y3.feats))
        y3 = self._up(self.up3, y3, x1, ctx)
        y4 = self._up(self.up4, y3, x0, ctx)
        z3 = voxel_to_point(y4, points, batch, ctx.coord_index(y4), interp) + self.point_transforms[2](z2)
        return self.classifier(z3)

    def _forward_fused(self, coords: torch.Tensor, feats: torch.Tensor, points: torch.Tensor, batch: torch.Tensor,
                       ctx: SparseContext) -> torch.Tensor:
        """:meth:`forward` for inference (eval mode, no autograd, torch backend); returns (N, out_channels).

        Batch norms are folded into the convolutions and linear layers, the point <-> voxel maps are
        cached embedding bags, dropout is the identity. The points are the input voxels' coordinates,
        so at stride 1 both maps are the identity.
        """
        fast = ctx.build_pyramid()  # every stride's maps at once; False: built lazily
        if fast:  # the point <-> voxel maps of x4 and y2 (strides 16 and 4) in one pass too
            ctx.build_point_maps(points, (ctx.max_stride // 4, ctx.max_stride))
        x0 = SparseVoxels(coords, self.fc_in(feats), 1)
        # the GEMM operand dtype is fixed here (bf16 under CPU bf16 autocast), then autocast is off throughout
        gemm = _gemm_dtype(torch.float32, feats.device)
        ctx.gemm = None if gemm == torch.float32 else gemm  # None: each layer's own dtype (float32 or float64)
        with full_precision(feats.device):
            z3 = self._fused_layers(x0, points, batch, ctx, fast)
        return self.classifier(z3)

    def _fused_layers(self, x0: SparseVoxels, points: torch.Tensor, batch: torch.Tensor, ctx: SparseContext,
                      fast: bool) -> torch.Tensor:
        """Run the layers of :meth:`_forward_fused` between ``fc_in`` and the classifier: (N, channels[8]) float32."""
        pt = self.point_transforms
        gemm = ctx.gemm
        x0 = self.stem[3].fused(self.stem[0].fused(x0, ctx, self.stem[1], relu=True), ctx, self.stem[4], relu=True)
        z0 = voxel_to_point_fused(x0, points, batch, ctx, on_coords=True)

        x1 = self.stage1(point_to_voxel_fused(x0, z0, points, batch, ctx, on_coords=True), ctx)
        x2 = self.stage2(x1, ctx)
        x3 = self.stage3(x2, ctx)
        x4 = self.stage4(x3, ctx)
        z1 = voxel_to_point_fused(x4, points, batch, ctx, on_input_coords=fast)
        z1.add_(fused_linear(pt[0][0], z0, pt[0][1], relu=True, gemm=gemm))

        y1 = self._up(self.up1, point_to_voxel_fused(x4, z1, points, batch, ctx, on_input_coords=fast), x3, ctx)
        y2 = self._up(self.up2, y1, x2, ctx)
        z2 = voxel_to_point_fused(y2, points, batch, ctx, on_input_coords=fast)
        z2.add_(fused_linear(pt[1][0], z1, pt[1][1], relu=True, gemm=gemm))

        y3 = self._up(self.up3, point_to_voxel_fused(y2, z2, points, batch, ctx, on_input_coords=fast), x1, ctx)
        y4 = self._up(self.up4, y3, x0, ctx)
        z3 = fused_linear(pt[2][0], z2, pt[2][1], relu=True, gemm=gemm)
        return voxel_to_point_fused(y4, points, batch, ctx, on_coords=True) + z3

    @staticmethod
    def _up(stage: nn.ModuleList, x: SparseVoxels, skip: SparseVoxels, ctx: SparseContext) -> SparseVoxels:
        y = stage[0](x, ctx)
        y = y.replace(torch.cat([y.feats, skip.feats], dim=1))
        return stage[1](y, ctx)
