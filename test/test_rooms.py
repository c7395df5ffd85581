"""Tests of the procedural rooms (sahmr_ros.data.rooms): determinism, layout, SDF, scan cloud. CPU only.

The SDF and the cloud are checked against independent evaluations: Open3D's signed distance on each
box's closed mesh, Open3D's distance to the room mesh, point-in-convex-hull footprints (scipy).
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from scipy.spatial import Delaunay

from sahmr_ros.data import furniture as F
from sahmr_ros.data.rooms import (DEMO_ROOM_SEED, MAX_OPEN_SIDES, ROOM_SIZE_X_M, ROOM_SIZE_Y_M, WALL_HEIGHT_M,
                                  WALL_THICKNESS_M, make_room)
from sahmr_ros.errors import InputError
from sahmr_ros.evaluation.metrics import sample_sdf
from sahmr_ros.geometry import voxel_downsample
from sahmr_ros.scene import Scene

PITCH = 0.02
SEEDS = range(12)


@pytest.fixture(scope="module")
def rooms():
    return {seed: make_room(seed) for seed in SEEDS}


@pytest.fixture(scope="module")
def clouds(rooms):
    return {seed: rooms[seed].scene_cloud(PITCH) for seed in (0, 1, 5)}


def _digest(room, cloud=None) -> str:
    h = hashlib.sha256()
    arrays = [room.size, room.boxes.centers, room.boxes.half_extents, room.boxes.yaws, room.box_labels,
              room.box_colors, room.mesh_vertices, room.mesh_faces, room.face_colors, room.face_labels,
              room.face_boxes, np.array(room.lighting.direction_map)]
    for s in room.supports:
        arrays += [s.center, s.axis_u, s.axis_v, s.half_extents, s.normal, s.facing, np.array([s.backrest, s.item])]
    for a in arrays + ([cloud] if cloud is not None else []):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr((room.wall_height, room.open_sides, [s.kind for s in room.supports])).encode())
    return h.hexdigest()


def _open3d_box_sdf(room, points: np.ndarray) -> np.ndarray:
    """Min over the boxes' closed meshes of Open3D's signed distance, and z for the floor half-space."""
    o3d = pytest.importorskip("open3d")
    query = o3d.core.Tensor(points.astype(np.float32))
    out = points[:, 2].astype(np.float64).copy()
    for b in range(len(room.boxes)):
        faces = room.mesh_faces[room.face_boxes == b]
        used, local = np.unique(faces, return_inverse=True)
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(room.mesh_vertices[used].astype(np.float32)),
                            o3d.core.Tensor(local.reshape(-1, 3).astype(np.uint32)))
        out = np.minimum(out, scene.compute_signed_distance(query).numpy())
    return out


# --- determinism and ranges ------------------------------------------------------------------------

def test_same_seed_same_bytes_different_seeds_differ(rooms, clouds):
    again = make_room(1)
    assert _digest(again, again.scene_cloud(PITCH)) == _digest(rooms[1], clouds[1])
    assert len({_digest(rooms[s]) for s in SEEDS}) == len(SEEDS)
    # the noise and holes are seeded as well
    a, b = (rooms[0].scene_cloud(PITCH, noise_m=0.005, hole_fraction=0.1, seed=3) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_room_ranges_and_arrays(rooms):
    for seed, room in rooms.items():
        assert ROOM_SIZE_X_M[0] <= room.size[0] <= ROOM_SIZE_X_M[1]
        assert ROOM_SIZE_Y_M[0] <= room.size[1] <= ROOM_SIZE_Y_M[1]
        assert WALL_HEIGHT_M[0] <= room.wall_height <= WALL_HEIGHT_M[1]
        assert len(room.open_sides) <= MAX_OPEN_SIDES
        n_faces = len(room.mesh_faces)
        assert room.mesh_faces.dtype == np.int64 and room.mesh_faces.max() < len(room.mesh_vertices)
        assert room.face_colors.shape == (n_faces, 3) and room.face_colors.dtype == np.uint8
        assert room.face_labels.shape == (n_faces,) and set(room.face_labels) <= set(range(1, len(F.LABEL_NAMES)))
        assert (room.face_labels[room.face_boxes < 0] == F.LABEL_FLOOR).all()
        assert room.supports[0].kind == F.KIND_FLOOR
        assert any(s.kind == F.KIND_SEAT and s.backrest >= 0 for s in room.supports), seed
        assert np.isclose(np.linalg.norm(room.lighting.direction_map), 1.0) and room.lighting.direction_map[2] < 0
        for s in room.supports:
            assert s.kind in F.SUPPORT_KINDS
            for axis in (s.axis_u, s.axis_v, s.normal):
                assert np.isclose(np.linalg.norm(axis), 1.0)
            assert abs(s.axis_u @ s.axis_v) < 1e-12 and abs(s.axis_u @ s.normal) < 1e-12
            if s.kind == F.KIND_SEAT:
                np.testing.assert_allclose(s.facing, s.axis_u)
                assert s.backrest < 0 or room.supports[s.backrest].kind == F.KIND_BACKREST
            if s.kind in (F.KIND_SEAT, F.KIND_BED, F.KIND_TABLE_TOP, F.KIND_COUNTER_TOP, F.KIND_STEP):
                # the rectangle lies on the top face of a box of its label
                boxes = room.furniture[s.item].boxes
                tops = room.boxes.centers[boxes, 2] + room.boxes.half_extents[boxes, 2]
                assert np.isclose(tops[room.box_labels[boxes] == s.label], s.center[2]).any()
    with pytest.raises(InputError, match="open_sides"):
        make_room(0, open_sides=("north",))


def test_every_box_is_a_closed_outward_mesh(rooms):
    import trimesh

    room = rooms[1]
    for b in range(len(room.boxes)):
        mesh = trimesh.Trimesh(room.mesh_vertices, room.mesh_faces[room.face_boxes == b], process=True)
        assert mesh.is_watertight and mesh.is_winding_consistent
        assert mesh.volume == pytest.approx(8 * np.prod(room.boxes.half_extents[b]), rel=1e-9)


def test_fixed_layout_arguments():
    room = make_room(4, size=(5.0, 4.0), wall_height=2.5, open_sides=("-y",))
    assert tuple(room.size) == (5.0, 4.0) and room.wall_height == 2.5 and room.open_sides == ("-y",)
    assert len(room.supports_of_kind(F.KIND_WALL)) == 3


# --- layout ----------------------------------------------------------------------------------------

def test_furniture_does_not_overlap_and_leaves_free_floor(rooms):
    """Rasterise each piece's footprint (convex hull of its mesh, from scipy) on a 1 cm grid."""
    for seed, room in rooms.items():
        hx, hy = room.size / 2
        xs, ys = np.meshgrid(np.arange(-hx, hx, 0.01) + 0.005, np.arange(-hy, hy, 0.01) + 0.005, indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        cover = np.zeros(len(cells), np.int64)
        for index, piece in enumerate(room.furniture):
            faces = room.mesh_faces[np.isin(room.face_boxes, piece.boxes)]
            corners = room.mesh_vertices[np.unique(faces)]
            assert corners[:, 2].min() >= -1e-9  # on the floor, not below it
            inside = Delaunay(corners[:, :2]).find_simplex(cells) >= 0
            assert inside.any()
            # inside the room, clear of the walls
            assert (np.abs(corners[:, :2]) <= room.size / 2 + 1e-9).all(), (seed, piece.name)
            cover += inside
        assert cover.max() <= 1, f"room {seed}: furniture footprints overlap"
        assert (cover == 0).mean() > 0.5, f"room {seed}: less than half of the floor is free"


def test_tucked_chairs_face_their_table():
    found = 0
    for seed in range(30):
        room = make_room(seed)
        tops = [room.supports[i] for i in room.supports_of_kind(F.KIND_TABLE_TOP)]
        for s in room.supports:
            if s.label != F.LABEL_CHAIR_SEAT:
                continue
            for top in tops:
                ahead = s.center + 0.5 * s.facing
                if top.contains(ahead[None], margin=-0.05)[0]:
                    found += 1
    assert found >= 5  # chairs pushed to tables and desks, facing them


# --- SDF -------------------------------------------------------------------------------------------

def _piece(room, name):
    return next(p for p in room.furniture if p.name == name)


def test_sdf_at_hand_derived_points():
    room = make_room(1)  # sofa, desk, table, chairs, stool, step; walls on all four sides
    assert room.open_sides == ()
    # just above the centre of the table top: the height above it
    table = _piece(room, "table")
    top_box = table.boxes[room.box_labels[table.boxes] == F.LABEL_TABLE_TOP][0]
    c, h, yaw = room.boxes.centers[top_box], room.boxes.half_extents[top_box], room.boxes.yaws[top_box]
    top = c + [0.0, 0.0, h[2]]
    assert room.sdf((top + [0.0, 0.0, 0.05])[None])[0] == pytest.approx(0.05, abs=1e-12)
    # inside the top slab: minus the depth to the nearest face (the top or the bottom)
    assert room.sdf((c + [0, 0, 0.004])[None])[0] == pytest.approx(-(h[2] - 0.004), abs=1e-12)
    # off a top corner, diagonally: the Euclidean distance to the corner
    rot = np.array([[np.cos(yaw), -np.sin(yaw), 0.0], [np.sin(yaw), np.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    corner = c + rot @ (h * [1, -1, 1])
    point = corner + rot @ np.array([0.03, -0.02, 0.06])
    assert room.sdf(point[None])[0] == pytest.approx(np.sqrt(0.03 ** 2 + 0.02 ** 2 + 0.06 ** 2), abs=1e-12)
    # below the floor (at the room's centre no box reaches down): -depth
    assert room.sdf(np.array([[0.0, 0.0, -0.3]]))[0] == pytest.approx(-0.3, abs=1e-12)
    # behind the -x wall: minus the distance to its inner face; 1.5 m above the floor, in front of it: the distance
    x_wall = -room.size[0] / 2
    assert room.sdf(np.array([[x_wall - 0.05, 0.0, 1.5]]))[0] == pytest.approx(-0.05, abs=1e-12)
    assert room.sdf(np.array([[x_wall - WALL_THICKNESS_M - 0.1, 0.0, 1.5]]))[0] > 0  # past the slab
    # a point in free space at height h above the floor with nothing nearer: h
    free = np.array([[room.size[0] / 2 - 0.6, -room.size[1] / 2 + 0.6, 0.3]])
    assert room.sdf(free)[0] == pytest.approx(0.3, abs=1e-12)
    # inside the sofa's seat block, at its centre: minus its smallest half extent
    sofa = _piece(room, "sofa")
    seat = sofa.boxes[room.box_labels[sofa.boxes] == F.LABEL_SOFA_SEAT][0]
    assert room.sdf(room.boxes.centers[seat][None])[0] == pytest.approx(-room.boxes.half_extents[seat].min())


def test_sdf_matches_open3d_on_the_box_meshes(rooms):
    rng = np.random.default_rng(0)
    for seed in (0, 1, 7):
        room = rooms[seed]
        lo = np.array([-room.size[0] / 2 - 0.3, -room.size[1] / 2 - 0.3, -0.2])
        hi = np.array([room.size[0] / 2 + 0.3, room.size[1] / 2 + 0.3, room.wall_height + 0.3])
        points = rng.uniform(lo, hi, (3000, 3))
        # and points near the furniture surfaces, where the sign matters
        near = room.boxes.centers[rng.integers(len(room.boxes), size=2000)]
        points = np.concatenate([points, near + rng.normal(0, 0.1, near.shape)])
        expected = _open3d_box_sdf(room, points)
        got = room.sdf(points)
        np.testing.assert_allclose(got, expected, atol=2e-5)
        cut = room.sdf(points, cutoff=0.1)
        np.testing.assert_array_equal(cut[got < 0.1], got[got < 0.1])
        assert (cut[got >= 0.1] >= 0.1 - 1e-12).all()


def test_sdf_grid_layout(rooms):
    room = rooms[0]
    grid = room.sdf_grid(spacing=0.1, margin=0.1)
    np.testing.assert_allclose(grid.spacing, 0.1, atol=1e-12)
    np.testing.assert_allclose(grid.bounds_min, [-room.size[0] / 2 - 0.1, -room.size[1] / 2 - 0.1, -0.1])
    assert (grid.bounds_max >= [room.size[0] / 2 + 0.1 - 1e-9, room.size[1] / 2 + 0.1 - 1e-9,
                                room.wall_height + 0.1 - 1e-9]).all()
    nodes = grid.node_positions()
    rng = np.random.default_rng(1)
    idx = tuple(rng.integers(0, n, 4000) for n in grid.values.shape)
    np.testing.assert_allclose(grid.values[idx], room.sdf(nodes[idx]), atol=2e-6)
    # the official sampling (trilinear, align_corners) returns node values at the nodes
    np.testing.assert_allclose(sample_sdf(grid, nodes[idx][:200]), grid.values[idx][:200], atol=1e-5)
    assert grid.values[:, :, 0].max() < 0  # the layer below the floor
    with pytest.raises(InputError, match="spacing"):
        room.sdf_grid(spacing=0.0)


# --- scan cloud ------------------------------------------------------------------------------------

def test_cloud_is_a_fixed_point_of_the_scene_voxelisation(clouds):
    for cloud in clouds.values():
        assert cloud.dtype == np.float32 and cloud.shape[1] == 3
        cells = np.floor(cloud.astype(np.float64) / PITCH)
        np.testing.assert_allclose(cloud, (cells + 0.5) * PITCH, atol=1e-5)  # voxel centres
        assert len(np.unique(cells, axis=0)) == len(cloud)  # one point per voxel
        np.testing.assert_array_equal(voxel_downsample(cloud, PITCH), cloud)
        np.testing.assert_array_equal(Scene(cloud).points_map, cloud)


def test_cloud_lies_on_the_mesh_and_covers_the_free_floor(rooms, clouds):
    o3d = pytest.importorskip("open3d")
    rng = np.random.default_rng(2)
    for seed, cloud in clouds.items():
        room = rooms[seed]
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(room.mesh_vertices.astype(np.float32)),
                            o3d.core.Tensor(room.mesh_faces.astype(np.uint32)))
        sample = cloud[rng.choice(len(cloud), 5000, replace=False)]
        distance = scene.compute_distance(o3d.core.Tensor(sample)).numpy()
        assert distance.max() <= PITCH * np.sqrt(3) / 2 + 1e-5
        # hidden surfaces are not sampled: no point deep inside a solid
        assert room.sdf(cloud.astype(np.float64)).min() > -PITCH
        # the floor layer (z = 1 cm) holds the free floor: at least half of the floor's voxels
        floor = np.abs(cloud[:, 2] - PITCH / 2) < 1e-6
        assert floor.sum() > 0.5 * np.prod(room.size) / PITCH ** 2
        # a wall's inner face is there (walls exist on some side of every room)
        assert (cloud[:, 2] > 2.0).sum() > 1000


def test_cloud_noise_and_holes(rooms, clouds):
    room, clean = rooms[0], clouds[0]
    holed = room.scene_cloud(PITCH, hole_fraction=0.2, seed=1)
    assert 0.7 * len(clean) < len(holed) <= 0.8 * len(clean) + 0.02 * len(clean)
    assert len(np.intersect1d(holed.view("f4,f4,f4"), clean.view("f4,f4,f4"))) == len(holed)  # a subset
    noisy = room.scene_cloud(PITCH, noise_m=0.01, seed=1)
    np.testing.assert_array_equal(voxel_downsample(noisy, PITCH), noisy)  # still voxel centres
    assert not np.array_equal(noisy, clean) and abs(len(noisy) / len(clean) - 1) < 0.6
    with pytest.raises(InputError, match="hole_fraction"):
        room.scene_cloud(PITCH, hole_fraction=1.0)


def test_demo_room_has_a_chair_and_builds_fast():
    room = make_room(DEMO_ROOM_SEED)
    assert any(s.label == F.LABEL_CHAIR_SEAT for s in room.supports)
    start = time.perf_counter()
    for seed in range(20):
        make_room(seed)
    assert (time.perf_counter() - start) / 20 < 0.25  # measured ~5 ms per room
