"""A deterministic procedural room, standing in for a pre-scanned scene in the embedded demo.

Frame: the map frame (REP-103), metres, z up. The floor is the plane z = 0 over
x in [-3, 3], y in [-2.5, 2.5]; walls stand at x = -3, x = +3 and y = +2.5 (the y = -2.5 side is
open, where the robot enters). Furniture: a sofa against the back wall, a chair facing -y (towards
the open side) and a table.

The room is built from axis-aligned rectangles. The same rectangles give

* a triangle mesh with one colour per face, for rendering the demo's camera image, and
* a point cloud like SA-HMR's scanned scenes: the visible surfaces sampled densely and then
  voxelised at ``pitch`` (``constants.SCENE_PITCH_M`` = 2 cm): one point per occupied voxel, at the
  voxel centre. Voxels are the cells ``[k p, (k + 1) p)`` of ``sahmr_ros.geometry.voxelize``, so
  the cloud is a fixed point of ``sahmr_ros.scene.Scene``'s own 2 cm voxelisation. Horizontal
  support surfaces sit at odd centimetres (seat 0.45 m, sofa 0.43 m, table 0.75 m), i.e. at voxel
  centres, so their points keep the exact height; the floor (z = 0, a cell boundary) comes out at
  z = pitch / 2 = 1 cm.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sahmr_ros.constants import SCENE_PITCH_M
from sahmr_ros.errors import InputError
from sahmr_ros.geometry import voxel_centers, voxelize

# Room extent (map frame, metres).
ROOM_X_M = (-3.0, 3.0)
ROOM_Y_M = (-2.5, 2.5)
WALL_HEIGHT_M = 2.6
FLOOR_TILE_M = 0.5
CHAIR_SEAT_HEIGHT_M = 0.45
SOFA_SEAT_HEIGHT_M = 0.43
TABLE_HEIGHT_M = 0.75

_FLOOR_COLORS = ((196, 170, 130), (176, 150, 112))  # two-tone wooden tiles
_WALL_COLORS = {"back": (222, 214, 196), "side": (205, 210, 214)}
_CHAIR_COLOR = (150, 80, 50)
_SOFA_COLOR = (70, 100, 150)
_TABLE_COLOR = (120, 90, 60)


@dataclass(frozen=True)
class Anchor:
    """A named place in the room where a person can be put.

    Attributes:
        position: (3,) map frame, metres. For ``support == "floor"`` a point on the floor; for
            ``support == "seat"`` the centre of the seat's top surface.
        yaw: heading (radians about map +z, 0 = facing +x) a person using the place faces.
        support: ``"floor"`` (stand on it) or ``"seat"`` (sit on it).
    """

    position: np.ndarray
    yaw: float
    support: str


@dataclass(frozen=True)
class ProceduralRoom:
    """The demo's scene, as a mesh (for rendering) and as a voxelised point cloud (the "scan").

    Attributes:
        mesh_vertices: (V, 3) float64, map frame, metres.
        mesh_faces: (F, 3) int64 vertex indices.
        face_colors: (F, 3) uint8 RGB per face.
        points: (N, 3) float32, map frame: one point per occupied ``pitch`` voxel, at its centre.
        pitch: voxel size of ``points`` in metres.
        anchors: named places; see :func:`make_room` for the names.
    """

    mesh_vertices: np.ndarray
    mesh_faces: np.ndarray
    face_colors: np.ndarray
    points: np.ndarray
    pitch: float
    anchors: dict[str, Anchor] = field(default_factory=dict)


@dataclass(frozen=True)
class _Rect:
    """An axis-aligned rectangle ``origin + s * u + t * v``, s, t in [0, 1]."""

    origin: tuple[float, float, float]
    u: tuple[float, float, float]
    v: tuple[float, float, float]
    color: tuple[int, int, int]


def _box(lo, hi, color, *, bottom: bool = False, skip: tuple[str, ...] = ()) -> list[_Rect]:
    """Return the faces of the box ``lo``..``hi``; the bottom face only if ``bottom`` (it rests on something).

    ``skip`` names faces hidden against a wall: any of ``"-x", "+x", "-y", "+y"``.
    """
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    dx, dy, dz = x1 - x0, y1 - y0, z1 - z0
    faces = {
        "+z": _Rect((x0, y0, z1), (dx, 0, 0), (0, dy, 0), color),
        "-z": _Rect((x0, y0, z0), (dx, 0, 0), (0, dy, 0), color),
        "-x": _Rect((x0, y0, z0), (0, dy, 0), (0, 0, dz), color),
        "+x": _Rect((x1, y0, z0), (0, dy, 0), (0, 0, dz), color),
        "-y": _Rect((x0, y0, z0), (dx, 0, 0), (0, 0, dz), color),
        "+y": _Rect((x0, y1, z0), (dx, 0, 0), (0, 0, dz), color),
    }
    if not bottom:
        skip = skip + ("-z",)
    return [rect for name, rect in faces.items() if name not in skip]


def _shade(color, factor: float) -> tuple[int, int, int]:
    return tuple(int(round(min(255.0, c * factor))) for c in color)


def _floor_and_walls() -> list[_Rect]:
    (x0, x1), (y0, y1), h = ROOM_X_M, ROOM_Y_M, WALL_HEIGHT_M
    rects = []
    nx = int(round((x1 - x0) / FLOOR_TILE_M))
    ny = int(round((y1 - y0) / FLOOR_TILE_M))
    for i in range(nx):
        for j in range(ny):
            origin = (x0 + i * FLOOR_TILE_M, y0 + j * FLOOR_TILE_M, 0.0)
            color = _FLOOR_COLORS[(i + j) % 2]
            rects.append(_Rect(origin, (FLOOR_TILE_M, 0, 0), (0, FLOOR_TILE_M, 0), color))
    rects.append(_Rect((x0, y1, 0.0), (x1 - x0, 0, 0), (0, 0, h), _WALL_COLORS["back"]))
    rects.append(_Rect((x0, y0, 0.0), (0, y1 - y0, 0), (0, 0, h), _WALL_COLORS["side"]))
    rects.append(_Rect((x1, y0, 0.0), (0, y1 - y0, 0), (0, 0, h), _WALL_COLORS["side"]))
    return rects


def _chair(cx: float, cy: float) -> list[_Rect]:
    """Build a chair centred at (cx, cy) whose back is on its +y side (a sitter faces -y)."""
    half, leg, seat_t = 0.22, 0.04, 0.04
    top = CHAIR_SEAT_HEIGHT_M
    rects = _box((cx - half, cy - half, top - seat_t), (cx + half, cy + half, top), _CHAIR_COLOR,
                 bottom=True)
    for sx in (-1, 1):
        for sy in (-1, 1):
            lx = cx + sx * (half - leg / 2) - leg / 2
            ly = cy + sy * (half - leg / 2) - leg / 2
            rects += _box((lx, ly, 0.0), (lx + leg, ly + leg, top - seat_t), _shade(_CHAIR_COLOR, 0.8))
    back_color = _shade(_CHAIR_COLOR, 1.1)
    rects += _box((cx - half, cy + half - leg, top), (cx + half, cy + half, 0.92), back_color)
    return rects


def _sofa(x0: float, x1: float) -> list[_Rect]:
    """Build a sofa against the back wall between x0 and x1 (a sitter faces -y)."""
    y1 = ROOM_Y_M[1]
    back_t, arm_w = _SOFA_BACK_M, 0.16
    y0 = y1 - _SOFA_DEPTH_M
    seat = SOFA_SEAT_HEIGHT_M
    c = _SOFA_COLOR
    rects = _box((x0 + arm_w, y0, 0.0), (x1 - arm_w, y1 - back_t, seat), c, skip=("-x", "+x", "+y"))
    rects += _box((x0, y1 - back_t, 0.0), (x1, y1, 0.84), _shade(c, 0.85), skip=("+y",))
    rects += _box((x0, y0, 0.0), (x0 + arm_w, y1 - back_t, 0.6), _shade(c, 0.9))
    rects += _box((x1 - arm_w, y0, 0.0), (x1, y1 - back_t, 0.6), _shade(c, 0.9))
    return rects


def _table(cx: float, cy: float) -> list[_Rect]:
    hx, hy, top_t, leg = 0.6, 0.4, 0.04, 0.06
    top = TABLE_HEIGHT_M
    rects = _box((cx - hx, cy - hy, top - top_t), (cx + hx, cy + hy, top), _TABLE_COLOR, bottom=True)
    for sx in (-1, 1):
        for sy in (-1, 1):
            lx = cx + sx * (hx - 0.06) - leg / 2
            ly = cy + sy * (hy - 0.06) - leg / 2
            rects += _box((lx, ly, 0.0), (lx + leg, ly + leg, top - top_t), _shade(_TABLE_COLOR, 0.8))
    return rects


# Furniture layout (map frame). The demo camera stands near the open side and looks along +y.
_CHAIR_XY = (-0.7, 0.3)
_SOFA_X = (-2.8, -1.2)
_SOFA_DEPTH_M = 0.84  # wall to front edge
_SOFA_BACK_M = 0.2  # backrest thickness
_TABLE_XY = (1.7, 1.3)
_FLOOR_SPOT_XY = (0.7, 0.1)
_CAMERA_EYE = (0.0, -2.4, 1.3)


def _rects_to_mesh(rects: list[_Rect]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    o = np.array([r.origin for r in rects], dtype=np.float64)  # (R, 3)
    u = np.array([r.u for r in rects], dtype=np.float64)
    v = np.array([r.v for r in rects], dtype=np.float64)
    corners = np.stack([o, o + u, o + u + v, o + v], axis=1)  # (R, 4, 3)
    vertices = corners.reshape(-1, 3)
    base = 4 * np.arange(len(rects), dtype=np.int64)[:, None]
    faces = np.concatenate([base + [0, 1, 2], base + [0, 2, 3]], axis=1).reshape(-1, 3)
    colors = np.repeat(np.array([r.color for r in rects], dtype=np.uint8), 2, axis=0)
    return vertices, faces, colors


def _sample_rects(rects: list[_Rect], step: float) -> np.ndarray:
    """Regular samples at most ``step`` apart on every rectangle, edges included. (S, 3) float64."""
    chunks = []
    for r in rects:
        u, v = np.asarray(r.u, dtype=np.float64), np.asarray(r.v, dtype=np.float64)
        ns = int(np.ceil(np.linalg.norm(u) / step)) + 1
        nt = int(np.ceil(np.linalg.norm(v) / step)) + 1
        s, t = np.meshgrid(np.linspace(0.0, 1.0, ns), np.linspace(0.0, 1.0, nt), indexing="ij")
        chunks.append(np.asarray(r.origin) + s.reshape(-1, 1) * u + t.reshape(-1, 1) * v)
    return np.concatenate(chunks, axis=0)


def voxel_downsample(points: np.ndarray, pitch: float) -> np.ndarray:
    """Keep one point per occupied voxel, at the voxel centre.

    Voxel ``k`` (integer triple) is the cell ``[k pitch, (k + 1) pitch)`` (as
    ``sahmr_ros.geometry.voxelize``) with centre ``(k + 1/2) pitch``; the output is sorted by
    ``(kx, ky, kz)``, so it is deterministic.

    Args:
        points: (N, 3) any frame, metres.
        pitch: voxel edge length in metres, > 0.

    Returns:
        (M, 3) float64 voxel centres, M <= N.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"points: expected shape (N, 3), got {points.shape}")
    if not pitch > 0:
        raise InputError(f"pitch: expected a positive voxel size in metres, got {pitch}")
    if len(points) == 0:
        return np.zeros((0, 3))
    coords, _ = voxelize(points, pitch)
    return voxel_centers(coords, pitch)


def make_room(pitch: float = SCENE_PITCH_M) -> ProceduralRoom:
    """Build the demo room. Deterministic: the same call returns the same arrays.

    Anchors (all in the map frame):

    * ``seat_top_center``: centre of the chair's seat top (z = 0.45 m); a sitter faces -y.
    * ``sofa_seat_center``: centre of the sofa's seat cushion top (z = 0.43 m); faces -y.
    * ``floor_spot``: an open spot on the floor (the surface z = 0) in front of the camera; faces -y.
    * ``camera_eye``: where the demo camera stands, 1.3 m above the floor, about 3 m from the
      chair and the floor spot; ``yaw`` is the direction it looks (+y). ``support`` is ``"floor"``.

    Args:
        pitch: voxel size of the point cloud in metres (SA-HMR: 0.02).

    Returns:
        The room; about 2e5 points at the default pitch.
    """
    if not pitch > 0:
        raise InputError(f"pitch: expected a positive voxel size in metres, got {pitch}")
    rects = _floor_and_walls()
    rects += _sofa(*_SOFA_X)
    rects += _chair(*_CHAIR_XY)
    rects += _table(*_TABLE_XY)
    vertices, faces, colors = _rects_to_mesh(rects)
    # Samples at half the pitch hit every voxel an axis-aligned surface passes through.
    points = voxel_downsample(_sample_rects(rects, pitch / 2.0), pitch).astype(np.float32)

    face_minus_y = -np.pi / 2.0
    sofa_seat_y = ROOM_Y_M[1] - (_SOFA_DEPTH_M + _SOFA_BACK_M) / 2.0
    anchors = {
        "seat_top_center": Anchor(np.array([*_CHAIR_XY, CHAIR_SEAT_HEIGHT_M]), face_minus_y, "seat"),
        "sofa_seat_center": Anchor(
            np.array([sum(_SOFA_X) / 2.0, sofa_seat_y, SOFA_SEAT_HEIGHT_M]), face_minus_y, "seat"
        ),
        "floor_spot": Anchor(np.array([*_FLOOR_SPOT_XY, 0.0]), face_minus_y, "floor"),
        "camera_eye": Anchor(np.array(_CAMERA_EYE), np.pi / 2.0, "floor"),
    }
    return ProceduralRoom(
        mesh_vertices=vertices,
        mesh_faces=faces,
        face_colors=colors,
        points=points,
        pitch=float(pitch),
        anchors=anchors,
    )
