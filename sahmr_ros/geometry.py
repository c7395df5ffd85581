"""Geometry of SA-HMR: crop, frustum, frames, ROI anchors, voxels, projection.

Frames (used in every name and docstring of this package):

* **camera optical frame** (``*_camera``): OpenCV / ROS optical convention, x right, y down,
  z forward, metres. Pixels: u right, v down, origin at the top-left pixel's centre.
* **map frame** (``*_map``): the pre-scanned scene's world frame (REP-103, z up), metres.

``T_map_camera`` (4, 4) maps camera-frame points into the map frame: ``p_map = R p_cam + t``.

Boxes are ``xyxy`` pixel boxes ``(x1, y1, x2, y2)`` in the full image. The square crop box of a
person is ``bbx_lurb`` = (left, upper, right, bottom) in full-image pixels, as in the official code.
Everything here is plain numpy or torch; nothing imports ROS.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError

__all__ = [
    "check_intrinsics",
    "unique_rows",
    "check_pose",
    "check_translation",
    "transform_points",
    "invert_transform",
    "square_crop_boxes",
    "crop_images",
    "crop_to_image_pixels",
    "project_points",
    "unproject_pixels",
    "in_crop_frustum",
    "frustum_corners_camera",
    "roi_anchors",
    "voxelize",
    "voxel_centers",
    "voxel_downsample",
    "voxel_means",
    "crop_normalized_coords",
    "root_from_heatmaps",
]


# ------------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------------
def check_intrinsics(K: np.ndarray, name: str = "K") -> np.ndarray:
    """Validate a pinhole intrinsic matrix.

    Args:
        K: (3, 3) ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
        name: field name used in the error message.

    Returns:
        K as float64 (3, 3).

    Raises:
        InputError: wrong shape, non-finite entries or non-positive focal lengths.
    """
    K = np.array(K, dtype=np.float64)  # a private, writable copy (ROS buffers are read-only)
    if K.shape != (3, 3):
        raise InputError(f"{name}: expected a (3, 3) intrinsic matrix, got shape {K.shape}")
    if not np.isfinite(K).all():
        raise InputError(f"{name}: contains NaN or inf; pass finite camera intrinsics")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"{name}: focal lengths must be > 0, got fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def check_translation(t: np.ndarray, name: str = "translation") -> np.ndarray:
    """Validate a (3,) translation in metres: finite and within ``MAX_COORDINATE_M`` of the origin.

    Returns:
        A private float64 copy of ``t``.

    Raises:
        InputError: wrong shape, NaN / inf, or farther than ``constants.MAX_COORDINATE_M``.
    """
    t = np.array(t, dtype=np.float64)
    if t.shape != (3,):
        raise InputError(f"{name}: expected 3 numbers (x, y, z), got shape {t.shape}")
    if not np.isfinite(t).all():
        raise InputError(f"{name}: contains NaN or inf: {t.tolist()}")
    if np.abs(t).max() > C.MAX_COORDINATE_M:
        raise InputError(f"{name}: {t.tolist()} is more than {C.MAX_COORDINATE_M:g} m from the origin; "
                         "no room is that large: check the transform (or re-centre a map kept in UTM)")
    return t


def check_pose(T: np.ndarray, name: str = "T_map_camera", tolerance: float = 1e-3) -> np.ndarray:
    """Validate a rigid 4x4 transform (rotation orthonormal, last row 0 0 0 1).

    Args:
        T: (4, 4) transform.
        name: the field named in errors.
        tolerance: largest accepted deviation of ``R R^T`` from I and of ``det R`` from 1.

    Returns:
        A private float64 copy of ``T``.

    Raises:
        InputError: wrong shape, non-finite, a translation beyond ``constants.MAX_COORDINATE_M``,
            or not a rigid transform.
    """
    T = np.array(T, dtype=np.float64)  # a private, writable copy
    if T.shape != (4, 4):
        raise InputError(f"{name}: expected a (4, 4) homogeneous transform, got shape {T.shape}")
    if not np.isfinite(T).all():
        raise InputError(f"{name}: contains NaN or inf; pass a finite transform")
    check_translation(T[:3, 3], f"{name} translation")
    R = T[:3, :3]
    if np.abs(R @ R.T - np.eye(3)).max() > tolerance or abs(np.linalg.det(R) - 1.0) > tolerance:
        raise InputError(f"{name}: rotation block is not orthonormal with det +1")
    if np.abs(T[3] - np.array([0.0, 0.0, 0.0, 1.0])).max() > 1e-9:
        raise InputError(f"{name}: last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    return T


# ------------------------------------------------------------------------------------------------
# frames
# ------------------------------------------------------------------------------------------------
def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) rigid transform to (..., 3) points; dtype of ``points`` is kept."""
    T = np.asarray(T)
    out = points @ T[:3, :3].T.astype(points.dtype) + T[:3, 3].astype(points.dtype)
    return out


def invert_transform(T: np.ndarray) -> np.ndarray:
    """Invert a (4, 4) rigid transform.

    E.g. ``T_camera_map = invert_transform(T_map_camera)``.
    """
    T = np.asarray(T, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


# ------------------------------------------------------------------------------------------------
# crop
# ------------------------------------------------------------------------------------------------
def square_crop_boxes(boxes_xyxy: np.ndarray, scale: float = C.CROP_SCALE) -> np.ndarray:
    """Square crop box around each person box (official ``squared_crop_and_resize``).

    Centre = box centre, half size = max(w, h) / 2 * scale.

    Args:
        boxes_xyxy: (N, 4) person boxes in full-image pixels.

    Returns:
        bbx_lurb: (N, 4) float64 ``[cx - hs, cy - hs, cx + hs, cy + hs]``.
    """
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    centre = (b[:, :2] + b[:, 2:]) / 2
    half = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2 * scale
    return np.concatenate([centre - half[:, None], centre + half[:, None]], axis=1)


def crop_to_image_pixels(uv_crop01: torch.Tensor, bbx_lurb: torch.Tensor) -> torch.Tensor:
    """Map crop-normalised coordinates in [0, 1] to full-image pixels.

    Args:
        uv_crop01: (B, ..., 2), (0, 0) = crop box left-upper corner, (1, 1) = right-bottom.
        bbx_lurb: (B, 4).

    Returns:
        (B, ..., 2) pixels in the full image.
    """
    shape = (bbx_lurb.shape[0],) + (1,) * (uv_crop01.dim() - 2) + (2,)
    lu = bbx_lurb[:, :2].reshape(shape)
    rb = bbx_lurb[:, 2:].reshape(shape)
    return lu + uv_crop01 * (rb - lu)


def crop_normalized_coords(uv: torch.Tensor, bbx_lurb: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`crop_to_image_pixels`: full-image pixels (B, ..., 2) -> crop [0, 1]."""
    shape = (bbx_lurb.shape[0],) + (1,) * (uv.dim() - 2) + (2,)
    lu = bbx_lurb[:, :2].reshape(shape)
    rb = bbx_lurb[:, 2:].reshape(shape)
    return (uv - lu) / (rb - lu)


def crop_images(image: torch.Tensor, bbx_lurb: torch.Tensor, size: int = C.CROP_SIZE_PX) -> torch.Tensor:
    """Crop and resize square boxes of one image to ``size`` x ``size`` (bilinear, zero outside).

    Crop pixel (0, 0) samples the box corner (left, upper) and pixel (size-1, size-1) the corner
    (right, bottom): the affine map of the official crop ((cx-hs, cy-hs) -> (0, 0),
    (cx+hs, cy-hs) -> (223, 0), centre -> (111.5, 111.5)).

    Args:
        image: (3, H, W) float in [0, 1].
        bbx_lurb: (B, 4) square boxes in full-image pixels.

    Returns:
        (B, 3, size, size) float in [0, 1].
    """
    _, H, W = image.shape
    B = bbx_lurb.shape[0]
    t = torch.linspace(0.0, 1.0, size, dtype=bbx_lurb.dtype, device=bbx_lurb.device)
    grid01 = torch.stack(torch.meshgrid(t, t, indexing="xy"), dim=-1)  # (S, S, 2) as (u, v)
    pix = crop_to_image_pixels(grid01.expand(B, size, size, 2), bbx_lurb)  # (B, S, S, 2)
    # grid_sample with align_corners=True: -1 -> pixel 0, +1 -> pixel W-1.
    scale = torch.tensor([2.0 / max(W - 1, 1), 2.0 / max(H - 1, 1)], dtype=pix.dtype, device=pix.device)
    grid = (pix * scale - 1.0).to(image.dtype)
    return F.grid_sample(
        image.unsqueeze(0).expand(B, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )


# ------------------------------------------------------------------------------------------------
# projection and frustum
# ------------------------------------------------------------------------------------------------
def project_points(points_camera, K):
    """Pinhole projection of camera-frame points to pixels.

    Works for numpy ``(N, 3)`` with ``K`` (3, 3) and for torch ``(B, N, 3)`` with ``K`` (B, 3, 3).

    Returns:
        (..., 2) pixels ``(u, v)``; points with z <= 0 give meaningless values (callers mask them).
    """
    if isinstance(points_camera, torch.Tensor):
        p = torch.einsum("bij,bnj->bni", K.to(points_camera.dtype), points_camera)
        return p[..., :2] / p[..., 2:3]
    p = np.asarray(points_camera) @ np.asarray(K).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return p[..., :2] / p[..., 2:3]


def unproject_pixels(uv, depth, K):
    """Back-project pixels at camera depths z to camera-frame points.

    torch: ``uv`` (B, N, 2), ``depth`` (B, N), ``K`` (B, 3, 3) -> (B, N, 3).
    numpy: ``uv`` (N, 2), ``depth`` (N,), ``K`` (3, 3) -> (N, 3).
    """
    if isinstance(uv, torch.Tensor):
        fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
        cx, cy = K[:, 0, 2, None], K[:, 1, 2, None]
        x = (uv[..., 0] - cx) * depth / fx
        y = (uv[..., 1] - cy) * depth / fy
        return torch.stack([x, y, depth], dim=-1)
    uv = np.asarray(uv, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64)
    x = (uv[..., 0] - K[0, 2]) * depth / K[0, 0]
    y = (uv[..., 1] - K[1, 2]) * depth / K[1, 1]
    return np.stack([x, y, depth], axis=-1)


def in_crop_frustum(
    points_camera: np.ndarray,
    K: np.ndarray,
    bbx_lurb: np.ndarray,
    near: float = C.FRUSTUM_NEAR_M,
    far: float = C.FRUSTUM_FAR_M,
) -> np.ndarray:
    """Which camera-frame points lie inside the frustum of a crop box.

    The frustum is bounded by 6 planes: near (z = ``near``), far (z = ``far``) and the 4 planes
    through the camera centre and the crop box edges. For z > 0 the 4 side planes are equivalent
    to the projection falling inside the box (boundaries inclusive).

    Args:
        points_camera: (N, 3) camera optical frame.
        K: (3, 3).
        bbx_lurb: (4,) crop box in full-image pixels, or (N, 4) one box per point.

    Returns:
        (N,) bool mask.
    """
    z = points_camera[:, 2]
    mask = (z >= near) & (z <= far)
    uv = project_points(points_camera[mask], K)
    boxes = np.asarray(bbx_lurb, dtype=np.float64)
    l, u, r, b = (boxes[mask] if boxes.ndim == 2 else boxes).T
    inside = (uv[:, 0] >= l) & (uv[:, 0] <= r) & (uv[:, 1] >= u) & (uv[:, 1] <= b)
    mask[np.flatnonzero(mask)[~inside]] = False
    return mask


def frustum_corners_camera(
    K: np.ndarray, bbx_lurb: np.ndarray, near: float = C.FRUSTUM_NEAR_M, far: float = C.FRUSTUM_FAR_M
) -> np.ndarray:
    """Return the 8 corners (near lu, ru, rb, lb, then far) of a crop box's frustum, camera frame (8, 3)."""
    l, u, r, b = np.asarray(bbx_lurb, dtype=np.float64)
    uv = np.array([[l, u], [r, u], [r, b], [l, b]] * 2)
    depth = np.array([near] * 4 + [far] * 4)
    return unproject_pixels(uv, depth, np.asarray(K, dtype=np.float64))


# ------------------------------------------------------------------------------------------------
# root, anchors, voxels
# ------------------------------------------------------------------------------------------------
def root_from_heatmaps(
    pelvis_heatmap: torch.Tensor, depth_map: torch.Tensor, bbx_lurb: torch.Tensor, K: torch.Tensor
) -> torch.Tensor:
    """Coarse root (pelvis) in the camera frame from RCNet's pelvis heatmap and depth map.

    Pelvis pixel = argmax of the heatmap -> (u, v) / (W - 1) in the crop -> full-image pixel.
    Depth ``Z = d * f_x / w_bbox`` with ``d`` read at the argmax and ``w_bbox`` the crop box width
    in full-image pixels; X, Y by back-projection through the full-image K.

    Args:
        pelvis_heatmap: (B, h, w).
        depth_map: (B, h, w) normalised depth.
        bbx_lurb: (B, 4).
        K: (B, 3, 3).

    Returns:
        (B, 3) camera-frame root in metres.
    """
    B, h, w = pelvis_heatmap.shape
    flat = pelvis_heatmap.reshape(B, -1).argmax(dim=1)
    v, u = flat // w, flat % w
    uv01 = torch.stack([u, v], dim=-1).to(bbx_lurb.dtype) / torch.tensor(
        [w - 1, h - 1], dtype=bbx_lurb.dtype, device=bbx_lurb.device
    )
    uv = crop_to_image_pixels(uv01[:, None], bbx_lurb)  # (B, 1, 2)
    d = depth_map.reshape(B, -1).gather(1, flat[:, None]).to(bbx_lurb.dtype)  # (B, 1)
    box_w = (bbx_lurb[:, 2] - bbx_lurb[:, 0])[:, None]
    z = d * K[:, 0, 0, None].to(bbx_lurb.dtype) / box_w
    return unproject_pixels(uv, z, K.to(bbx_lurb.dtype))[:, 0]


def roi_anchors(root_camera, spacing: float = C.ROI_ANCHOR_SPACING_M):
    """Three ROI anchors: the root shifted by -spacing, 0, +spacing along camera z.

    Args:
        root_camera: (B, 3) numpy or torch.

    Returns:
        (B, 3, 3) anchors, middle one = the root.
    """
    lib = torch if isinstance(root_camera, torch.Tensor) else np
    offsets = [-spacing, 0.0, spacing]
    anchors = [root_camera + lib.asarray([0.0, 0.0, o], dtype=root_camera.dtype) for o in offsets]
    return lib.stack(anchors, 1)


def voxelize(points: np.ndarray, voxel_size: float = C.CONTACT_VOXEL_M) -> tuple[np.ndarray, np.ndarray]:
    """Integer voxel coordinates ``floor(p / voxel_size)`` and each point's voxel.

    Args:
        points: (N, 3) metres.

    Returns:
        coords: (V, 3) int32 unique voxel coordinates (sorted lexicographically).
        point_to_voxel: (N,) int64 index of each point's voxel in ``coords``.
    """
    q = np.floor(np.asarray(points, dtype=np.float64).reshape(-1, 3) / voxel_size).astype(np.int64)
    if len(q) == 0:
        return np.zeros((0, 3), np.int32), np.zeros(0, np.int64)
    coords, inverse = unique_rows(q)
    return coords.astype(np.int32), inverse.astype(np.int64)


def unique_rows(q):
    """Return the unique rows of an (N, D) integer array or tensor (sorted) and each row's index.

    The same result as ``np.unique(q, axis=0, return_inverse=True)`` / ``torch.unique(q, dim=0,
    return_inverse=True)``, much faster: each row becomes one integer key (first column slowest; int32
    when the keys' range fits, which sorts faster than int64), and a 1-D unique sorts the keys in the
    same order. The unique rows are gathered from ``q`` (one occurrence each), not decoded from the keys.

    Args:
        q: (N, D) integers (numpy or torch), N >= 1.

    Returns:
        rows: (U, D) the unique rows, same type and dtype as ``q``; inverse: (N,) int64.
    """
    is_torch = isinstance(q, torch.Tensor)
    if is_torch:
        lo, hi = torch.aminmax(q, dim=0)
    else:
        lo, hi = q.min(axis=0), q.max(axis=0)
    lo_list = [int(v) for v in lo]
    extent = [int(b) - a + 1 for a, b in zip(lo_list, hi)]
    if np.prod(np.array(extent, dtype=np.float64)) >= 2.0**62:  # keys would overflow: the slow, general path
        if is_torch:
            return torch.unique(q, dim=0, return_inverse=True)
        rows, inverse = np.unique(q, axis=0, return_inverse=True)
        return rows, inverse.reshape(-1)
    # key = sum_d (q[:, d] - lo[d]) * mult[d]: the column products accumulate into the last column
    mult = [1] * len(extent)
    for d in reversed(range(len(extent) - 1)):
        mult[d] = mult[d + 1] * extent[d + 1]
    base = sum(a * m for a, m in zip(lo_list, mult))
    key = q[:, -1].astype(np.int64) if not is_torch else q[:, -1].to(torch.int64)
    key = key - base
    for d in range(len(extent) - 1):
        key = key + q[:, d] * mult[d]
    small = mult[0] * extent[0] < 2**31
    if is_torch:
        keys, inverse = torch.unique(key.to(torch.int32) if small else key, sorted=True, return_inverse=True)
        first = torch.empty(len(keys), dtype=torch.int64, device=q.device).index_copy_(
            0, inverse, torch.arange(len(q), device=q.device))  # some occurrence of each unique row
        return q.index_select(0, first), inverse.reshape(-1)
    keys, inverse = np.unique(key.astype(np.int32) if small else key, return_inverse=True)
    inverse = inverse.reshape(-1)
    first = np.empty(len(keys), dtype=np.int64)
    first[inverse] = np.arange(len(q))  # some occurrence of each unique row
    return q[first], inverse


def voxel_centers(coords: np.ndarray, voxel_size: float = C.CONTACT_VOXEL_M) -> np.ndarray:
    """Centres ``c * voxel_size + voxel_size / 2`` of integer voxel coordinates (V, 3) -> (V, 3)."""
    return np.asarray(coords, dtype=np.float64) * voxel_size + voxel_size / 2


def voxel_downsample(points: np.ndarray, pitch: float = C.SCENE_PITCH_M) -> np.ndarray:
    """One point per ``pitch`` voxel (the mean of the points in it), as a scanned scene at 2 cm.

    Args:
        points: (N, 3) float.

    Returns:
        (M, 3) float32, M <= N, ordered by voxel.
    """
    return voxel_means(points, pitch)[1]


def voxel_means(points: np.ndarray, pitch: float = C.SCENE_PITCH_M) -> tuple[np.ndarray, np.ndarray]:
    """Return the occupied ``pitch`` voxels and the mean of the points in each (float64 sums, float32 means).

    Args:
        points: (N, 3) float, metres.

    Returns:
        coords: (M, 3) int32 voxel coordinates (:func:`voxelize`'s order); means: (M, 3) float32.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    coords, inverse = voxelize(points, pitch)
    means = np.empty((len(coords), 3), np.float32)
    if len(points):
        counts = np.bincount(inverse)
        for k in range(3):  # one column at a time: a 10 M-point map needs no (N, 3) temporaries
            means[:, k] = np.bincount(inverse, weights=points[:, k]) / counts
    return coords, means
