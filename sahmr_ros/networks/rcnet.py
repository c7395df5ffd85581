"""RCNet: absolute root and scene contacts (SA-HMR stage A).

Two calls, because the scene query between them depends on the first one's answer:

1. :meth:`RCNet.estimate_root` - HRNet stride-4 trunk + 1x1 head (41 channels) on the crops:
   pelvis heatmap argmax -> pixel, normalised depth ``d`` -> ``Z = d f_x / w_bbox``: the coarse root
   in the camera frame, and the 32-d feature map.
2. :meth:`RCNet.estimate_contacts` - the caller has selected the scene points near the three ROI
   anchors (see :func:`select_roi`); they are voxelised at 5 cm, each voxel gets
   ``(middle anchor - voxel centre) ++ feature map sampled at the voxel centre's projection`` and
   the SPVCNN predicts a confidence, an offset to the root and 8 contact logits. The refined root
   is ``sum_i softmax_i(sigmoid(conf_i)) (centre_i + offset_i)``; contact points are the ROI points
   whose voxel's label is not 0.

All coordinates are in the camera optical frame, metres. Whatever precision the networks run in
(autocast), the geometry here is float32, as in the official code: the 1x1 head whose depth channel
becomes the root's Z, the roots, the scene points and their voxelisation (``floor(p / 0.05)`` in
float32, so that points on a voxel face land where the official puts them), voxel centres, offsets
and the refined root.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from sahmr_ros import constants as C
from sahmr_ros.geometry import crop_normalized_coords, project_points, roi_anchors, root_from_heatmaps, unique_rows
from sahmr_ros.networks.hrnet import HRNet, HRNetConfig
from sahmr_ros.networks.precision import at_least_float32, full_precision
from sahmr_ros.networks.spvcnn import SPVCNN, SPVCNNConfig

__all__ = [
    "RCNetConfig",
    "RootEstimate",
    "ContactEstimate",
    "RCNet",
    "select_roi",
    "voxelise_roi_points",
    "fixed_size_contacts_batch",
]


@dataclass(frozen=True)
class RCNetConfig:
    """RCNet architecture. ``rounding``: sparse down-sampling rule (see networks.sparse)."""

    hrnet: HRNetConfig
    spvcnn: SPVCNNConfig
    rounding: str = "floor"
    voxel_size: float = C.CONTACT_VOXEL_M


@dataclass
class RootEstimate:
    """Output of :meth:`RCNet.estimate_root` for B crops.

    Attributes:
        root_camera: (B, 3) coarse root, camera frame.
        feature_map: (B, 32, 56, 56) image features for the voxels.
        pelvis_heatmap: (B, 56, 56).
        depth_map: (B, 56, 56) normalised depth ``d`` (``Z = d f_x / w_bbox``).
        part_heatmaps: (B, 7, 56, 56) auxiliary 2D part-contact heatmaps (training signal).
        part_heatmaps_flipped: (B, 7, 56, 56) the part heatmaps of the horizontally flipped crops, or
            None (only with ``estimate_root(..., with_flipped=True)``, training).
    """

    root_camera: torch.Tensor
    feature_map: torch.Tensor
    pelvis_heatmap: torch.Tensor
    depth_map: torch.Tensor
    part_heatmaps: torch.Tensor
    part_heatmaps_flipped: torch.Tensor | None = None


@dataclass
class ContactEstimate:
    """Output of :meth:`RCNet.estimate_contacts` for B persons.

    Attributes:
        root_camera: (B, 3) refined root (the coarse root where a person has no ROI voxel).
        num_voxels: (B,) ROI voxels per person (0: root from the image alone, no contacts).
        voxel_batch: (V,) person of each voxel; voxel_centers (V, 3); voxel_outputs (V, 12).
        voxel_labels: (V,) argmax contact label of each voxel.
        contact_points: B tensors (k_b, 3): ROI scene points whose voxel label != 0.
        contact_labels: B tensors (k_b,) int64 in 1..7.
    """

    root_camera: torch.Tensor
    num_voxels: torch.Tensor
    voxel_batch: torch.Tensor
    voxel_centers: torch.Tensor
    voxel_outputs: torch.Tensor
    voxel_labels: torch.Tensor
    contact_points: list[torch.Tensor]
    contact_labels: list[torch.Tensor]


class RootNet(nn.Module):
    """HRNet stride-4 trunk + ``out_conv`` 1x1 to the 41 RCNet channels."""

    def __init__(self, config: HRNetConfig):
        super().__init__()
        self.hrnet = HRNet(config, head="stride4")
        self.out_conv = nn.Conv2d(self.hrnet.out_channels, C.ROOT_NET_CHANNELS, 1)
        with torch.no_grad():  # start from the mean depth target (checkpoints overwrite this)
            self.out_conv.weight[C.ROOT_NET_DEPTH_CHANNEL].zero_()
            self.out_conv.bias[C.ROOT_NET_DEPTH_CHANNEL] = C.ROOT_DEPTH_PRIOR

    def forward(self, images_normalized: torch.Tensor) -> torch.Tensor:
        features = self.hrnet(images_normalized)
        with full_precision(features.device):  # channel 1 becomes the absolute depth: no half precision
            return self.out_conv(at_least_float32(features))


class RCNet(nn.Module):
    """Root and contact network (official ``RCNet``)."""

    def __init__(self, config: RCNetConfig):
        super().__init__()
        self.config = config
        self.root_net = RootNet(config.hrnet)
        self.contact_net = SPVCNN(config.spvcnn, rounding=config.rounding)
        self.register_buffer("img_mean", torch.tensor(C.IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("img_std", torch.tensor(C.IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def estimate_root(self, crops: torch.Tensor, bbx_lurb: torch.Tensor, K: torch.Tensor,
                      with_flipped: bool = False) -> RootEstimate:
        """Coarse root and image features.

        Args:
            crops: (B, 3, 224, 224) RGB in [0, 1].
            bbx_lurb: (B, 4) square crop boxes, full-image pixels.
            K: (B, 3, 3) full-image intrinsics.
            with_flipped: training only (official ``train_extra_flip``): the trunk also runs on the
                horizontally flipped crops, in the same batch (2B), and their part heatmaps are returned
                as ``part_heatmaps_flipped``; everything else comes from the unflipped half.
        """
        images = (crops - self.img_mean) / self.img_std
        if with_flipped:
            both = self.root_net(torch.cat([images, images.flip(-1)]))  # (2B, 41, 56, 56)
            out, flipped = both[: len(crops)], both[len(crops):, C.ROOT_NET_AUX_CHANNELS]
        else:
            out, flipped = self.root_net(images), None  # (B, 41, 56, 56)
        pelvis = out[:, C.ROOT_NET_PELVIS_CHANNEL]
        depth = out[:, C.ROOT_NET_DEPTH_CHANNEL]
        with torch.no_grad():
            root = root_from_heatmaps(pelvis, depth, bbx_lurb.to(torch.float64), K.to(torch.float64))
        return RootEstimate(
            root_camera=root.to(torch.promote_types(out.dtype, torch.float32)),
            feature_map=out[:, C.ROOT_NET_FEATURE_CHANNELS],
            pelvis_heatmap=pelvis,
            depth_map=depth,
            part_heatmaps=out[:, C.ROOT_NET_AUX_CHANNELS],
            part_heatmaps_flipped=flipped,
        )

    def estimate_contacts(
        self,
        root: RootEstimate,
        roi_points: list[torch.Tensor],
        bbx_lurb: torch.Tensor,
        K: torch.Tensor,
        anchor_root: torch.Tensor | None = None,
    ) -> ContactEstimate:
        """Refined root and contact points from the scene points of each person's ROI.

        Args:
            root: :meth:`estimate_root` output for the B persons.
            roi_points: B tensors (N_b, 3), camera frame; N_b may be 0.
            bbx_lurb: (B, 4); K: (B, 3, 3).
            anchor_root: (B, 3) root used as ROI anchor and offset origin (default: the coarse root;
                training replaces bad predictions by noisy ground truth here).
        """
        B = len(roi_points)
        device = root.feature_map.device
        with full_precision(device):  # geometry in float32, the official's dtype
            anchor = (root.root_camera if anchor_root is None else anchor_root).to(device, torch.float32)  # (B, 3)
            points, point_batch, coords, point_voxel = voxelise_roi_points(roi_points, self.config.voxel_size, device)
            voxel_batch = coords[:, 0]
            centers = coords[:, 1:].to(torch.float32) * self.config.voxel_size + self.config.voxel_size / 2  # (V, 3)
            num_voxels = torch.bincount(voxel_batch, minlength=B)
            if len(coords) == 0:
                empty = [points.new_zeros(0, 3) for _ in range(B)]
                return ContactEstimate(
                    anchor.clone(), num_voxels, voxel_batch, centers, points.new_zeros(0, C.CONTACT_NET_OUT_DIM),
                    voxel_batch.clone(), empty, [torch.zeros(0, dtype=torch.int64, device=device)] * B
                )
            sampled = self._sample_features(root, centers, voxel_batch, bbx_lurb, K)
            feats = torch.cat([anchor[voxel_batch] - centers, sampled.to(centers.dtype)], dim=1)

        out = self.contact_net(coords.to(torch.int32), feats, B)  # (V, 12), in the caller's precision

        with full_precision(device):
            out = at_least_float32(out)
            conf, offset, logits = out[:, 0], out[:, 1:4], out[:, 4:]
            labels = logits.argmax(dim=1)
            refined = _refined_roots(anchor, conf, centers + offset, voxel_batch)

        # contact points: ROI points whose voxel's label is not 0, split by person (point_batch is sorted)
        point_labels = labels[point_voxel]
        is_contact = point_labels != 0
        per_person = torch.bincount(point_batch[is_contact], minlength=B).tolist()
        contact_points = list(points[is_contact].split(per_person))
        contact_labels = list(point_labels[is_contact].split(per_person))
        return ContactEstimate(refined, num_voxels, voxel_batch, centers, out, labels, contact_points, contact_labels)

    @staticmethod
    def _sample_features(root, centers, voxel_batch, bbx_lurb, K) -> torch.Tensor:
        """Bilinear feature-map sample at each voxel centre's projection (zero outside).

        One ``grid_sample`` over the batch: person b's voxels become the first ``V_b`` rows of the
        (B, max_b V_b) sampling grid of feature map b (the other rows sample outside, are dropped).

        Args:
            root: :meth:`estimate_root` output (``feature_map`` (B, C, 56, 56) of the crops).
            centers: (V, 3) voxel centres, camera optical frame, metres.
            voxel_batch: (V,) int64 person of each voxel, non-decreasing (the order of
                :func:`voxelise_roi_points`).
            bbx_lurb: (B, 4) crop boxes, full-image pixels; K: (B, 3, 3).

        Returns:
            (V, C) features, float32 or better.
        """
        fmap = at_least_float32(root.feature_map)
        B = fmap.shape[0]
        uv = project_points(centers[:, None, :].to(K.dtype), K[voxel_batch])  # (V, 1, 2) full-image pixels
        uv01 = crop_normalized_coords(uv, bbx_lurb[voxel_batch].to(uv.dtype))  # (V, 1, 2) crop [0, 1]
        grid = (uv01[:, 0] * 2 - 1).to(fmap.dtype)  # (V, 2) grid_sample coordinates
        row = _rank_in_segment(voxel_batch, B)  # (V,) position among the voxels of its person
        width = int(row.max()) + 1 if len(row) else 0
        padded = grid.new_full((B, width, 2), -2.0)  # outside [-1, 1]: samples zeros, dropped anyway
        padded = padded.index_put((voxel_batch, row), grid)
        s = F.grid_sample(fmap, padded[:, :, None, :], align_corners=True, padding_mode="zeros")  # (B, C, W, 1)
        return s[voxel_batch, :, row, 0]  # (V, C)


def _rank_in_segment(segment: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Position of each element within its segment, for a non-decreasing (N,) int64 ``segment``.

    E.g. ``[0, 0, 2, 2, 2] -> [0, 1, 0, 1, 2]``.
    """
    counts = torch.bincount(segment, minlength=num_segments)
    starts = torch.cumsum(counts, 0) - counts  # (num_segments,) first element of each segment
    return torch.arange(len(segment), device=segment.device) - starts[segment]


def _refined_roots(
    anchor: torch.Tensor, conf: torch.Tensor, votes: torch.Tensor, voxel_batch: torch.Tensor
) -> torch.Tensor:
    """Refined root of every person: ``sum_i softmax_i(sigmoid(conf_i)) votes_i`` over its voxels.

    A segment softmax (one segment per person) with ``index_add``: no loop over persons. The
    weights and sums are accumulated in float64 and the result rounded to ``anchor``'s dtype (a
    float32 sequential sum over thousands of voxels would lose ~1e-5 m). Persons without voxels, or
    whose result is not finite, keep their anchor. Differentiable in ``conf`` and ``votes`` (and
    ``anchor`` where it is kept); the segment maximum only stabilises the exponent and is detached
    (softmax does not depend on it).

    Args:
        anchor: (B, 3) anchor roots, camera optical frame, metres.
        conf: (V,) confidence logits; votes: (V, 3) voxel centre + predicted offset, same frame.
        voxel_batch: (V,) int64 person of each voxel.

    Returns:
        (B, 3) refined roots in ``anchor``'s dtype, camera optical frame, metres.
    """
    B = anchor.shape[0]
    score = torch.sigmoid(conf.double())  # (V,)
    peak = score.new_full((B,), float("-inf")).scatter_reduce(0, voxel_batch, score.detach(), "amax")
    e = torch.exp(score - peak[voxel_batch])  # (V,)
    total = e.new_zeros(B).index_add(0, voxel_batch, e)  # (B,)
    w = e / total[voxel_batch]  # (V,) softmax within each person
    root = w.new_zeros(B, 3).index_add(0, voxel_batch, w[:, None] * votes.double())  # (B, 3)
    keep = (torch.bincount(voxel_batch, minlength=B) > 0) & torch.isfinite(root).all(dim=1)
    return torch.where(keep[:, None], root.to(anchor.dtype), anchor)


def voxelise_roi_points(
    roi_points: list[torch.Tensor], voxel_size: float = C.CONTACT_VOXEL_M, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Voxelise every person's ROI points at once: rows ``(b, floor(p / voxel_size))``.

    The points are cast to float32 and divided in float32, as in the official code, so that a point
    on a voxel face gets the official's voxel (a float64 division puts some into the neighbour). The
    divisor is a Python number, as there: on CUDA, torch then multiplies by its float32 reciprocal,
    as it did for the official code.

    Args:
        roi_points: B tensors (N_b, 3), camera frame, metres; N_b may be 0.
        voxel_size: metres.
        device: where the results live.

    Returns:
        points (P, 3) float32, point_batch (P,) int64, coords (V, 4) int64 unique ``(b, x, y, z)``
        rows (sorted), point_voxel (P,) int64 row in ``coords`` of each point's voxel.
    """
    head = [torch.zeros(0, 3, device=device)]  # makes B = 0 work
    points = torch.cat(head + [p.to(device=device, dtype=torch.float32).reshape(-1, 3) for p in roi_points])  # (P, 3)
    counts = torch.tensor([len(p) for p in roi_points], dtype=torch.int64, device=device)
    point_batch = torch.repeat_interleave(torch.arange(len(roi_points), device=device), counts)  # (P,) sorted
    with full_precision(points.device):
        cells = torch.floor(points / voxel_size).to(torch.int64)
    if len(cells) == 0:
        return points, point_batch, cells.new_zeros(0, 4), point_batch.clone()
    coords, point_voxel = unique_rows(torch.cat([point_batch[:, None], cells], 1))
    return points, point_batch, coords, point_voxel


def select_roi(points_camera: torch.Tensor, root_camera: torch.Tensor, radius: float = C.ROI_RADIUS_M) -> torch.Tensor:
    """Mask of the points within ``radius`` of any of the three ROI anchors of a root.

    Args:
        points_camera: (N, 3); root_camera: (3,).

    Returns:
        (N,) bool.
    """
    anchors = roi_anchors(root_camera[None])[0]  # (3, 3)
    with full_precision(points_camera.device):
        points = at_least_float32(points_camera)
        return (torch.cdist(points, anchors.to(points.dtype)) <= radius).any(dim=1)


def fixed_size_contacts_batch(
    points: list[torch.Tensor],
    labels: list[torch.Tensor],
    n: int = C.NUM_CONTACT_POINTS,
    origin: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring each of B persons' contact points to exactly ``n``, deterministically, optionally relative to an origin.

    Person b with ``k_b > n`` points: ``n`` evenly spaced picks in the given order (the official code
    draws random indices with replacement, which makes inference non-deterministic); with fewer: its
    ``k_b`` points, then zero points with label 0 (masked out by the mesh network). One gather over
    all persons' points instead of a loop.

    Args:
        points: B tensors (k_b, 3), metres (e.g. camera optical frame); k_b may be 0.
        labels: B tensors (k_b,) int64.
        n: rows per person.
        origin: (B, 3) subtracted from each person's points (e.g. its root), or None.

    Returns:
        (B, n, 3) points (dtype of ``points[b] - origin[b]``) and (B, n) int64 labels.
    """
    B = len(points)
    device = origin.device if origin is not None else points[0].device if B else torch.device("cpu")
    counts = torch.tensor([len(p) for p in points], dtype=torch.int64, device=device)  # (B,)
    # all points, then one zero row (label 0) that the padding picks: no special case for k_b = 0
    dtype = points[0].dtype if B else torch.float32
    flat = torch.cat([p.reshape(-1, 3) for p in points] + [torch.zeros(1, 3, dtype=dtype, device=device)])  # (P + 1, 3)
    flat_labels = torch.cat(list(labels) + [torch.zeros(1, dtype=torch.int64, device=device)])  # (P + 1,)
    i = torch.arange(n, device=device)[None, :]  # (1, n)
    k = counts[:, None]  # (B, 1)
    pick = torch.where(k > n, torch.div(i * k, n, rounding_mode="floor"), i)  # (B, n) row within the person
    valid = i < k  # (B, n) False on the padding
    idx = torch.clamp(torch.cumsum(counts, 0)[:, None] - k + pick, max=len(flat) - 1)  # (B, n) row in flat
    picked = flat[idx]  # (B, n, 3)
    if origin is not None:
        picked = picked - origin[:, None, :]
    zero = torch.zeros((), dtype=picked.dtype, device=device)
    return torch.where(valid[..., None], picked, zero), torch.where(valid, flat_labels[idx], 0)
