"""Training targets of SA-HMR, as the official ``lib/train/trainers/pose/supervision.py`` defines them.

Image side (computed per person when the batch is made, from the crop box actually used):

* pelvis heatmap: the ground-truth pelvis projected into the crop box, ``round(uv01 * 55)`` on the
  56 x 56 grid, clamped to 1..54, and the 3 x 3 kernel :data:`HEATMAP_KERNEL` written around that cell
  (official ``spv_pelvis_position``);
* normalised depth ``d = Z * w_bbox / f_x`` (the inverse of the pipeline's ``Z = d f_x / w_bbox``);
* seven part heatmaps (auxiliary): every ground-truth contact scene point projected to its rounded cell
  in its part's channel, the channels blurred with the same kernel and clamped to 1 (official
  ``spv_bi4s_seg``); their left/right mirror for the flipped crop (:func:`flip_part_heatmaps`).

Scene side (computed in the training step, because the ROI voxels depend on the predicted root):

* voxel contact labels: a voxel *centre* closer than 7 cm (strictly) to a ground-truth part vertex takes
  the part of its nearest part vertex, else 0 (official ``spv_pcSeg``: voxel centres against the
  vertices, not the scene points' labels);
* voxel offsets: ground-truth pelvis minus voxel centre, for every ROI voxel (``spv_pelvis_refine``).

Frames: camera optical (x right, y down, z forward), metres; pixels in the full image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.geometry import crop_normalized_coords, project_points

__all__ = [
    "CONTACT_GT_RADIUS_M",
    "HEATMAP_KERNEL",
    "flip_part_heatmaps",
    "heatmap_cell",
    "part_heatmap_target",
    "pelvis_depth_target",
    "pelvis_heatmap_target",
    "voxel_contact_labels",
    "voxel_offset_target",
]

# The official 3x3 "Gaussian-like" kernel (gkernel_3x3) of the pelvis heatmap, the depth window weights
# and the part-heatmap blur.
HEATMAP_KERNEL = ((0.25, 0.5, 0.25), (0.5, 1.0, 0.5), (0.25, 0.5, 0.25))
CONTACT_GT_RADIUS_M = 0.07  # official contact_thr_dist
NUM_PARTS = C.NUM_CONTACT_CLASSES - 1  # the 7 parts (label 0, "none", has no channel)


def _kernel(device=None, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(HEATMAP_KERNEL, device=device, dtype=dtype)


def _check(x: torch.Tensor, name: str, shape: tuple) -> None:
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{name}: expected shape {want}, got {tuple(x.shape)}")


def heatmap_cell(root_camera: torch.Tensor, K: torch.Tensor, bbx_lurb: torch.Tensor,
                 size: int = C.HEATMAP_SIZE) -> torch.Tensor:
    """Cell of the pelvis on the heatmap grid, as the official target places it.

    ``uv01 = (project(root) - (l, u)) / (w, h)`` of the crop box; cell = ``round(uv01 * (size - 1))``
    (half to even, as torch), clamped to ``1..size - 2`` so that the 3 x 3 window fits.

    Args:
        root_camera: (B, 3) pelvis, camera frame, metres (z > 0).
        K: (B, 3, 3) full-image intrinsics.
        bbx_lurb: (B, 4) crop boxes, full-image pixels.
        size: heatmap side (56).

    Returns:
        (B, 2) int64 ``(x, y)`` cells.
    """
    _check(root_camera, "root_camera", (None, 3))
    dtype = torch.float64 if torch.float64 in (root_camera.dtype, K.dtype, bbx_lurb.dtype) else torch.float32
    uv = project_points(root_camera[:, None].to(dtype), K.to(dtype))  # (B, 1, 2)
    uv01 = crop_normalized_coords(uv, bbx_lurb.to(dtype))[:, 0]  # (B, 2)
    return torch.round(uv01 * (size - 1)).clamp(1, size - 2).to(torch.int64)


def pelvis_heatmap_target(cell: torch.Tensor, size: int = C.HEATMAP_SIZE) -> torch.Tensor:
    """Pelvis heatmap target: zeros with :data:`HEATMAP_KERNEL` centred on ``cell``.

    Args:
        cell: (B, 2) int64 ``(x, y)`` from :func:`heatmap_cell` (1..size - 2).

    Returns:
        (B, size, size) float32, rows = y.
    """
    _check(cell, "cell", (None, 2))
    B = cell.shape[0]
    out = torch.zeros(B, size, size, dtype=torch.float32, device=cell.device)
    kernel = _kernel(cell.device)
    for b in range(B):
        x, y = int(cell[b, 0]), int(cell[b, 1])
        out[b, y - 1:y + 2, x - 1:x + 2] = kernel
    return out


def pelvis_depth_target(root_camera: torch.Tensor, K: torch.Tensor, bbx_lurb: torch.Tensor) -> torch.Tensor:
    """Normalised depth target ``d = Z * w_bbox / f_x`` (official ``gt_bi_pelvis_zw1f``).

    The pipeline inverts it: ``Z = d * f_x / w_bbox`` (:func:`sahmr_ros.geometry.root_from_heatmaps`).

    Args:
        root_camera: (B, 3) pelvis, camera frame, metres; K: (B, 3, 3); bbx_lurb: (B, 4) pixels.

    Returns:
        (B,) in the dtype of ``root_camera`` (metres x pixels / pixels).
    """
    _check(root_camera, "root_camera", (None, 3))
    w = (bbx_lurb[:, 2] - bbx_lurb[:, 0]).to(root_camera.dtype)
    return root_camera[:, 2] * w / K[:, 0, 0].to(root_camera.dtype)


def part_heatmap_target(points_camera: torch.Tensor, labels: torch.Tensor, K: torch.Tensor,
                        bbx_lurb: torch.Tensor, size: int = C.HEATMAP_SIZE) -> torch.Tensor:
    """Auxiliary part heatmaps of one person from its ground-truth contact scene points.

    Each point with a label in 1..7 sets cell ``round(uv01 * (size - 1))`` of channel ``label - 1`` to 1
    (cells outside the grid dropped); each channel is then convolved with :data:`HEATMAP_KERNEL` (zero
    padding) and clamped to at most 1 (official ``spv_bi4s_seg``).

    Args:
        points_camera: (N, 3) scene points in the person's crop frustum, camera frame, metres (z > 0).
        labels: (N,) int64 their ground-truth labels 0..7 (0: no contact, ignored).
        K: (3, 3); bbx_lurb: (4,).

    Returns:
        (7, size, size) float32 in [0, 1].
    """
    _check(points_camera, "points_camera", (None, 3))
    _check(labels, "labels", (len(points_camera),))
    device = points_camera.device
    out = torch.zeros(NUM_PARTS, size, size, dtype=torch.float32, device=device)
    hit = labels != 0
    if hit.any():
        dtype = torch.float64 if torch.float64 in (points_camera.dtype, K.dtype, bbx_lurb.dtype) else torch.float32
        uv = project_points(points_camera[hit][None].to(dtype), K[None].to(dtype))  # (1, n, 2)
        xy = torch.round(crop_normalized_coords(uv, bbx_lurb[None].to(dtype))[0] * (size - 1)).to(torch.int64)
        inside = ((xy >= 0) & (xy < size)).all(dim=1)
        part = labels[hit][inside] - 1
        xy = xy[inside]
        out[part, xy[:, 1], xy[:, 0]] = 1.0
    weight = _kernel(device).reshape(1, 1, 3, 3).expand(NUM_PARTS, 1, 3, 3)
    return F.conv2d(out[None], weight, padding=1, groups=NUM_PARTS)[0].clamp_max(1.0)


def flip_part_heatmaps(heatmaps: torch.Tensor) -> torch.Tensor:
    """Mirror part heatmaps left-right and swap the left / right parts (``CONTACT_PART_FLIP``).

    The target of the part heatmaps predicted on the horizontally flipped crop (official
    ``bi4s_seg_hm_flip_loss``: ``gt.flip([-1])[:, [1, 0, 3, 2, 4, 5, 6]]``).

    Args:
        heatmaps: (B, 7, H, W).

    Returns:
        (B, 7, H, W).
    """
    _check(heatmaps, "heatmaps", (None, NUM_PARTS, None, None))
    return heatmaps.flip(-1)[:, list(C.CONTACT_PART_FLIP)]


def voxel_contact_labels(centers: torch.Tensor, vertices: torch.Tensor, vertex_parts: torch.Tensor,
                         radius: float = CONTACT_GT_RADIUS_M, exclude_parts: tuple[int, ...] = (),
                         chunk: int = 4096) -> torch.Tensor:
    """Ground-truth contact label of each ROI voxel of one person (official ``spv_pcSeg``).

    A voxel centre closer than ``radius`` (strictly) to a ground-truth part vertex takes the part of its
    nearest part vertex (first on ties); the others are 0. Vertices of part 0 and of ``exclude_parts``
    (PROX: the hands, 3 and 4) are ignored.

    Args:
        centers: (V, 3) voxel centres, camera frame, metres.
        vertices: (6890, 3) ground-truth vertices, same frame.
        vertex_parts: (6890,) int64 part of each vertex 0..7 (``BodyAssets.part_ids_6890``).
        radius: metres (0.07).
        exclude_parts: parts whose vertices are ignored.
        chunk: voxels per distance block (memory bound).

    Returns:
        (V,) int64 labels 0..7 on the device of ``centers``. No gradient.
    """
    _check(centers, "centers", (None, 3))
    _check(vertices, "vertices", (None, 3))
    _check(vertex_parts, "vertex_parts", (len(vertices),))
    with torch.no_grad():
        parts = vertex_parts.to(centers.device)
        keep = parts != 0
        for p in exclude_parts:
            keep &= parts != p
        labels = torch.zeros(len(centers), dtype=torch.int64, device=centers.device)
        if not keep.any() or len(centers) == 0:
            return labels
        query = vertices.to(centers.device, torch.float32)[keep]  # (P, 3)
        query_parts = parts[keep]
        pts = centers.to(torch.float32)
        # Only voxels inside the padded box of the part vertices can be within the radius.
        near = ((pts > query.min(0).values - radius) & (pts < query.max(0).values + radius)).all(dim=1)
        idx = torch.nonzero(near).reshape(-1)
        for start in range(0, len(idx), chunk):
            sel = idx[start:start + chunk]
            dist = (pts[sel, None, :] - query[None]).norm(dim=-1)  # (n, P)
            d_min, nearest = dist.min(dim=1)
            hit = d_min < radius
            labels[sel[hit]] = query_parts[nearest[hit]]
        return labels


def voxel_offset_target(root_camera: torch.Tensor, centers: torch.Tensor, voxel_batch: torch.Tensor) -> torch.Tensor:
    """Offset target of every ROI voxel: ground-truth pelvis minus voxel centre (``spv_pelvis_refine``).

    Args:
        root_camera: (B, 3) ground-truth pelvis, camera frame, metres.
        centers: (V, 3) voxel centres; voxel_batch: (V,) int64 person of each voxel.

    Returns:
        (V, 3) metres, dtype of ``centers``.
    """
    _check(root_camera, "root_camera", (None, 3))
    _check(centers, "centers", (None, 3))
    return root_camera.to(centers.dtype)[voxel_batch] - centers
