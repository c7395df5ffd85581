"""Yaw-rotated boxes, the one primitive the procedural rooms are built from.

Frame: the map frame (REP-103), metres, z up. A box is ``center + R_z(yaw) @ (s * half_extents)``
for ``s`` in ``[-1, 1]^3``: its local x, y axes are the map x, y axes turned by ``yaw`` about +z,
its local z is map +z.

A set of boxes is held as arrays (:class:`BoxArrays`) so that the signed distance of many points to
all of them is a few vectorised numpy operations. The distance of a point to one box is the exact
closed form (``|max(q, 0)| + min(max_i q_i, 0)`` with ``q = |p_local| - half_extents``); the union
of several boxes takes the minimum, which is exact outside all of them and, inside, the depth below
the nearest face of the deepest box containing the point (never more than the true depth).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BoxArrays", "box_faces", "box_mesh", "box_sdf", "box_sdf_on_grid", "yaw_matrix"]

# Corner s = (sx, sy, sz) in {-1, 1}^3 has index 4 (sx > 0) + 2 (sy > 0) + (sz > 0); triangles wound
# counter-clockwise seen from outside (trimesh.creation.box's template: watertight, outward normals).
_CORNERS = np.array([[-1, -1, -1], [-1, -1, 1], [-1, 1, -1], [-1, 1, 1],
                     [1, -1, -1], [1, -1, 1], [1, 1, -1], [1, 1, 1]], dtype=np.float64)
_TRIANGLES = np.array([[1, 3, 0], [4, 1, 0], [0, 3, 2], [2, 4, 0], [1, 7, 3], [5, 1, 4],
                       [5, 7, 1], [3, 7, 2], [6, 4, 2], [2, 7, 6], [6, 5, 4], [7, 5, 6]], dtype=np.int64)
# Side of each triangle: 0 -x, 1 +x, 2 -y, 3 +y, 4 -z, 5 +z (its outward normal).
TRIANGLE_SIDES = np.array([0, 2, 0, 4, 5, 2, 5, 3, 4, 3, 1, 1], dtype=np.int64)
NUM_SIDES = 6
# Outward normal, and the two in-plane axes, of each side in box-local coordinates.
SIDE_NORMALS = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], np.float64)
_SIDE_AXES = ((1, 2), (1, 2), (0, 2), (0, 2), (0, 1), (0, 1))

# Points per chunk of the point-wise SDF (bounds the (chunk, boxes) temporaries).
_SDF_CHUNK = 16384


def yaw_matrix(yaw: float) -> np.ndarray:
    """(3, 3) rotation by ``yaw`` radians about +z."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class BoxArrays:
    """B boxes as arrays (map frame, metres).

    Attributes:
        centers: (B, 3) float64.
        half_extents: (B, 3) float64 > 0, along the box's local axes.
        yaws: (B,) float64 radians about +z.
    """

    centers: np.ndarray
    half_extents: np.ndarray
    yaws: np.ndarray

    def __len__(self) -> int:
        return len(self.centers)

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """(N, B, 3) coordinates of (N, 3) map points in each box's local frame (origin at its centre)."""
        d = points[:, None, :] - self.centers[None]
        c, s = np.cos(self.yaws), np.sin(self.yaws)
        return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1], d[..., 2]], axis=-1)


def box_sdf(boxes: BoxArrays, points: np.ndarray) -> np.ndarray:
    """Signed distance of points to each box (negative inside).

    Args:
        boxes: B boxes.
        points: (N, 3) map frame, metres.

    Returns:
        (N, B) float64 metres.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    out = np.empty((len(points), len(boxes)))
    for start in range(0, len(points), _SDF_CHUNK):
        q = np.abs(boxes.to_local(points[start:start + _SDF_CHUNK])) - boxes.half_extents[None]
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        out[start:start + _SDF_CHUNK] = outside + np.minimum(q.max(axis=-1), 0.0)
    return out


def box_sdf_on_grid(boxes: BoxArrays, axes: tuple[np.ndarray, np.ndarray, np.ndarray],
                    initial: np.ndarray) -> np.ndarray:
    """Minimum of ``initial`` and every box's signed distance at the nodes of a regular grid.

    The grid's node (i, j, k) is ``(axes[0][i], axes[1][j], axes[2][k])``. Boxes only turn about z,
    so the local z offset depends on k alone and the local x, y offsets on (i, j) alone: each box
    costs a few (X, Y) and (X, Y, Z) operations, no (X, Y, Z, 3) temporaries.

    Args:
        boxes: B boxes.
        axes: node coordinates along map x (X,), y (Y,) and z (Z,), metres.
        initial: (X, Y, Z) float32 values to take the minimum with (e.g. the floor's distance).

    Returns:
        (X, Y, Z) float32 metres (``initial`` updated in place).
    """
    gx, gy = np.meshgrid(axes[0], axes[1], indexing="ij")
    gz = np.asarray(axes[2], dtype=np.float64)
    for center, half, yaw in zip(boxes.centers, boxes.half_extents, boxes.yaws):
        c, s = np.cos(yaw), np.sin(yaw)
        dx, dy = gx - center[0], gy - center[1]
        qx = np.abs(c * dx + s * dy) - half[0]
        qy = np.abs(-s * dx + c * dy) - half[1]
        qz = (np.abs(gz - center[2]) - half[2]).astype(np.float32)
        outside_xy = (np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2).astype(np.float32)
        max_xy = np.maximum(qx, qy).astype(np.float32)
        d = np.sqrt(outside_xy[:, :, None] + np.maximum(qz, 0.0)[None, None, :] ** 2)
        d += np.minimum(np.maximum(max_xy[:, :, None], qz[None, None, :]), 0.0)
        np.minimum(initial, d, out=initial)
    return initial


def box_mesh(boxes: BoxArrays) -> tuple[np.ndarray, np.ndarray]:
    """Return closed triangle meshes of the boxes (8 vertices, 12 outward-wound triangles each).

    Returns:
        vertices: (8 B, 3) float64 map frame; faces: (12 B, 3) int64, box b's faces are rows
        12 b .. 12 b + 11 in the order of :data:`TRIANGLE_SIDES`.
    """
    local = _CORNERS[None] * boxes.half_extents[:, None, :]  # (B, 8, 3)
    c, s = np.cos(boxes.yaws)[:, None], np.sin(boxes.yaws)[:, None]
    world = np.stack([c * local[..., 0] - s * local[..., 1], s * local[..., 0] + c * local[..., 1],
                      local[..., 2]], axis=-1) + boxes.centers[:, None, :]
    faces = _TRIANGLES[None] + 8 * np.arange(len(boxes))[:, None, None]
    return world.reshape(-1, 3), faces.reshape(-1, 3)


def box_faces(center: np.ndarray, half_extents: np.ndarray, yaw: float, side: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One side of a box as a rectangle ``origin + s u + t v``, s, t in [0, 1].

    Returns:
        origin (3,), u (3,), v (3,) map frame, and the outward normal (3,).
    """
    rot = yaw_matrix(yaw)
    normal_local = SIDE_NORMALS[side]
    a, b = _SIDE_AXES[side]
    corner = normal_local * half_extents
    corner[a], corner[b] = -half_extents[a], -half_extents[b]
    u = np.zeros(3)
    v = np.zeros(3)
    u[a], v[b] = 2.0 * half_extents[a], 2.0 * half_extents[b]
    return rot @ corner + center, rot @ u, rot @ v, rot @ normal_local
