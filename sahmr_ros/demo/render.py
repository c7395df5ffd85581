"""A small numpy z-buffer rasteriser and pinhole camera helpers for the embedded demo.

Frames: meshes are given in the map frame (REP-103, z up); ``T_camera_map`` (4, 4) maps map-frame
points into the camera optical frame (x right, y down, z forward). Pixel ``(u, v)`` has its centre at
integer coordinates (OpenCV convention): ``u = fx x / z + cx``, ``v = fy y / z + cy``. Depth is the
camera-frame z in metres.

Triangles are flat-shaded (Lambert, light at the camera, plus ambient), double-sided, and clipped
against the near plane ``z = near``. Small triangles are rasterised in vectorised batches over a fixed
pixel stencil; large ones one by one over their bounding box.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from sahmr_ros import geometry
from sahmr_ros.errors import InputError

_MAX_STENCIL_PX = 32  # triangles whose bounding box is wider than this are rasterised one by one
_MAX_BATCH_CANDIDATES = 1 << 20  # candidate pixels per vectorised batch (memory bound)
_INSIDE_EPS = 1e-9  # barycentric tolerance: pixels on a shared edge belong to both triangles

Mesh = tuple[np.ndarray, np.ndarray, np.ndarray]


def _as_matrix(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise InputError(f"{name}: expected shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: contains non-finite values")
    return array


def pinhole_intrinsics(width: int, height: int, horizontal_fov_deg: float = 70.0) -> np.ndarray:
    """K (3, 3) of an ideal pinhole camera with square pixels and the principal point at the centre.

    The principal point is ``((width - 1) / 2, (height - 1) / 2)`` (pixel centres at integers).
    """
    if width <= 0 or height <= 0:
        raise InputError(f"width, height: expected positive image size, got {width}x{height}")
    if not 0.0 < horizontal_fov_deg < 180.0:
        raise InputError(f"horizontal_fov_deg: expected (0, 180), got {horizontal_fov_deg}")
    f = (width / 2.0) / np.tan(np.deg2rad(horizontal_fov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def look_at_camera(eye_map, target_map, up_map=(0.0, 0.0, 1.0)) -> np.ndarray:
    """T_camera_map (4, 4) of an optical camera at ``eye_map`` looking at ``target_map``.

    The camera's z axis points from the eye to the target, its x axis to the right (perpendicular
    to map up), its y axis down.

    Args:
        eye_map: (3,) camera centre, map frame, metres.
        target_map: (3,) point the optical axis passes through, map frame.
        up_map: (3,) the map's up direction (REP-103: +z).

    Returns:
        (4, 4) rigid transform taking map-frame points into the camera optical frame.
    """
    eye = _as_matrix("eye_map", eye_map, (3,))
    target = _as_matrix("target_map", target_map, (3,))
    up = _as_matrix("up_map", up_map, (3,))
    forward = target - eye
    if np.linalg.norm(forward) < 1e-9:
        raise InputError("eye_map, target_map: the eye and the target coincide")
    z_axis = forward / np.linalg.norm(forward)
    right = np.cross(z_axis, up)
    if np.linalg.norm(right) < 1e-9 * max(1.0, np.linalg.norm(up)):
        raise InputError("eye_map, target_map: the viewing direction is parallel to up_map")
    x_axis = right / np.linalg.norm(right)
    y_axis = np.cross(z_axis, x_axis)  # down
    rotation_map_camera = np.stack([x_axis, y_axis, z_axis], axis=1)
    transform = np.eye(4)
    transform[:3, :3] = rotation_map_camera.T
    transform[:3, 3] = -rotation_map_camera.T @ eye
    return transform


def project_points(points_camera, K) -> np.ndarray:
    """Pixel coordinates (N, 2) of camera-optical-frame points (N, 3); NaN where z <= 0."""
    points = np.asarray(points_camera, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"points_camera: expected shape (N, 3), got {points.shape}")
    uv = geometry.project_points(points, geometry.check_intrinsics(K))
    uv[points[:, 2] <= 0] = np.nan
    return uv


def _clip_near(tri: np.ndarray, near: float) -> list[np.ndarray]:
    """Clip one camera-frame triangle (3, 3) to z >= near; 0, 1 or 2 triangles."""
    polygon = []
    for i in range(3):
        a, b = tri[i], tri[(i + 1) % 3]
        a_in, b_in = a[2] >= near, b[2] >= near
        if a_in:
            polygon.append(a)
        if a_in != b_in:
            t = (near - a[2]) / (b[2] - a[2])
            polygon.append(a + t * (b - a))
    return [np.stack([polygon[0], polygon[k], polygon[k + 1]]) for k in range(1, len(polygon) - 1)]


def _fragments(
    uv: np.ndarray, z: np.ndarray, width: int, height: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
    """Covered pixels of screen-space triangles.

    Args:
        uv: (T, 3, 2) pixel coordinates of the corners.
        z: (T, 3) camera depth of the corners (> 0); depth is interpolated perspective-correctly.

    Yields:
        ``(pixel, depth, triangle, unique)``: flat pixel index ``v * width + u``, depth, triangle
        index, and whether each pixel appears at most once in this batch.
    """
    with np.errstate(invalid="ignore"):
        u_lo = np.clip(np.ceil(uv[..., 0].min(axis=1)), 0, width).astype(np.int64)
        u_hi = np.clip(np.floor(uv[..., 0].max(axis=1)), -1, width - 1).astype(np.int64)
        v_lo = np.clip(np.ceil(uv[..., 1].min(axis=1)), 0, height).astype(np.int64)
        v_hi = np.clip(np.floor(uv[..., 1].max(axis=1)), -1, height - 1).astype(np.int64)
    e1 = uv[:, 1] - uv[:, 0]
    e2 = uv[:, 2] - uv[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]  # twice the signed area
    keep = (u_hi >= u_lo) & (v_hi >= v_lo) & (np.abs(area) > 1e-12)
    size = np.maximum(u_hi - u_lo, v_hi - v_lo) + 1
    inv_z = 1.0 / z

    def cover(idx, px, py):
        # Barycentrics of pixel centres (px, py) in triangles idx; all (n, m).
        dx = px - uv[idx, 0, 0][:, None]
        dy = py - uv[idx, 0, 1][:, None]
        a = area[idx][:, None]
        b1 = (dx * e2[idx, 1][:, None] - dy * e2[idx, 0][:, None]) / a
        b2 = (e1[idx, 0][:, None] * dy - e1[idx, 1][:, None] * dx) / a
        b0 = 1.0 - b1 - b2
        inside = (b0 >= -_INSIDE_EPS) & (b1 >= -_INSIDE_EPS) & (b2 >= -_INSIDE_EPS)
        iz = inv_z[idx]
        inverse_depth = b0 * iz[:, 0:1] + b1 * iz[:, 1:2] + b2 * iz[:, 2:3]
        return inside, 1.0 / inverse_depth

    stencil = 1
    while stencil <= _MAX_STENCIL_PX:
        lower = stencil // 2
        in_bucket = np.flatnonzero(keep & (size > lower) & (size <= stencil))
        offsets_u, offsets_v = np.meshgrid(np.arange(stencil), np.arange(stencil), indexing="xy")
        offsets_u, offsets_v = offsets_u.ravel(), offsets_v.ravel()
        chunk = max(1, _MAX_BATCH_CANDIDATES // (stencil * stencil))
        for start in range(0, len(in_bucket), chunk):
            idx = in_bucket[start : start + chunk]
            px = u_lo[idx][:, None] + offsets_u[None, :]
            py = v_lo[idx][:, None] + offsets_v[None, :]
            inside, depth = cover(idx, px, py)
            inside &= (px <= u_hi[idx][:, None]) & (py <= v_hi[idx][:, None])
            rows, cols = np.nonzero(inside)
            pixel = py[rows, cols] * width + px[rows, cols]
            yield pixel, depth[rows, cols], idx[rows], False
        stencil *= 2

    for t in np.flatnonzero(keep & (size > _MAX_STENCIL_PX)):
        px, py = np.meshgrid(
            np.arange(u_lo[t], u_hi[t] + 1, dtype=np.float64),
            np.arange(v_lo[t], v_hi[t] + 1, dtype=np.float64),
        )
        idx = np.array([t])
        inside, depth = cover(idx, px.reshape(1, -1), py.reshape(1, -1))
        sel = np.flatnonzero(inside[0])
        pixel = py.ravel()[sel].astype(np.int64) * width + px.ravel()[sel].astype(np.int64)
        yield pixel, depth[0, sel], np.full(len(sel), t), True


def _zbuffer(uv, z, width, height) -> tuple[np.ndarray, np.ndarray]:
    """Nearest depth (H*W,) and triangle index (H*W,) (-1 where empty) of screen-space triangles."""
    depth_buffer = np.full(width * height, np.inf)
    triangle_buffer = np.full(width * height, -1, dtype=np.int64)
    for pixel, depth, triangle, unique in _fragments(uv, z, width, height):
        if len(pixel) == 0:
            continue
        if not unique:  # nearest fragment per pixel within the batch
            order = np.lexsort((depth, pixel))
            first = np.ones(len(order), dtype=bool)
            first[1:] = pixel[order[1:]] != pixel[order[:-1]]
            order = order[first]
            pixel, depth, triangle = pixel[order], depth[order], triangle[order]
        closer = depth < depth_buffer[pixel]
        depth_buffer[pixel[closer]] = depth[closer]
        triangle_buffer[pixel[closer]] = triangle[closer]
    return depth_buffer, triangle_buffer


def _check_mesh(i: int, mesh) -> Mesh:
    try:
        vertices, faces, colors = mesh
    except (TypeError, ValueError):
        raise InputError(f"meshes[{i}]: expected (vertices, faces, face_colors)") from None
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise InputError(f"meshes[{i}] vertices: expected shape (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise InputError(f"meshes[{i}] faces: expected integer shape (F, 3), got {faces.shape} "
                         f"{faces.dtype}")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise InputError(f"meshes[{i}] faces: indices outside [0, {len(vertices)})")
    colors = np.asarray(colors)
    if colors.shape == (3,):
        colors = np.broadcast_to(colors, faces.shape)
    if colors.shape != faces.shape:
        raise InputError(f"meshes[{i}] face_colors: expected shape (F, 3) = {faces.shape} or (3,), "
                         f"got {colors.shape}")
    return vertices, faces.astype(np.int64), colors.astype(np.float64)


def render_meshes(
    meshes: Sequence[Mesh],
    K,
    T_camera_map,
    width: int,
    height: int,
    near: float = 0.05,
    *,
    background: tuple[int, int, int] = (200, 208, 216),
    ambient: float = 0.35,
) -> tuple[np.ndarray, np.ndarray]:
    """Render coloured triangle meshes with a z-buffer.

    Args:
        meshes: ``(vertices (V, 3) map frame metres, faces (F, 3) int, face_colors (F, 3) or (3,)
            uint8 RGB)`` per mesh.
        K: (3, 3) camera intrinsics, pixels.
        T_camera_map: (4, 4) map frame -> camera optical frame.
        width, height: image size in pixels.
        near: near-plane depth in metres; triangles are clipped to z >= near.
        background: RGB where nothing is drawn.
        ambient: share of the face colour lit regardless of orientation, in [0, 1].

    Returns:
        rgb: (height, width, 3) uint8.
        depth: (height, width) float32 camera z in metres, ``inf`` where empty.
    """
    K = geometry.check_intrinsics(K)
    T = geometry.check_pose(T_camera_map, "T_camera_map")
    if width <= 0 or height <= 0:
        raise InputError(f"width, height: expected a positive image size, got {width}x{height}")
    if not near > 0:
        raise InputError(f"near: expected a positive depth in metres, got {near}")
    checked = [_check_mesh(i, m) for i, m in enumerate(meshes)]

    if checked:
        triangles = np.concatenate([v[f] for v, f, _ in checked], axis=0)  # (F, 3, 3) map
        colors = np.concatenate([c for _, _, c in checked], axis=0)  # (F, 3)
    else:
        triangles, colors = np.zeros((0, 3, 3)), np.zeros((0, 3))
    triangles = triangles @ T[:3, :3].T + T[:3, 3]  # camera frame

    # Lambert with a head-light: the light comes from the camera centre; |cos| for two-sided faces.
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    view = triangles.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.abs(np.einsum("fi,fi->f", normals, view)) / (
            np.linalg.norm(normals, axis=1) * np.linalg.norm(view, axis=1)
        )
    cosine = np.nan_to_num(cosine)
    shaded = colors * (ambient + (1.0 - ambient) * cosine)[:, None]

    in_front = triangles[..., 2] >= near
    whole = in_front.all(axis=1)
    crossing = np.flatnonzero(in_front.any(axis=1) & ~whole)
    extra, extra_colors = [], []
    for f in crossing:
        pieces = _clip_near(triangles[f], near)
        extra += pieces
        extra_colors += [shaded[f]] * len(pieces)
    if extra:
        triangles = np.concatenate([triangles[whole], np.stack(extra)], axis=0)
        shaded = np.concatenate([shaded[whole], np.stack(extra_colors)], axis=0)
    else:
        triangles, shaded = triangles[whole], shaded[whole]

    z = triangles[..., 2]
    uv = (triangles @ K.T)[..., :2] / z[..., None]
    depth, triangle = _zbuffer(uv, z, width, height)

    rgb = np.empty((width * height, 3), dtype=np.uint8)
    rgb[:] = np.asarray(background, dtype=np.uint8)
    drawn = triangle >= 0
    rgb[drawn] = np.clip(np.round(shaded[triangle[drawn]]), 0, 255).astype(np.uint8)
    return rgb.reshape(height, width, 3), depth.astype(np.float32).reshape(height, width)


def rasterize_coverage(uv, faces, width: int, height: int) -> np.ndarray:
    """Pixels (height, width) bool covered by a mesh already projected to pixels.

    Scanline spans instead of the z-buffer: the cost grows with the triangles' heights in pixels,
    not their areas, so even a garbage mesh (e.g. from untrained weights) spanning the whole image
    is drawn quickly.

    Args:
        uv: (V, 2) pixel coordinates of the vertices (triangles touching a NaN row are skipped).
        faces: (F, 3) vertex indices.
    """
    uv = np.asarray(uv, dtype=np.float64)
    faces = np.asarray(faces)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise InputError(f"uv: expected shape (V, 2), got {uv.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise InputError(f"faces: expected integer shape (F, 3), got {faces.shape} {faces.dtype}")
    tri = uv[faces]  # (F, 3, 2)
    tri = tri[np.isfinite(tri).all(axis=(1, 2))]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    tri = tri[np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) > 1e-12]
    v_lo = np.clip(np.ceil(tri[..., 1].min(axis=1)), 0, height).astype(np.int64)
    v_hi = np.clip(np.floor(tri[..., 1].max(axis=1)), -1, height - 1).astype(np.int64)
    visible = (v_hi >= v_lo) & (tri[..., 0].max(axis=1) >= 0) & (tri[..., 0].min(axis=1) <= width - 1)
    tri, v_lo, rows = tri[visible], v_lo[visible], (v_hi - v_lo + 1)[visible]

    # +1 where a span starts, -1 just after it ends; a cumulative sum along each row counts spans.
    stride = width + 1
    diff = np.zeros(height * stride)
    ends = np.cumsum(rows)
    start = 0
    while start < len(tri):
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] - rows[start] + _MAX_BATCH_CANDIDATES)))
        counts = rows[start:stop]
        t = np.repeat(np.arange(start, stop), counts)
        y = v_lo[t] + np.arange(len(t)) - np.repeat(np.cumsum(counts) - counts, counts)
        x_left = np.full(len(t), np.inf)
        x_right = np.full(len(t), -np.inf)
        for k in range(3):
            a, b = tri[t, k], tri[t, (k + 1) % 3]
            dy = b[:, 1] - a[:, 1]
            crosses = (dy != 0) & (y >= np.minimum(a[:, 1], b[:, 1])) & (y <= np.maximum(a[:, 1], b[:, 1]))
            with np.errstate(divide="ignore", invalid="ignore"):
                x = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / dy
            x_left = np.where(crosses, np.minimum(x_left, x), x_left)
            x_right = np.where(crosses, np.maximum(x_right, x), x_right)
        u0 = np.clip(np.ceil(x_left), 0, width).astype(np.int64)
        u1 = np.clip(np.floor(x_right), -1, width - 1).astype(np.int64)
        span = u1 >= u0
        diff += np.bincount(y[span] * stride + u0[span], minlength=len(diff))
        diff -= np.bincount(y[span] * stride + u1[span] + 1, minlength=len(diff))
        start = stop
    return np.cumsum(diff.reshape(height, stride), axis=1)[:, :width] > 0.5
