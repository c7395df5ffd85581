"""Render coloured triangle meshes by CPU ray casting (Open3D's ``RaycastingScene``, Embree).

One ray per pixel: the ray of pixel ``(u, v)`` is ``K^-1 (u, v, 1)`` in the camera optical frame
(x right, y down, z forward), scaled to z = 1, so the hit distance along it is the camera depth. Pixel
centres lie at integer coordinates (OpenCV convention): a point ``(x, y, z)`` projects to
``u = (fx x + s y) / z + cx``, ``v = fy y / z + cy``, and a pixel is covered when the ray through its
centre hits a triangle. With lens distortion (:func:`pixel_rays`) each pixel of the *distorted* image
casts the ray of its undistorted normalised coordinate, so the image is rendered distorted directly.

Frames: meshes are given in the map frame (REP-103, z up, metres); ``T_camera_map`` (4, 4) maps
map-frame points into the camera optical frame.

Shading: flat Lambert from each face's normal, double-sided (the normal is turned towards the
viewer), with a head-light (light from the camera) or a directional light, plus ambient.

The renderer also returns what a data generator needs: the camera depth, the index of the mesh each
pixel sees (visible masks, visible fractions, occlusion) and the face index within that mesh.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import open3d as o3d
from scipy.ndimage import map_coordinates

from sahmr_ros import geometry
from sahmr_ros.errors import InputError

__all__ = [
    "BACKGROUND_RGB",
    "Light",
    "Mesh",
    "Render",
    "look_at_camera",
    "pinhole_intrinsics",
    "pixel_rays",
    "project_points",
    "render",
    "silhouettes",
]

BACKGROUND_RGB = (200, 208, 216)
_UNDISTORT_ITERATIONS = 30  # Newton steps inverting a distortion model (converges in < 10 for real lenses)
_UNDISTORT_TOLERANCE = 1e-10  # residual in normalised coordinates (about 1e-7 px) counted as converged
_JACOBIAN_STEP = 1e-7  # finite-difference step of the distortion Jacobian, normalised coordinates


class Mesh(NamedTuple):
    """A coloured triangle mesh (a plain ``(vertices, faces, colors)`` tuple works as well).

    Attributes:
        vertices: (V, 3) map frame, metres.
        faces: (F, 3) integer vertex indices.
        colors: (F, 3) per-face or (3,) per-mesh RGB, 0..255.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | tuple


@dataclass(frozen=True)
class Light:
    """Lighting of a render.

    Attributes:
        direction_map: (3,) direction the light travels in the map frame (e.g. ``(0, 0, -1)`` for a
            ceiling light); ``None`` for a head-light shining from the camera along each ray.
        ambient: share of the face colour lit regardless of orientation, in [0, 1].
        intensity: scale of the diffuse (Lambert) term; the result is clipped to 255.
    """

    direction_map: tuple[float, float, float] | None = None
    ambient: float = 0.35
    intensity: float = 1.0


@dataclass(frozen=True)
class Render:
    """What one camera sees.

    Attributes:
        rgb: (H, W, 3) uint8 shaded image.
        depth: (H, W) float32 camera z of the surface seen, metres; ``inf`` where nothing is hit.
        instance: (H, W) int32 index (into the ``meshes`` given) of the mesh seen; -1 for background.
        primitive: (H, W) int32 index of the face seen within that mesh; -1 for background.
    """

    rgb: np.ndarray
    depth: np.ndarray
    instance: np.ndarray
    primitive: np.ndarray

    def mask(self, mesh_index: int) -> np.ndarray:
        """Pixels (H, W) bool where mesh ``mesh_index`` is the visible surface."""
        return self.instance == mesh_index


# ------------------------------------------------------------------------------------------------
# pinhole camera helpers
# ------------------------------------------------------------------------------------------------
def _as_matrix(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape:
        raise InputError(f"{name}: expected shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: contains non-finite values")
    return array


def _check_size(width: int, height: int) -> tuple[int, int]:
    if int(width) != width or int(height) != height or width <= 0 or height <= 0:
        raise InputError(f"width, height: expected a positive integer image size, got {width}x{height}")
    return int(width), int(height)


def pinhole_intrinsics(width: int, height: int, horizontal_fov_deg: float = 70.0) -> np.ndarray:
    """K (3, 3) of an ideal pinhole camera with square pixels and the principal point at the centre.

    The principal point is ``((width - 1) / 2, (height - 1) / 2)`` (pixel centres at integers).
    """
    width, height = _check_size(width, height)
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


# ------------------------------------------------------------------------------------------------
# rays
# ------------------------------------------------------------------------------------------------
def _undistort_normalised(xd: np.ndarray, yd: np.ndarray, model: str, coeffs: np.ndarray,
                          start: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Invert ``io``'s forward distortion model by Newton's method; NaN where it does not converge.

    Solves ``distort(x, y) = (xd, yd)`` per point with a finite-difference Jacobian, starting from
    ``start`` (default ``(xd, yd)``); each step works on the points not yet converged. A solution beyond the fold of a
    strong barrel model (a non-positive Jacobian determinant, or a point on the far side of the axis)
    is no ray the lens images there: NaN.
    """
    from sahmr_ros.io import _distort_normalised

    shape = xd.shape
    xd, yd = xd.reshape(-1), yd.reshape(-1)
    x, y = (xd.copy(), yd.copy()) if start is None else (start[0].reshape(-1).copy(), start[1].reshape(-1).copy())
    det = np.full(len(xd), np.nan)  # the Jacobian's determinant at the latest step
    active = np.arange(len(xd))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(_UNDISTORT_ITERATIONS):
            xa, ya = x[active], y[active]
            fx, fy = _distort_normalised(xa, ya, model, coeffs)
            rx, ry = fx - xd[active], fy - yd[active]
            keep = ~((np.abs(rx) < _UNDISTORT_TOLERANCE) & (np.abs(ry) < _UNDISTORT_TOLERANCE))
            active, xa, ya, fx, fy, rx, ry = (v[keep] for v in (active, xa, ya, fx, fy, rx, ry))
            if not len(active):
                break
            ax, ay = _distort_normalised(xa + _JACOBIAN_STEP, ya, model, coeffs)
            bx, by = _distort_normalised(xa, ya + _JACOBIAN_STEP, model, coeffs)
            a, b = (ax - fx) / _JACOBIAN_STEP, (bx - fx) / _JACOBIAN_STEP
            c, d = (ay - fy) / _JACOBIAN_STEP, (by - fy) / _JACOBIAN_STEP
            det[active] = a * d - b * c
            x[active] = xa - (d * rx - b * ry) / det[active]
            y[active] = ya - (a * ry - c * rx) / det[active]
        converged = np.ones(len(xd), dtype=bool)
        converged[active] = False
        # A point that needed no step has no determinant yet (an exact start): take it there.
        fresh = np.flatnonzero(converged & np.isnan(det))
        if len(fresh):
            fx, fy = _distort_normalised(x[fresh], y[fresh], model, coeffs)
            ax, ay = _distort_normalised(x[fresh] + _JACOBIAN_STEP, y[fresh], model, coeffs)
            bx, by = _distort_normalised(x[fresh], y[fresh] + _JACOBIAN_STEP, model, coeffs)
            det[fresh] = (ax - fx) * (by - fy) - (bx - fx) * (ay - fy)
        valid = converged & (det > 0) & (x * xd + y * yd >= 0)
    x[~valid] = np.nan
    y[~valid] = np.nan
    return x.reshape(shape), y.reshape(shape)


def _normalised(K_inv: np.ndarray, v: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Rays (..., 3) ``K^-1 (u, v, 1)`` scaled to z = 1 (K's last row may be any scale)."""
    # einsum, not matmul: numpy's (N, 3) @ (3, 3) is many times slower for this shape.
    rays = np.einsum("ij,...j->...i", K_inv, np.stack([u, v, np.ones_like(u)], axis=-1))
    return rays / rays[..., 2:3]


@functools.lru_cache(maxsize=8)
def _cached_rays(k: tuple, width: int, height: int, model: str, coeffs: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Rays (H, W, 3) float64 and the same as Open3D casts them, (H * W, 6) float32 with origin 0."""
    K_inv = np.linalg.inv(np.asarray(k).reshape(3, 3))
    rays = _normalised(K_inv, *np.mgrid[0:height, 0:width].astype(np.float64))
    if coeffs:
        # Newton from a coarse solution (every 8th pixel, interpolated) converges in a step or two.
        step = 8
        coarse = _normalised(K_inv, *np.mgrid[0:height + step:step, 0:width + step:step].astype(np.float64))
        coarse_x, coarse_y = _undistort_normalised(coarse[..., 0], coarse[..., 1], model, np.asarray(coeffs))
        grid = np.mgrid[0:height, 0:width] / step
        start = [map_coordinates(c, grid, order=1, mode="nearest") for c in (coarse_x, coarse_y)]
        unknown = ~(np.isfinite(start[0]) & np.isfinite(start[1]))  # near the fold: start from the pixel
        start[0][unknown], start[1][unknown] = rays[..., 0][unknown], rays[..., 1][unknown]
        x, y = _undistort_normalised(rays[..., 0], rays[..., 1], model, np.asarray(coeffs), start)
        rays = np.stack([x, y, np.ones_like(x)], axis=-1)
    cast = np.zeros((height * width, 6), dtype=np.float32)
    cast[:, 3:] = rays.reshape(-1, 3)  # NaN rows hit nothing
    rays.flags.writeable = False
    cast.flags.writeable = False
    return rays, cast


def _calibration_rays(K, width: int, height: int, distortion, distortion_model: str | None):
    from sahmr_ros.io import normalise_distortion

    K = geometry.check_intrinsics(K)
    width, height = _check_size(width, height)
    if abs(np.linalg.det(K)) < 1e-12:
        raise InputError(f"K: singular intrinsic matrix {K.tolist()}")
    model, coeffs = ("", np.zeros(0)) if distortion is None else normalise_distortion(
        distortion_model, distortion, "distortion")
    return _cached_rays(tuple(K.reshape(-1).tolist()), width, height, model, tuple(coeffs.tolist()))


def pixel_rays(K, width: int, height: int, distortion=None, distortion_model: str | None = None) -> np.ndarray:
    """Camera-frame rays (height, width, 3) float64 through each pixel centre, scaled to z = 1.

    Without distortion the ray of pixel ``(u, v)`` is ``K^-1 (u, v, 1)`` (any skew). With distortion
    it is ``(x, y, 1)`` where the model maps the undistorted normalised point ``(x, y)`` to the
    pixel's distorted normalised point ``K^-1 (u, v, 1)``; pixels the lens images no ray onto (beyond
    the fold of a strong model) get NaN.

    Args:
        K: (3, 3) intrinsics, pixels.
        width, height: image size in pixels.
        distortion: coefficients in the ROS / OpenCV order (``io.DISTORTION_MODELS``), e.g. plumb_bob
            ``k1, k2, p1, p2, k3``; None or all zero for none.
        distortion_model: ``plumb_bob``, ``rational_polynomial`` or ``equidistant``; None picks
            plumb_bob or rational_polynomial from the count (``io.normalise_distortion``).

    Returns:
        A read-only array, cached per calibration (a camera renders many frames).
    """
    return _calibration_rays(K, width, height, distortion, distortion_model)[0]


# ------------------------------------------------------------------------------------------------
# scene and render
# ------------------------------------------------------------------------------------------------
def _check_mesh(i: int, mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        vertices, faces, colors = mesh
    except (TypeError, ValueError):
        raise InputError(f"meshes[{i}]: expected (vertices, faces, colors)") from None
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise InputError(f"meshes[{i}] vertices: expected shape (V, 3), got {vertices.shape}")
    if faces.size == 0:
        faces = faces.reshape(0, 3).astype(np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise InputError(f"meshes[{i}] faces: expected integer shape (F, 3), got {faces.shape} {faces.dtype}")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise InputError(f"meshes[{i}] faces: indices outside [0, {len(vertices)})")
    if len(faces) and not np.isfinite(vertices[faces]).all():
        raise InputError(f"meshes[{i}] vertices: faces use non-finite vertices")
    colors = np.asarray(colors, dtype=np.float64)
    if colors.shape == (3,):
        colors = np.broadcast_to(colors, faces.shape)
    if colors.shape != faces.shape:
        raise InputError(f"meshes[{i}] colors: expected shape (F, 3) = {faces.shape} or (3,), got {colors.shape}")
    return vertices, faces.astype(np.int64), colors


def _face_shading(triangles_camera: np.ndarray, light: Light, T_camera_map: np.ndarray) -> np.ndarray:
    """Lambert factor (F,) of each face as the camera sees it (flat, double-sided).

    The camera sees one side of a face for every pixel (it lies on one side of the face's plane), so
    the shading is per face: the normal is turned towards the camera centre, then lit by a head-light
    (the cosine to the direction from the camera to the face's centroid) or a directional light.
    """
    a, b, c = triangles_camera[:, 0], triangles_camera[:, 1], triangles_camera[:, 2]
    normal = np.cross(b - a, c - a)
    length = np.linalg.norm(normal, axis=1)
    normal /= np.where(length > 0, length, 1.0)[:, None]
    normal *= np.where(np.einsum("ij,ij->i", normal, a) > 0, -1.0, 1.0)[:, None]  # towards the camera
    if light.direction_map is None:
        centroid = (a + b + c) / 3.0
        distance = np.linalg.norm(centroid, axis=1)
        cosine = -np.einsum("ij,ij->i", normal, centroid) / np.where(distance > 0, distance, 1.0)
    else:
        direction = T_camera_map[:3, :3] @ np.asarray(light.direction_map, dtype=np.float64)
        cosine = -normal @ (direction / np.linalg.norm(direction))
    return light.ambient + (1.0 - light.ambient) * light.intensity * np.clip(cosine, 0.0, 1.0)


def _check_light(light: Light) -> None:
    if not isinstance(light, Light):
        raise InputError(f"light: expected a Light, got {type(light).__name__}")
    if not 0.0 <= light.ambient <= 1.0:
        raise InputError(f"light.ambient: expected [0, 1], got {light.ambient}")
    if not (np.isfinite(light.intensity) and light.intensity >= 0):
        raise InputError(f"light.intensity: expected a finite value >= 0, got {light.intensity}")
    if light.direction_map is not None:
        direction = _as_matrix("light.direction_map", light.direction_map, (3,))
        if np.linalg.norm(direction) < 1e-12:
            raise InputError("light.direction_map: expected a non-zero direction")


def render(
    meshes: Sequence[Mesh | tuple],
    K,
    T_camera_map,
    width: int,
    height: int,
    *,
    distortion=None,
    distortion_model: str | None = None,
    light: Light = Light(),
    background: tuple[int, int, int] = BACKGROUND_RGB,
) -> Render:
    """Render coloured triangle meshes seen by a pinhole camera (with optional lens distortion).

    Args:
        meshes: per mesh ``(vertices (V, 3) map frame metres, faces (F, 3) int, colors (F, 3) or (3,)
            RGB 0..255)``, a :class:`Mesh` or a plain tuple. The index in this sequence is the mesh's
            value in ``Render.instance``.
        K: (3, 3) camera intrinsics, pixels (skew allowed).
        T_camera_map: (4, 4) map frame -> camera optical frame.
        width, height: image size in pixels.
        distortion: lens distortion coefficients (ROS / OpenCV order, e.g. plumb_bob k1 k2 p1 p2 k3):
            the image is rendered as the distorted lens sees it; None for an ideal pinhole.
        distortion_model: the coefficients' model (:func:`pixel_rays`).
        light: :class:`Light` (default: head-light, 35 % ambient).
        background: RGB where nothing is hit.

    Returns:
        :class:`Render`: rgb, depth (camera z), instance and primitive maps.

    Raises:
        InputError: bad K, pose, size, light, distortion or mesh (the message names the field).
    """
    T = geometry.check_pose(T_camera_map, "T_camera_map")
    width, height = _check_size(width, height)
    _check_light(light)
    rays = _calibration_rays(K, width, height, distortion, distortion_model)[1]
    checked = [_check_mesh(i, m) for i, m in enumerate(meshes)]

    # The scene is built in the camera frame: the cached rays are then used as they are, and Embree's
    # float32 is exact to well under a millimetre near the camera whatever the map's coordinates.
    scene = o3d.t.geometry.RaycastingScene()
    mesh_of_geometry, face_offsets, face_rgb = [], [0], []
    for i, (vertices, faces, colors) in enumerate(checked):
        if len(faces) == 0:
            continue
        vertices_camera = geometry.transform_points(T, vertices)
        scene.add_triangles(o3d.core.Tensor(vertices_camera.astype(np.float32)),
                            o3d.core.Tensor(faces.astype(np.uint32)))
        shade = _face_shading(vertices_camera[faces], light, T)
        face_rgb.append(np.clip(np.rint(colors * shade[:, None]), 0, 255).astype(np.uint8))
        mesh_of_geometry.append(i)
        face_offsets.append(face_offsets[-1] + len(faces))
    # One extra entry past the last geometry stands for "nothing hit".
    mesh_of_geometry = np.asarray(mesh_of_geometry + [-1], dtype=np.int32)
    face_offsets = np.asarray(face_offsets, dtype=np.int64)
    face_rgb = np.concatenate(face_rgb + [np.asarray(background, dtype=np.uint8)[None]])

    n = width * height
    if len(mesh_of_geometry) == 1:
        depth, geometry_id, primitive = np.full(n, np.inf, np.float32), np.zeros(n, np.int64), np.full(n, -1)
    else:
        hits = scene.cast_rays(o3d.core.Tensor.from_numpy(rays))
        depth = hits["t_hit"].numpy()
        geometry_id = np.minimum(hits["geometry_ids"].numpy(), len(mesh_of_geometry) - 1).astype(np.int64)
        primitive = hits["primitive_ids"].numpy().astype(np.int64)
        primitive[geometry_id == len(mesh_of_geometry) - 1] = -1
    face = np.where(primitive >= 0, face_offsets[geometry_id] + primitive, len(face_rgb) - 1)
    return Render(
        rgb=face_rgb[face].reshape(height, width, 3),
        depth=depth.reshape(height, width),
        instance=mesh_of_geometry[geometry_id].reshape(height, width),
        primitive=primitive.astype(np.int32).reshape(height, width),
    )


def silhouettes(meshes: Sequence[Mesh | tuple], K, T_camera_map, width: int, height: int, *, distortion=None,
                distortion_model: str | None = None) -> np.ndarray:
    """Pixels (M, H, W) bool each mesh covers on its own, ignoring the other meshes.

    Any-hit ray queries: the cost does not grow with how badly triangles overlap, so a garbage mesh
    (e.g. from untrained weights) whose triangles span the image is as quick as a body. With
    :func:`render`'s instance map this gives visible fractions: ``(instance == i).sum() /
    silhouettes[i].sum()``.

    Args:
        meshes: as for :func:`render` (colours are not used; a ``(vertices, faces)`` pair works too).
        K, T_camera_map, width, height, distortion, distortion_model: as for :func:`render`.
    """
    T = geometry.check_pose(T_camera_map, "T_camera_map")
    width, height = _check_size(width, height)
    rays = _calibration_rays(K, width, height, distortion, distortion_model)[1]
    out = np.zeros((len(meshes), height, width), dtype=bool)
    for i, mesh in enumerate(meshes):
        try:
            parts = tuple(mesh)
        except TypeError:
            raise InputError(f"meshes[{i}]: expected (vertices, faces) or (vertices, faces, colors)") from None
        vertices, faces, _ = _check_mesh(i, parts + ((0, 0, 0),) if len(parts) == 2 else parts)
        if len(faces) == 0:
            continue
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(geometry.transform_points(T, vertices).astype(np.float32)),
                            o3d.core.Tensor(faces.astype(np.uint32)))
        out[i] = scene.test_occlusions(o3d.core.Tensor.from_numpy(rays)).numpy().reshape(height, width)
    return out
