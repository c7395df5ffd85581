"""The loss terms of SA-HMR (SPEC section 6), as the official ``lib/train/trainers/pose/loss.py``.

Every term is a pure function returning one value per person, shape (B,); the total loss of a step is
the mean over the persons of ``sum_k weight_k * term_k`` (official ``compute_loss`` then
``batch["loss"].mean()``). Reductions inside a term are the official ones:

=====================  ==================  ========================================================
term (weight)          official name       per person
=====================  ==================  ========================================================
pelvis_heatmap (1)     pelvis_hm           sum over the 56 x 56 cells of the squared error
pelvis_depth (10)      pelvis_depth        sum over the 3 x 3 window at the target cell of kernel * |d - d_hat|
voxel_contact (1)      pcSeg_voxel         mean over the ROI voxels of the 8-class cross-entropy
voxel_offset (1)       vox_xyz_offset      mean over the ROI voxels of the L1 (sum over xyz) offset error
refined_root (1)       pelvis_xyz_refined  L1 (sum over xyz) of the refined pelvis
part_heatmaps (1)      bi4s_seg_hm         sum over cells and the 7 channels of the squared error
part_heatmaps_flip (1) bi4s_seg_hm_flip    the same on the flipped crop against the mirrored target
vertices (1)           vertex              mean over 6890 vertices of the L1 (sum over xyz), root-relative
joints (1)             joint               mean over the 14 joints of the L1, root-relative
contact_points (1)     corr_points         mean over all 500 rows of mask * L1 (padding counts in the mean)
vertices_camera (1)    vertex_c            mean over 6890 vertices of the L1, camera frame
=====================  ==================  ========================================================

A person without any ROI voxel contributes 0 to the voxel terms. Units: metres (L1 terms), normalised
depth units (``d = Z w_bbox / f_x``), heatmap values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sahmr_ros.errors import InputError
from sahmr_ros.training.targets import HEATMAP_KERNEL

__all__ = [
    "MESH_LOSS_WEIGHTS",
    "RCNET_LOSS_WEIGHTS",
    "contact_point_loss",
    "mean_l1_loss",
    "part_heatmap_loss",
    "pelvis_depth_loss",
    "pelvis_heatmap_loss",
    "refined_root_loss",
    "voxel_contact_loss",
    "voxel_offset_loss",
]

# Official configs/pose/rich/rcnet.yaml and sahmr.yaml ``loss_weights``.
RCNET_LOSS_WEIGHTS = {
    "pelvis_heatmap": 1.0,
    "pelvis_depth": 10.0,
    "voxel_contact": 1.0,
    "voxel_offset": 1.0,
    "refined_root": 1.0,
    "part_heatmaps": 1.0,
    "part_heatmaps_flip": 1.0,
}
MESH_LOSS_WEIGHTS = {
    "vertices": 1.0,
    "joints": 1.0,
    "contact_points": 1.0,
    "vertices_camera": 1.0,
}


def _same_shape(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if pred.shape != target.shape:
        raise InputError(f"{name}: prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def pelvis_heatmap_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_R2D: sum of squared errors over the heatmap (official ``pelvis_hm_loss``).

    Args:
        pred: (B, H, W) predicted pelvis heatmap; target: (B, H, W) (:func:`~.targets.pelvis_heatmap_target`).

    Returns:
        (B,).
    """
    _same_shape(pred, target, "pelvis heatmap")
    return (target - pred).pow(2).sum(dim=(-1, -2))


def pelvis_depth_loss(pred_depth_map: torch.Tensor, target_depth: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """L_RZ: kernel-weighted L1 of the normalised depth over the 3 x 3 window (official ``pelvis_depth_loss``).

    ``sum_{i,j} k_ij |d - d_hat[y + i, x + j]|``, i, j in -1..1, at the target cell (x, y).

    Args:
        pred_depth_map: (B, H, W) predicted normalised depth ``d_hat``.
        target_depth: (B,) ``d = Z w_bbox / f_x`` (:func:`~.targets.pelvis_depth_target`).
        cell: (B, 2) int64 ``(x, y)`` in 1..W - 2 (:func:`~.targets.heatmap_cell`).

    Returns:
        (B,).
    """
    B, H, W = pred_depth_map.shape
    if target_depth.shape != (B,) or cell.shape != (B, 2):
        raise InputError(f"pelvis depth: expected target (B,) and cell (B, 2) for B = {B}, got "
                         f"{tuple(target_depth.shape)} and {tuple(cell.shape)}")
    if B and (cell.min() < 1 or cell[:, 0].max() > W - 2 or cell[:, 1].max() > H - 2):
        raise InputError(f"pelvis depth: cells must lie in 1..{W - 2}, got {cell.tolist()}")
    offsets = torch.arange(-1, 2, device=cell.device)
    rows = (cell[:, 1, None] + offsets)[:, :, None].expand(B, 3, 3)  # (B, 3, 3)
    cols = (cell[:, 0, None] + offsets)[:, None, :].expand(B, 3, 3)
    window = pred_depth_map[torch.arange(B, device=cell.device)[:, None, None], rows, cols]  # (B, 3, 3)
    kernel = torch.tensor(HEATMAP_KERNEL, dtype=window.dtype, device=window.device)
    return ((target_depth.to(window.dtype)[:, None, None] - window).abs() * kernel).sum(dim=(-1, -2))


def part_heatmap_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Auxiliary part heatmaps: squared error summed over cells and channels (``bi4s_seg_hm_loss``).

    Also the flipped term, with the flipped crop's prediction and
    :func:`~.targets.flip_part_heatmaps` of the target.

    Args:
        pred, target: (B, 7, H, W).

    Returns:
        (B,).
    """
    _same_shape(pred, target, "part heatmaps")
    return (target - pred).pow(2).sum(dim=(-1, -2, -3))


def _per_person_mean(values: torch.Tensor, voxel_batch: torch.Tensor, num_persons: int) -> torch.Tensor:
    """Mean of (V,) values per person (0 for a person without voxels). (B,)."""
    total = values.new_zeros(num_persons).index_add(0, voxel_batch, values)
    count = torch.bincount(voxel_batch, minlength=num_persons).to(values.dtype)
    return total / count.clamp_min(1)


def voxel_offset_loss(pred_offset: torch.Tensor, target_offset: torch.Tensor, voxel_batch: torch.Tensor,
                      num_persons: int) -> torch.Tensor:
    """L_ROV: per-voxel offset L1 (sum over xyz), averaged over each person's voxels (``vox_xyz_offset_loss``).

    Args:
        pred_offset: (V, 3) predicted offsets, metres; target_offset: (V, 3) ground-truth pelvis minus
            voxel centre (:func:`~.targets.voxel_offset_target`), for every ROI voxel.
        voxel_batch: (V,) int64 person of each voxel; num_persons: B.

    Returns:
        (B,) metres; 0 for a person without voxels.
    """
    _same_shape(pred_offset, target_offset, "voxel offsets")
    return _per_person_mean((pred_offset - target_offset).abs().sum(dim=-1), voxel_batch, num_persons)


def refined_root_loss(pred_root: torch.Tensor, target_root: torch.Tensor) -> torch.Tensor:
    """L_R3D: L1 (sum over xyz) of the refined pelvis (``pelvis_xyz_refined_loss``).

    Args:
        pred_root, target_root: (B, 3) camera frame, metres.

    Returns:
        (B,) metres.
    """
    _same_shape(pred_root, target_root, "refined root")
    return (pred_root - target_root).abs().sum(dim=-1)


def voxel_contact_loss(logits: torch.Tensor, labels: torch.Tensor, voxel_batch: torch.Tensor,
                       num_persons: int) -> torch.Tensor:
    """L_C: 8-class cross-entropy, averaged over each person's ROI voxels (``pcSeg_voxel_loss``).

    Args:
        logits: (V, 8) contact logits; labels: (V,) int64 0..7 (:func:`~.targets.voxel_contact_labels`).
        voxel_batch: (V,) int64 person of each voxel; num_persons: B.

    Returns:
        (B,); 0 for a person without voxels.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise InputError(f"voxel contact: expected logits (V, C) and labels (V,), got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    return _per_person_mean(F.cross_entropy(logits, labels, reduction="none"), voxel_batch, num_persons)


def mean_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 (sum over xyz) averaged over the points: L_V, L_J and L_GV.

    Official ``vertex_loss``, ``joint_loss`` and ``vertex_c_loss``.

    Args:
        pred, target: (B, N, 3) metres (root-relative for L_V / L_J, camera frame for L_GV).

    Returns:
        (B,) metres.
    """
    _same_shape(pred, target, "points")
    return (pred - target).abs().sum(dim=-1).mean(dim=-1)


def contact_point_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_CP: masked L1 reconstruction of the contact points (``corr_points_loss``).

    ``mean_s(mask_s * |p_s - p_hat_s|_1)`` over all S rows: padded rows count in the mean, as in the
    official code.

    Args:
        pred: (B, S, 3) reconstructed contact points (the contact tokens' 3-d outputs), root-relative.
        target: (B, S, 3) the contact points fed to the network, root-relative.
        mask: (B, S) bool, real (not padded) rows.

    Returns:
        (B,) metres.
    """
    _same_shape(pred, target, "contact points")
    if mask.shape != pred.shape[:2]:
        raise InputError(f"contact points: mask {tuple(mask.shape)} does not match {tuple(pred.shape[:2])}")
    return ((pred - target).abs().sum(dim=-1) * mask.to(pred.dtype)).mean(dim=-1)
