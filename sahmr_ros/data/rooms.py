"""Procedural rooms: the one generator behind the synthetic data (``sahmr synth``) and ``sahmr demo``.

Frame: the map frame (REP-103), metres, z up. The floor is the plane z = 0 over the rectangle
x in [-size_x / 2, size_x / 2], y in [-size_y / 2, size_y / 2]; walls (some sides open) stand on
its edges, ``WALL_THICKNESS_M`` thick, outside it. Furniture (chairs, stools, sofas, beds, tables,
desks, counters, steps; :mod:`sahmr_ros.data.furniture`) is placed by a 2-D layout with rejection:
footprints never overlap each other or each other's clearance, and leave free floor.

Everything is built from yaw-rotated boxes (:mod:`sahmr_ros.data.boxes`), and the same boxes give

* a triangle mesh with a colour and a semantic label per face (closed per box), for rendering;
* the signed distance field (:meth:`Room.sdf`, :meth:`Room.sdf_grid`): the exact distance to the
  boxes, with the floor as the half-space z < 0; negative inside furniture, below the floor and
  inside walls;
* the scan (:meth:`Room.scene_cloud`): the visible surfaces sampled, then voxelised at 2 cm as
  ``sahmr_ros.scene.Scene`` does, one point per occupied voxel at its centre (so the cloud is a
  fixed point of the Scene's voxelisation), optionally with noise and holes;
* the :class:`Support` rectangles people use (floor, seats, backrests, beds, tops, walls, steps).

``make_room(seed)`` is deterministic: the same seed gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from sahmr_ros.constants import SCENE_PITCH_M
from sahmr_ros.data import furniture as F
from sahmr_ros.data.boxes import (NUM_SIDES, TRIANGLE_SIDES, BoxArrays, box_faces, box_mesh, box_sdf,
                                  box_sdf_on_grid, yaw_matrix)
from sahmr_ros.errors import InputError
from sahmr_ros.evaluation.metrics import SDFGrid
from sahmr_ros.geometry import voxel_centers, voxelize

__all__ = ["DEMO_ROOM_SEED", "Furniture", "Lighting", "Room", "Support", "make_room"]

ROOM_SIZE_X_M = (3.0, 8.0)
ROOM_SIZE_Y_M = (3.0, 7.0)
WALL_HEIGHT_M = (2.4, 3.0)
WALL_THICKNESS_M = 0.2  # walls are solid slabs this thick behind the wall plane
OPEN_SIDE_PROBABILITY = 0.25  # each side of the room is open (no wall) with this probability
MAX_OPEN_SIDES = 2
WALL_GAP_M = 0.01  # wall furniture stands this far from the wall
MAX_FOOTPRINT_SHARE = 0.4  # furniture footprints cover at most this share of the floor
PLACEMENT_TRIES = 40  # rejection-sampling tries per piece of furniture
TILE_SIZE_M = (0.3, 0.8)  # square floor tiles
PLANK_SIZE_M = ((0.12, 0.25), (0.8, 1.4))  # or wooden planks (width, length)
SIDE_SHADE = (0.92, 1.08)  # each box side's brightness varies in this range (textured look)
VISIBLE_EPS_M = 1e-6  # a surface sample this close to (or inside) another solid is hidden
SDF_GRID_SPACING_M = 0.05
SDF_GRID_MARGIN_M = 0.1
DEMO_ROOM_SEED = 1  # ``sahmr demo``'s room
SIDES = ("-x", "+x", "-y", "+y")
_SIDE_NORMALS = {"-x": (1.0, 0.0), "+x": (-1.0, 0.0), "-y": (0.0, 1.0), "+y": (0.0, -1.0)}  # into the room


@dataclass(frozen=True)
class Support:
    """A rectangle of the room a person can use (map frame, metres).

    Attributes:
        kind: one of ``furniture.SUPPORT_KINDS`` (floor, seat, backrest, bed, table_top, counter_top,
            wall, step).
        label: semantic label of the surface (``furniture.LABEL_*``).
        center: (3,) centre of the rectangle.
        axis_u, axis_v: (3,) unit in-plane axes; seats: u = the facing direction, v = across;
            beds: u from head to foot; backrests and walls: u horizontal, v = +z.
        half_extents: (2,) half sizes along u and v.
        normal: (3,) unit outward normal (+z for horizontal surfaces, into the room for walls).
        facing: (3,) unit horizontal direction a seated person faces (seats), zeros otherwise.
        backrest: index of the seat's backrest in ``Room.supports``, -1 if none.
        item: index of the furniture in ``Room.furniture``, -1 for the floor and walls.
    """

    kind: str
    label: int
    center: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    half_extents: np.ndarray
    normal: np.ndarray
    facing: np.ndarray
    backrest: int = -1
    item: int = -1

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """(N,) whether points (N, 3) project inside the rectangle shrunk by ``margin`` metres."""
        d = np.asarray(points, dtype=np.float64).reshape(-1, 3) - self.center
        return ((np.abs(d @ self.axis_u) <= self.half_extents[0] - margin)
                & (np.abs(d @ self.axis_v) <= self.half_extents[1] - margin))


@dataclass(frozen=True)
class Furniture:
    """A placed piece of furniture (map frame, metres).

    Attributes:
        name: ``"chair"``, ``"sofa"``, ... (``furniture.BUILDERS``).
        center: (2,) footprint centre; yaw: radians about +z (its front is local +x).
        half_size: (2,) half footprint along local x and y.
        boxes: indices of its boxes in ``Room.boxes``.
    """

    name: str
    center: np.ndarray
    yaw: float
    half_size: np.ndarray
    boxes: np.ndarray


@dataclass(frozen=True)
class Lighting:
    """Lighting for the renderer (the fields of ``sahmr_ros.visualization.render.Light``).

    Attributes:
        direction_map: (3,) unit direction the light travels in the map frame (downwards, z < 0).
        ambient: share of the face colour lit regardless of orientation, in [0, 1].
        intensity: scale of the directional (Lambert) term.
    """

    direction_map: tuple[float, float, float]
    ambient: float
    intensity: float


@dataclass(frozen=True)
class Room:
    """A procedural room (map frame, metres, z up); built by :func:`make_room`.

    Attributes:
        seed: the generator's seed.
        size: (2,) floor extent along x and y; the floor is centred on the origin.
        wall_height: metres.
        open_sides: sides without a wall, among ``"-x"``, ``"+x"``, ``"-y"``, ``"+y"``.
        boxes: every solid (walls and furniture) as boxes; box_labels (B,) int64 semantic labels;
            box_colors (B, 3) uint8 base colours; box_items (B,) furniture index, -1 for walls.
        furniture: the placed pieces.
        supports: where people can be (see :class:`Support`); ``supports[0]`` is the floor.
        lighting: for the renderer.
        mesh_vertices: (V, 3) float64; mesh_faces: (F, 3) int64; face_colors: (F, 3) uint8 RGB;
            face_labels: (F,) int64 semantic labels (``furniture.LABEL_NAMES``); face_boxes: (F,)
            int64 box of each face, -1 for the floor tiles.
    """

    seed: int
    size: np.ndarray
    wall_height: float
    open_sides: tuple[str, ...]
    boxes: BoxArrays
    box_labels: np.ndarray
    box_colors: np.ndarray
    box_items: np.ndarray
    furniture: tuple[Furniture, ...]
    supports: tuple[Support, ...]
    lighting: Lighting
    mesh_vertices: np.ndarray
    mesh_faces: np.ndarray
    face_colors: np.ndarray
    face_labels: np.ndarray
    face_boxes: np.ndarray

    def supports_of_kind(self, *kinds: str) -> list[int]:
        """Return the indices into ``supports`` of the given kinds."""
        return [i for i, s in enumerate(self.supports) if s.kind in kinds]

    def sdf(self, points, cutoff: float | None = None) -> np.ndarray:
        """Signed distance to the room's solids (floor half-space z < 0, walls, furniture).

        Exact outside the solids; inside, the depth below the nearest face of the deepest solid.

        Args:
            points: (N, 3) map frame, metres.
            cutoff: if given, boxes farther than this from the points' bounding box are skipped
                (faster): values below ``cutoff`` stay exact, larger ones are only ``>= cutoff``.

        Returns:
            (N,) float64 metres, negative inside furniture, below the floor and inside walls.
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise InputError(f"points: expected shape (N, 3), got {pts.shape}")
        boxes = self.boxes
        if cutoff is not None and len(pts):
            lo, hi = _box_aabbs(self)
            near = ((lo <= pts.max(axis=0) + cutoff) & (hi >= pts.min(axis=0) - cutoff)).all(axis=1)
            boxes = BoxArrays(boxes.centers[near], boxes.half_extents[near], boxes.yaws[near])
        return np.minimum(pts[:, 2], box_sdf(boxes, pts).min(axis=1, initial=np.inf))

    def sdf_grid(self, spacing: float = SDF_GRID_SPACING_M, margin: float = SDF_GRID_MARGIN_M) -> SDFGrid:
        """Sample the SDF on a regular grid in the layout of ``evaluation.metrics.SDFGrid``.

        The grid spans the floor rectangle and 0..wall_height, grown by ``margin`` on every side;
        node (i, j, k) lies at ``bounds_min + (i, j, k) * spacing`` exactly (axes [x, y, z]).

        Args:
            spacing: node spacing, metres (> 0).
            margin: metres added around the room (>= 0; below WALL_THICKNESS_M, nodes behind a
                wall are inside it).
        """
        if not spacing > 0 or not margin >= 0:
            raise InputError(f"spacing / margin: expected > 0 / >= 0 metres, got {spacing} / {margin}")
        lo = np.array([-self.size[0] / 2, -self.size[1] / 2, 0.0]) - margin
        extent = np.array([self.size[0], self.size[1], self.wall_height]) + 2 * margin
        shape = np.ceil(extent / spacing - 1e-9).astype(int) + 1
        hi = lo + (shape - 1) * spacing
        axes = tuple(lo[a] + spacing * np.arange(shape[a]) for a in range(3))
        values = np.broadcast_to(axes[2].astype(np.float32), tuple(shape)).copy()  # the floor: sdf = z
        return SDFGrid(box_sdf_on_grid(self.boxes, axes, values), lo, hi)

    def scene_cloud(self, pitch: float = SCENE_PITCH_M, noise_m: float = 0.0, hole_fraction: float = 0.0,
                    seed: int | None = None) -> np.ndarray:
        """Return the room as a robot's map holds it: visible surfaces sampled, then voxelised.

        Surfaces hidden inside or against another solid (a sofa's back against the wall, a leg
        under a seat, the floor under furniture) are not sampled. Axis-aligned faces are sampled
        once per voxel they cross; turned faces every ``pitch / 2``. Gaussian noise (``noise_m``,
        metres, per coordinate) moves the samples before voxelisation; holes (round patches, radius
        0.1 to 0.4 m) then remove about ``hole_fraction`` of the voxels.

        Args:
            pitch: voxel size, metres (SA-HMR: 0.02).
            noise_m: standard deviation of the sample noise, metres.
            hole_fraction: share of the points to remove, in [0, 1).
            seed: seed of the noise and holes (``None``: the room's seed).

        Returns:
            (M, 3) float32 map frame: one point per occupied voxel ``[k pitch, (k + 1) pitch)``, at
            its centre, sorted by voxel.
        """
        if not pitch > 0 or not noise_m >= 0 or not 0 <= hole_fraction < 1:
            raise InputError(f"pitch > 0, noise_m >= 0, 0 <= hole_fraction < 1 expected, got {pitch}, "
                             f"{noise_m}, {hole_fraction}")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        samples = _visible_samples(self, pitch)
        if noise_m > 0:
            samples = samples + rng.normal(0.0, noise_m, samples.shape)
        coords, _ = voxelize(samples, pitch)
        points = voxel_centers(coords, pitch).astype(np.float32)
        if hole_fraction > 0 and len(points):
            points = _punch_holes(points, hole_fraction, rng)
        return points


def _punch_holes(points: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    tree = cKDTree(points)
    keep = np.ones(len(points), bool)
    while (~keep).mean() < fraction:
        centre = points[rng.integers(len(points))]
        keep[tree.query_ball_point(centre, rng.uniform(0.1, 0.4))] = False
    return points[keep]


# --- sampling --------------------------------------------------------------------------------------

def _rectangle_samples(origin, u, v, pitch: float) -> np.ndarray:
    """Sample the rectangle ``origin + s u + t v``: one per voxel column when axis-aligned."""
    lu, lv = np.linalg.norm(u), np.linalg.norm(v)
    aligned = all(np.count_nonzero(np.abs(w) > 1e-12) == 1 for w in (u, v))
    if aligned:
        # Voxel-centre coordinates clipped to the face: every voxel the face crosses, once.
        a, b = int(np.argmax(np.abs(u))), int(np.argmax(np.abs(v)))
        grids = []
        for axis in (a, b):
            lo = min(origin[axis], origin[axis] + u[axis] + v[axis])
            hi = max(origin[axis], origin[axis] + u[axis] + v[axis])
            k = np.arange(np.floor(lo / pitch), np.floor(hi / pitch) + 1)
            grids.append(np.clip((k + 0.5) * pitch, lo, hi))
        ga, gb = np.meshgrid(*grids, indexing="ij")
        pts = np.repeat(np.asarray(origin, np.float64)[None], ga.size, axis=0)
        pts[:, a], pts[:, b] = ga.ravel(), gb.ravel()
        return pts
    s = np.linspace(0.0, 1.0, int(np.ceil(lu / (pitch / 2))) + 1)
    t = np.linspace(0.0, 1.0, int(np.ceil(lv / (pitch / 2))) + 1)
    ss, tt = np.meshgrid(s, t, indexing="ij")
    return origin + ss.reshape(-1, 1) * u + tt.reshape(-1, 1) * v


def _box_aabbs(room: Room) -> tuple[np.ndarray, np.ndarray]:
    corners = box_mesh(room.boxes)[0].reshape(-1, 8, 3)
    return corners.min(axis=1), corners.max(axis=1)


def _hidden(room: Room, pts: np.ndarray, skip_box: int, aabb, check_floor: bool) -> np.ndarray:
    """Which samples lie inside or on another solid (within ``VISIBLE_EPS_M``)."""
    hidden = pts[:, 2] <= VISIBLE_EPS_M if check_floor else np.zeros(len(pts), bool)
    lo, hi = pts.min(axis=0) - VISIBLE_EPS_M, pts.max(axis=0) + VISIBLE_EPS_M
    near = np.nonzero(((aabb[0] <= hi) & (aabb[1] >= lo)).all(axis=1))[0]
    for b in near[near != skip_box]:
        cand = np.nonzero(((pts >= aabb[0][b] - VISIBLE_EPS_M) & (pts <= aabb[1][b] + VISIBLE_EPS_M)).all(axis=1))[0]
        if len(cand):
            c, s = np.cos(room.boxes.yaws[b]), np.sin(room.boxes.yaws[b])
            d = pts[cand] - room.boxes.centers[b]
            local = np.abs(np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1))
            hidden[cand[(local <= room.boxes.half_extents[b] + VISIBLE_EPS_M).all(axis=1)]] = True
    return hidden


def _visible_samples(room: Room, pitch: float) -> np.ndarray:
    aabb = _box_aabbs(room)
    hx, hy = room.size / 2
    chunks = []
    floor = _rectangle_samples(np.array([-hx, -hy, 0.0]), np.array([2 * hx, 0, 0]), np.array([0, 2 * hy, 0]),
                               pitch)
    chunks.append(floor[~_hidden(room, floor, -1, aabb, check_floor=False)])
    for b in range(len(room.boxes)):
        center, half, yaw = room.boxes.centers[b], room.boxes.half_extents[b], room.boxes.yaws[b]
        for side in range(NUM_SIDES):
            origin, u, v, normal = box_faces(center, half, yaw, side)
            if room.box_items[b] < 0 and not _faces_room(origin + (u + v) / 2, normal, room):
                continue  # the outside and the top of a wall: never seen from the room
            pts = _rectangle_samples(origin, u, v, pitch)
            chunks.append(pts[~_hidden(room, pts, b, aabb, check_floor=True)])
    return np.concatenate(chunks, axis=0)


def _faces_room(face_center: np.ndarray, normal: np.ndarray, room: Room) -> bool:
    """Whether a wall side is the wall's inner face (its normal points to the room's centre)."""
    return abs(normal[2]) < 0.5 and float(normal[:2] @ -face_center[:2]) > 0


# --- layout ----------------------------------------------------------------------------------------

@dataclass
class _Footprint:
    center: np.ndarray  # (2,)
    yaw: float
    half: np.ndarray  # (2,)
    keepout_center: np.ndarray
    keepout_half: np.ndarray
    parent: int = -1  # a tucked chair's table (exempt from each other's keep-out)


def _footprint(item: F.Item, center: np.ndarray, yaw: float, parent: int = -1) -> _Footprint:
    front, back, sides = item.clearance
    rot = yaw_matrix(yaw)[:2, :2]
    half = np.asarray(item.half_size, dtype=np.float64)
    keep_half = half + [(front + back) / 2, sides]
    keep_center = center + rot @ np.array([(front - back) / 2, 0.0])
    return _Footprint(np.asarray(center, np.float64), yaw, half, keep_center, keep_half, parent)


def _overlap(c1, yaw1, h1, c2, yaw2, h2) -> bool:
    """Whether two turned rectangles overlap (separating axis test)."""
    r1, r2 = yaw_matrix(yaw1)[:2, :2], yaw_matrix(yaw2)[:2, :2]
    d = np.asarray(c2) - np.asarray(c1)
    for axis in (*r1.T, *r2.T):
        radius = np.abs(axis @ r1) @ h1 + np.abs(axis @ r2) @ h2
        if abs(d @ axis) >= radius:
            return False
    return True


def _fits(fp: _Footprint, placed: list[_Footprint], room_half: np.ndarray, index_parent: int) -> bool:
    corners = fp.center + (yaw_matrix(fp.yaw)[:2, :2] @ (np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * fp.half).T).T
    if (np.abs(corners) > room_half - WALL_GAP_M + 1e-9).any():
        return False
    for i, other in enumerate(placed):
        if _overlap(fp.center, fp.yaw, fp.half, other.center, other.yaw, other.half):
            return False
        if i == index_parent or other.parent == index_parent >= 0:
            continue  # a tucked chair sits in its table's clearance, and next to its siblings
        if (_overlap(fp.center, fp.yaw, fp.half, other.keepout_center, other.yaw, other.keepout_half)
                or _overlap(fp.keepout_center, fp.yaw, fp.keepout_half, other.center, other.yaw, other.half)):
            return False
    return True


def _propose(item: F.Item, rng, room_half, walls: list[str]) -> tuple[np.ndarray, float] | None:
    if item.against_wall:
        if not walls:
            return None
        side = walls[rng.integers(len(walls))]
        normal = np.array(_SIDE_NORMALS[side])
        yaw = float(np.arctan2(normal[1], normal[0]))
        along = np.array([-normal[1], normal[0]])
        wall_dist = room_half @ np.abs(normal)
        span = room_half @ np.abs(along) - item.half_size[1] - WALL_GAP_M
        if span <= 0:
            return None
        center = -normal * (wall_dist - WALL_GAP_M - item.half_size[0]) + along * rng.uniform(-span, span)
        return center, yaw
    yaw = float(rng.integers(4) * np.pi / 2 if rng.random() < 0.5 else rng.uniform(-np.pi, np.pi))
    radius = float(np.hypot(*item.half_size))
    span = room_half - radius - WALL_GAP_M
    if (span <= 0).any():
        return None
    return rng.uniform(-span, span), yaw


def _propose_tucked(chair: F.Item, table: _Footprint, rng, only_front: bool) -> tuple[np.ndarray, float]:
    side = 0 if only_front else int(rng.integers(4))  # 0 +x, 1 -x, 2 +y, 3 -y of the table
    local_normal = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]][side])
    table_extent = table.half @ np.abs(local_normal)
    lateral_extent = table.half @ np.abs(local_normal[::-1])
    gap = rng.uniform(0.02, 0.2)
    slack = max(lateral_extent - chair.half_size[1], 0.0)
    local = local_normal * (table_extent + gap + chair.half_size[0])
    local += local_normal[::-1] * rng.uniform(-slack, slack)
    rot = yaw_matrix(table.yaw)[:2, :2]
    facing = rot @ -local_normal
    return table.center + rot @ local, float(np.arctan2(facing[1], facing[0]))


def _plan(rng: np.random.Generator) -> list[tuple[str, int]]:
    """Which furniture to try, in placement order: (name, number of chairs tucked at it)."""
    plan = []
    for name, p in (("bed", 0.4), ("sofa", 0.55), ("counter", 0.4)):
        if rng.random() < p:
            plan.append((name, 0))
    if rng.random() < 0.45:
        plan.append(("desk", int(rng.random() < 0.7)))
    if rng.random() < 0.75:
        plan.append(("table", int(rng.choice([0, 1, 2, 2, 3]))))
    plan += [("chair", 0)] * int(rng.integers(0, 3)) + [("stool", 0)] * int(rng.integers(0, 3))
    if rng.random() < 0.35:
        plan.append(("step", 0))
    if not any(name in ("chair", "sofa") or tucked for name, tucked in plan):
        plan.append(("chair", 0))  # always a seat with a backrest
    return plan


def _layout(rng, room_half: np.ndarray, walls: list[str]) -> list[tuple[F.Item, _Footprint]]:
    placed: list[tuple[F.Item, _Footprint]] = []
    budget = MAX_FOOTPRINT_SHARE * 4 * room_half[0] * room_half[1]
    for name, tucked in _plan(rng):
        item = F.BUILDERS[name](rng)
        fp = None
        for _ in range(PLACEMENT_TRIES):
            proposal = _propose(item, rng, room_half, walls)
            if proposal is None:
                break
            candidate = _footprint(item, *proposal)
            if _fits(candidate, [p for _, p in placed], room_half, -1):
                fp = candidate
                break
        area = 4 * item.half_size[0] * item.half_size[1]
        if fp is None or area > budget:
            continue
        budget -= area
        placed.append((item, fp))
        parent = len(placed) - 1
        for _ in range(tucked):
            chair = F.chair(rng)
            for _ in range(PLACEMENT_TRIES):
                candidate = _footprint(chair, *_propose_tucked(chair, fp, rng, name == "desk"), parent=parent)
                if _fits(candidate, [p for _, p in placed], room_half, parent):
                    placed.append((chair, candidate))
                    budget -= 4 * chair.half_size[0] * chair.half_size[1]
                    break
    return placed


# --- assembly --------------------------------------------------------------------------------------

def _to_map(v, rot, shift=None) -> np.ndarray:
    out = rot @ np.asarray(v, dtype=np.float64)
    return out if shift is None else out + shift


def _floor_tiles(rng, room_half) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Floor quads (2 triangles each) with per-tile colour: square tiles or planks."""
    if rng.random() < 0.5:
        size = np.full(2, rng.uniform(*TILE_SIZE_M))
        palette = F.STONES if rng.random() < 0.5 else F.PAINTS
        colors = [F._pick(rng, palette), F._pick(rng, palette)]
    else:
        size = np.array([rng.uniform(*PLANK_SIZE_M[1]), rng.uniform(*PLANK_SIZE_M[0])])
        colors = [F._pick(rng, F.WOODS)] * 2
    if rng.random() < 0.5:
        size = size[::-1]
    edges = [np.unique(np.clip(np.arange(-h, h + s, s), -h, h)) for h, s in zip(room_half, size)]
    x0, y0 = np.meshgrid(edges[0][:-1], edges[1][:-1], indexing="ij")
    x1, y1 = np.meshgrid(edges[0][1:], edges[1][1:], indexing="ij")
    i, j = np.meshgrid(np.arange(x0.shape[0]), np.arange(x0.shape[1]), indexing="ij")
    x0, y0, x1, y1, parity = x0.ravel(), y0.ravel(), x1.ravel(), y1.ravel(), ((i + j) % 2).ravel()
    zeros = np.zeros_like(x0)
    quads = np.stack([np.stack([x0, y0, zeros], -1), np.stack([x1, y0, zeros], -1), np.stack([x1, y1, zeros], -1),
                      np.stack([x0, y1, zeros], -1)], axis=1)  # (T, 4, 3), counter-clockwise from above
    base = 4 * np.arange(len(quads))[:, None]
    faces = np.concatenate([base + [0, 1, 2], base + [0, 2, 3]], axis=1).reshape(-1, 3)
    tile_colors = np.array(colors, np.float64)[parity] * rng.uniform(0.94, 1.06, (len(quads), 1))
    face_colors = np.repeat(np.clip(np.round(tile_colors), 0, 255).astype(np.uint8), 2, axis=0)
    return quads.reshape(-1, 3), faces, face_colors


def _lighting(rng) -> Lighting:
    azimuth, elevation = rng.uniform(-np.pi, np.pi), rng.uniform(np.deg2rad(30), np.deg2rad(80))
    direction = (-np.cos(elevation) * np.cos(azimuth), -np.cos(elevation) * np.sin(azimuth), -np.sin(elevation))
    return Lighting(tuple(float(d) for d in direction), float(rng.uniform(0.25, 0.55)), float(rng.uniform(0.8, 1.2)))


def _wall_boxes(room_half, height, walls) -> tuple[list, list[Support]]:
    boxes, supports = [], []
    t = WALL_THICKNESS_M
    for side in walls:
        normal = np.array(_SIDE_NORMALS[side])
        axis = int(np.argmax(np.abs(normal)))
        half = np.empty(3)
        center = np.zeros(3)
        center[axis] = -normal[axis] * (room_half[axis] + t / 2)
        half[axis] = t / 2
        half[1 - axis] = room_half[1 - axis] + (t if axis == 0 else 0.0)  # x walls cover the corners
        center[2], half[2] = height / 2, height / 2
        boxes.append((center, half, 0.0))
        face = center.copy()
        face[axis] = -normal[axis] * room_half[axis]
        along = np.zeros(3)
        along[1 - axis] = 1.0
        supports.append(Support(F.KIND_WALL, F.LABEL_WALL, face, along, np.array([0.0, 0.0, 1.0]),
                                np.array([room_half[1 - axis], height / 2]), np.array([*normal, 0.0]), np.zeros(3)))
    return boxes, supports


def make_room(seed: int, size: tuple[float, float] | None = None, wall_height: float | None = None,
              open_sides: tuple[str, ...] | None = None) -> Room:
    """Build a random room; the same arguments give the same room, byte for byte.

    Args:
        seed: seed of everything random (sizes, walls, furniture, materials, lighting).
        size: floor extent (x, y) in metres; default random in ``ROOM_SIZE_X_M`` x ``ROOM_SIZE_Y_M``.
        wall_height: metres; default random in ``WALL_HEIGHT_M``.
        open_sides: sides without a wall (subset of ``SIDES``); default: each side open with
            ``OPEN_SIDE_PROBABILITY``, at most ``MAX_OPEN_SIDES``.

    Returns:
        The room (map frame, z up, floor centred on the origin); about 10 ms to 0.1 s.
    """
    rng = np.random.default_rng(seed)
    sx, sy = rng.uniform(*ROOM_SIZE_X_M), rng.uniform(*ROOM_SIZE_Y_M)
    height = rng.uniform(*WALL_HEIGHT_M)
    drawn = [s for s in SIDES if rng.random() < OPEN_SIDE_PROBABILITY][:MAX_OPEN_SIDES]
    size = np.array([sx, sy] if size is None else size, dtype=np.float64)
    height = float(height if wall_height is None else wall_height)
    open_sides = tuple(drawn if open_sides is None else open_sides)
    if size.shape != (2,) or not (size > 0.5).all() or not height > 0 or set(open_sides) - set(SIDES):
        raise InputError(f"size / wall_height / open_sides: expected (2,) > 0.5 m, > 0 m and a subset of {SIDES}, "
                         f"got {size}, {height}, {open_sides}")
    room_half = size / 2
    walls = [s for s in SIDES if s not in open_sides]

    wall_boxes, supports = _wall_boxes(room_half, height, walls)
    wall_color = F._pick(rng, F.PAINTS[:1] + F.LINENS)
    centers, halves, yaws, labels, colors, items = [], [], [], [], [], []
    for center, half, yaw in wall_boxes:
        centers.append(center), halves.append(half), yaws.append(yaw)
        labels.append(F.LABEL_WALL), colors.append(wall_color), items.append(-1)
    floor = Support(F.KIND_FLOOR, F.LABEL_FLOOR, np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]),
                    room_half.copy(), np.array([0, 0, 1.0]), np.zeros(3))
    supports = [floor] + supports

    placed = []
    for index, (item, fp) in enumerate(_layout(rng, room_half, walls)):
        rot, shift = yaw_matrix(fp.yaw), np.array([*fp.center, 0.0])
        first = len(centers)
        for box in item.boxes:
            centers.append(_to_map(box.center, rot, shift)), halves.append(np.array(box.half_extents))
            yaws.append(fp.yaw), labels.append(box.label), colors.append(box.color), items.append(index)
        offset = len(supports)
        for s in item.supports:
            supports.append(Support(s.kind, s.label, _to_map(s.center, rot, shift), _to_map(s.axis_u, rot),
                                    _to_map(s.axis_v, rot), np.array(s.half_extents), _to_map(s.normal, rot),
                                    _to_map(s.facing, rot), s.backrest + offset if s.backrest >= 0 else -1, index))
        placed.append(Furniture(item.name, fp.center, fp.yaw, fp.half, np.arange(first, len(centers))))

    boxes = BoxArrays(np.array(centers, np.float64).reshape(-1, 3), np.array(halves, np.float64).reshape(-1, 3),
                      np.array(yaws, np.float64))
    box_colors = np.array(colors, np.uint8).reshape(-1, 3)
    tile_vertices, tile_faces, tile_colors = _floor_tiles(rng, room_half)
    vertices, faces = box_mesh(boxes)
    shade = rng.uniform(*SIDE_SHADE, (len(boxes), NUM_SIDES))[:, TRIANGLE_SIDES]  # (B, 12)
    face_colors = np.clip(np.round(box_colors[:, None, :] * shade[..., None]), 0, 255).astype(np.uint8)
    box_labels = np.array(labels, np.int64)
    room = Room(
        seed=int(seed), size=size, wall_height=height, open_sides=open_sides, boxes=boxes,
        box_labels=box_labels, box_colors=box_colors, box_items=np.array(items, np.int64),
        furniture=tuple(placed), supports=tuple(supports), lighting=_lighting(rng),
        mesh_vertices=np.concatenate([tile_vertices, vertices]),
        mesh_faces=np.concatenate([tile_faces, faces + len(tile_vertices)]),
        face_colors=np.concatenate([tile_colors, face_colors.reshape(-1, 3)]),
        face_labels=np.concatenate([np.full(len(tile_faces), F.LABEL_FLOOR), np.repeat(box_labels, 12)]),
        face_boxes=np.concatenate([np.full(len(tile_faces), -1), np.repeat(np.arange(len(boxes)), 12)]),
    )
    _freeze(room)
    return room


def _freeze(obj) -> None:
    """Make every numpy array reachable from the room's fields read-only."""
    for value in vars(obj).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
        elif isinstance(value, (BoxArrays, Lighting, Support, Furniture)):
            _freeze(value)
        elif isinstance(value, tuple):
            for v in value:
                if isinstance(v, (Support, Furniture)):
                    _freeze(v)
