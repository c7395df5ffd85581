"""Tests of the embedded demo's parts: procedural room, rasteriser, posing, figure. CPU only."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from sahmr_ros.constants import CONTACT_PART_COLORS, NUM_FACES, NUM_SMPL_JOINTS, NUM_VERTICES
from sahmr_ros.demo.figure import write_demo_figure
from sahmr_ros.demo.posing import place_body, sitting_pose, standing_pose
from sahmr_ros.demo.render import (
    look_at_camera,
    pinhole_intrinsics,
    project_points,
    rasterize_coverage,
    render_meshes,
)
from sahmr_ros.demo.scene import (
    CHAIR_SEAT_HEIGHT_M,
    WALL_HEIGHT_M,
    make_room,
    voxel_downsample,
)
from sahmr_ros.errors import InputError

PITCH = 0.02


@pytest.fixture(scope="module")
def room():
    return make_room(PITCH)


# --- scene -------------------------------------------------------------------------------------------


def test_room_is_deterministic(room):
    again = make_room(PITCH)
    np.testing.assert_array_equal(room.points, again.points)
    np.testing.assert_array_equal(room.mesh_vertices, again.mesh_vertices)
    np.testing.assert_array_equal(room.mesh_faces, again.mesh_faces)
    np.testing.assert_array_equal(room.face_colors, again.face_colors)


def test_room_arrays_are_consistent(room):
    assert room.points.dtype == np.float32 and room.points.shape[1] == 3
    assert room.mesh_vertices.dtype == np.float64 and room.mesh_vertices.shape[1] == 3
    assert room.mesh_faces.dtype == np.int64 and room.mesh_faces.shape[1] == 3
    assert room.face_colors.dtype == np.uint8 and room.face_colors.shape == room.mesh_faces.shape
    assert room.mesh_faces.min() >= 0 and room.mesh_faces.max() < len(room.mesh_vertices)
    assert 50_000 < len(room.points) < 400_000
    lo, hi = room.points.min(axis=0), room.points.max(axis=0)
    np.testing.assert_allclose(hi - lo, [6.0, 5.0, WALL_HEIGHT_M], atol=1e-5)
    for name in ("seat_top_center", "sofa_seat_center", "floor_spot", "camera_eye"):
        assert room.anchors[name].position.shape == (3,)


def test_room_points_on_voxel_grid(room):
    cells = np.floor(room.points.astype(np.float64) / PITCH)
    np.testing.assert_allclose(room.points, (cells + 0.5) * PITCH, atol=1e-5)  # voxel centres
    assert len(np.unique(cells, axis=0)) == len(room.points)  # at most one point per voxel


def test_room_points_are_a_fixed_point_of_the_scene_voxeliser(room):
    # sahmr_ros.scene.Scene voxelises its input again at 2 cm: the room must come out unchanged.
    from sahmr_ros.geometry import voxel_downsample as scene_voxel_downsample

    again = scene_voxel_downsample(room.points, PITCH)
    assert len(again) == len(room.points)
    np.testing.assert_allclose(np.sort(again.view("f4,f4,f4"), axis=0).view(np.float32).reshape(-1, 3),
                               np.sort(room.points.view("f4,f4,f4"), axis=0).view(np.float32)
                               .reshape(-1, 3), atol=1e-6)


def test_room_floor_and_seat_points(room):
    z = room.points[:, 2]
    floor = np.abs(z - PITCH / 2) < 1e-6  # the floor surface z = 0 lies in the voxel layer [0, 2 cm)
    # The floor is 6 x 5 m at 2 cm: 301 x 251 voxels, minus furniture footprints where unseen.
    assert 0.9 * 301 * 251 < floor.sum() <= 301 * 251
    seat = room.anchors["seat_top_center"].position
    assert seat[2] == pytest.approx(CHAIR_SEAT_HEIGHT_M)
    on_seat = (np.abs(z - seat[2]) < 1e-5) & (np.abs(room.points[:, :2] - seat[:2]).max(axis=1) < 0.25)
    assert on_seat.sum() >= 0.9 * 22 * 22  # the 0.44 x 0.44 m seat top
    assert room.anchors["floor_spot"].position[2] == 0.0


def test_room_generation_is_fast():
    start = time.perf_counter()
    make_room(PITCH)
    assert time.perf_counter() - start < 2.0


def test_voxel_downsample_against_naive_dict():
    rng = np.random.default_rng(0)
    points = rng.uniform(-1.0, 1.0, size=(5000, 3))
    pitch = 0.1
    naive = {tuple(np.floor(p / pitch).astype(int)) for p in points}
    centres = voxel_downsample(points, pitch)
    assert {tuple(c) for c in np.round(centres / pitch - 0.5).astype(int)} == naive
    assert len(centres) == len(naive)
    with pytest.raises(InputError, match="points"):
        voxel_downsample(np.zeros((4, 2)), pitch)


# --- camera helpers ----------------------------------------------------------------------------------


def test_look_at_projects_target_to_principal_point():
    K = pinhole_intrinsics(640, 480, 60.0)
    T = look_at_camera([0.0, -3.0, 1.5], [0.0, 0.0, 1.0])
    R = T[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_array_equal(T[3], [0.0, 0.0, 0.0, 1.0])
    target_camera = T[:3, :3] @ [0.0, 0.0, 1.0] + T[:3, 3]
    np.testing.assert_allclose(target_camera[:2], 0.0, atol=1e-12)
    assert target_camera[2] == pytest.approx(np.hypot(3.0, 0.5))
    np.testing.assert_allclose(project_points(target_camera[None], K)[0], K[:2, 2], atol=1e-9)
    # The eye maps to the camera origin; map +x is image right, map +z is image up.
    np.testing.assert_allclose(T[:3, :3] @ [0.0, -3.0, 1.5] + T[:3, 3], 0.0, atol=1e-12)
    uv = project_points((np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 2.0]]) @ R.T) + T[:3, 3], K)
    assert uv[0, 0] > K[0, 2] and uv[0, 1] == pytest.approx(K[1, 2])
    assert uv[1, 1] < K[1, 2] and uv[1, 0] == pytest.approx(K[0, 2])


def test_look_at_rejects_vertical_view():
    with pytest.raises(InputError, match="parallel"):
        look_at_camera([0.0, 0.0, 3.0], [0.0, 0.0, 0.0])


def test_project_points_hand_values():
    K = np.array([[100.0, 0.0, 50.0], [0.0, 200.0, 40.0], [0.0, 0.0, 1.0]])
    uv = project_points(np.array([[1.0, 2.0, 4.0], [0.0, 0.0, -1.0]]), K)
    np.testing.assert_allclose(uv[0], [75.0, 140.0])
    assert np.isnan(uv[1]).all()


# --- rasteriser --------------------------------------------------------------------------------------

_K100 = np.array([[100.0, 0.0, 49.5], [0.0, 100.0, 49.5], [0.0, 0.0, 1.0]])


def _naive_render(triangles_camera: np.ndarray, K: np.ndarray, width: int, height: int):
    """Per-pixel reference: ray / triangle intersection for every pixel centre and triangle.

    Returns the nearest depth (inf where empty) and a mask of pixels within 1e-6 (barycentric)
    of an edge, where coverage is ambiguous.
    """
    u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T  # (H, W, 3), z = 1
    depth = np.full((height, width), np.inf)
    ambiguous = np.zeros((height, width), dtype=bool)
    for tri in triangles_camera:
        a, b, c = tri
        normal = np.cross(b - a, c - a)
        t = (normal @ a) / (rays @ normal)  # depth along each ray (ray z = 1)
        hit = rays * t[..., None]
        # barycentrics of the hit points
        m = np.stack([b - a, c - a], axis=1)  # (3, 2)
        coords = np.linalg.lstsq(m, (hit - a).reshape(-1, 3).T, rcond=None)[0].T.reshape(height, width, 2)
        bary = np.stack([1 - coords[..., 0] - coords[..., 1], coords[..., 0], coords[..., 1]], -1)
        inside = (bary >= 0).all(-1) & (t > 0)
        ambiguous |= (np.abs(bary) < 1e-6).any(-1) & (bary > -1e-6).all(-1)
        depth = np.where(inside & (t < depth), t, depth)
    return depth, ambiguous


def test_single_triangle_coverage_and_depth():
    # Legs of 50 px from (24.5, 24.5): pixel centres (u, v) with u, v >= 25, (u - 25) + (v - 25) <= 49.
    tri = np.array([[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [-0.5, 0.5, 2.0]])
    for faces in ([[0, 1, 2]], [[0, 2, 1]]):  # both windings: faces are double-sided
        rgb, depth = render_meshes([(tri, np.array(faces), (200, 100, 50))], _K100, np.eye(4), 100, 100)
        covered = np.isfinite(depth)
        assert covered.sum() == 50 * 51 // 2
        v, u = np.nonzero(covered)
        assert u.min() == 25 and v.min() == 25 and (u + v).max() == 25 + 25 + 49
        np.testing.assert_allclose(depth[covered], 2.0, rtol=1e-6)
        assert depth.dtype == np.float32 and rgb.dtype == np.uint8 and rgb.shape == (100, 100, 3)
        centroid = tri.mean(axis=0)
        cosine = 2.0 / np.linalg.norm(centroid)
        expected = np.round(np.array([200, 100, 50]) * (0.35 + 0.65 * cosine))
        np.testing.assert_array_equal(rgb[covered][0], expected)
        np.testing.assert_array_equal(rgb[~covered][0], (200, 208, 216))


def test_rasteriser_matches_naive_reference():
    rng = np.random.default_rng(1)
    K = np.array([[60.0, 0.0, 40.0], [0.0, 60.0, 30.0], [0.0, 0.0, 1.0]])
    centres = rng.uniform([-1.0, -0.8, 2.0], [1.0, 0.8, 5.0], size=(25, 3))
    # sizes from sub-pixel to larger than the image: exercises every stencil and the per-triangle path
    scales = np.geomspace(0.02, 3.0, 25)[:, None, None]
    triangles = centres[:, None, :] + scales * rng.normal(size=(25, 3, 3))
    triangles[..., 2] = np.maximum(triangles[..., 2], 0.5)
    faces = np.arange(75).reshape(25, 3)
    _, depth = render_meshes([(triangles.reshape(-1, 3), faces, (90, 90, 90))], K, np.eye(4), 80, 60)
    reference, ambiguous = _naive_render(triangles, K, 80, 60)
    clear = ~ambiguous
    np.testing.assert_array_equal(np.isfinite(depth)[clear], np.isfinite(reference)[clear])
    both = clear & np.isfinite(reference)
    assert both.sum() > 1000
    np.testing.assert_allclose(depth[both], reference[both], rtol=1e-5)


def test_nearer_triangle_wins_in_any_order():
    near_tri = np.array([[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [0.0, 1.0, 2.0]])
    far_tri = near_tri * [2.0, 2.0, 2.0]
    for meshes in ([(near_tri, [[0, 1, 2]], (255, 0, 0)), (far_tri, [[0, 1, 2]], (0, 0, 255))],
                   [(far_tri, [[0, 1, 2]], (0, 0, 255)), (near_tri, [[0, 1, 2]], (255, 0, 0))]):
        rgb, depth = render_meshes(meshes, _K100, np.eye(4), 100, 100)
        assert depth[49, 49] == pytest.approx(2.0)
        assert rgb[49, 49, 0] > 0 and rgb[49, 49, 2] == 0


def test_near_plane_clips_instead_of_dropping():
    # A floor-like triangle under the camera reaching behind it: the part in front is drawn.
    tri = np.array([[-5.0, 1.0, -2.0], [5.0, 1.0, -2.0], [0.0, 1.0, 10.0]])
    _, depth = render_meshes([(tri, [[0, 1, 2]], (100, 100, 100))], _K100, np.eye(4), 100, 100,
                             near=0.1)
    covered = np.isfinite(depth)
    assert covered[99].all() and not covered[:49].any()  # lower half only (below the horizon)
    assert depth[covered].min() >= 0.1
    behind = tri * [1.0, 1.0, 0.0] + [0.0, 0.0, -1.0]
    _, depth = render_meshes([(behind, [[0, 1, 2]], (100, 100, 100))], _K100, np.eye(4), 100, 100)
    assert np.isinf(depth).all()


def test_render_input_errors():
    tri = np.zeros((3, 3))
    with pytest.raises(InputError, match="K"):
        render_meshes([(tri, [[0, 1, 2]], (1, 2, 3))], np.eye(2), np.eye(4), 10, 10)
    with pytest.raises(InputError, match="faces"):
        render_meshes([(tri, [[0, 1, 3]], (1, 2, 3))], _K100, np.eye(4), 10, 10)
    with pytest.raises(InputError, match="face_colors"):
        render_meshes([(tri, [[0, 1, 2]], np.zeros((2, 3)))], _K100, np.eye(4), 10, 10)


def test_rasterize_coverage_square():
    uv = np.array([[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 20.0]])
    mask = rasterize_coverage(uv, np.array([[0, 1, 2], [0, 2, 3]]), 32, 24)
    assert mask.sum() == 11 * 11 and mask[10:21, 10:21].all()


def test_rasterize_coverage_matches_zbuffer_and_is_fast_on_garbage():
    body_vertices, body_faces = _sphere_body()
    K = pinhole_intrinsics(160, 120, 60.0)
    T = look_at_camera([0.7, -1.5, 1.0], [0.7, 0.1, 0.9])
    camera = body_vertices @ T[:3, :3].T + T[:3, 3]
    _, depth = render_meshes([(body_vertices, body_faces, (1, 1, 1))], K, T, 160, 120)
    mask = rasterize_coverage(project_points(camera, K), body_faces, 160, 120)
    assert mask.sum() > 1000
    assert (mask != np.isfinite(depth)).sum() <= 0.01 * mask.sum()  # edge pixels may differ
    # untrained networks can output a mesh whose triangles span the whole image: still fast
    garbage = np.random.default_rng(0).uniform([0, 0], [640, 480], size=(NUM_VERTICES, 2))
    start = time.perf_counter()
    rasterize_coverage(garbage, np.random.default_rng(1).integers(0, NUM_VERTICES, (NUM_FACES, 3)),
                       640, 480)
    assert time.perf_counter() - start < 3.0


def _sphere_body():
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.3)  # 20480 faces >= NUM_FACES
    return sphere.vertices * [1.0, 1.0, 3.0] + [0.7, 0.1, 0.9], sphere.faces


def test_render_room_and_body_is_fast(room):
    body_vertices, body_faces = _sphere_body()
    assert len(body_faces) >= NUM_FACES
    K = pinhole_intrinsics(640, 480, 65.0)
    T = look_at_camera(room.anchors["camera_eye"].position, [0.0, 0.5, 0.8])
    meshes = [(room.mesh_vertices, room.mesh_faces, room.face_colors),
              (body_vertices, body_faces, (210, 170, 150))]
    start = time.perf_counter()
    rgb, depth = render_meshes(meshes, K, T, 640, 480)
    assert time.perf_counter() - start < 3.0
    assert rgb.shape == (480, 640, 3) and depth.shape == (480, 640)
    assert np.isfinite(depth).mean() > 0.9  # the room fills the view
    body_pixel = project_points((np.array([[0.7, 0.1, 0.9]]) @ T[:3, :3].T) + T[:3, 3], K)[0]
    u, v = np.round(body_pixel).astype(int)
    assert tuple(rgb[v, u]) != tuple(room.face_colors[0]) and depth[v, u] < 3.0


# --- figure ------------------------------------------------------------------------------------------


def test_demo_figure_is_written(room, tmp_path):
    body_vertices, body_faces = _sphere_body()
    K = pinhole_intrinsics(640, 480, 65.0)
    eye = room.anchors["camera_eye"].position
    T = look_at_camera(eye, [0.0, 0.5, 0.8])
    image, _ = render_meshes([(room.mesh_vertices, room.mesh_faces, room.face_colors)], K, T, 640, 480)
    uv = project_points(body_vertices @ T[:3, :3].T + T[:3, 3], K)
    box = np.array([[*np.nanmin(uv, axis=0), *np.nanmax(uv, axis=0)]])
    contacts = np.array([[0.6, 0.1, 0.0], [0.8, 0.1, 0.0], [-0.7, 0.3, 0.45]])
    start = time.perf_counter()
    path = write_demo_figure(
        tmp_path / "sub" / "figure.png", image, box, [uv], body_faces, room.points, eye,
        T[2, :3], np.array([[0.7, 0.1, 0.9]]), np.array([[0.75, 0.05, 0.95]]),
        [contacts], [np.array([1, 2, 6])], ["root error 71 mm", "weights: synthetic"],
    )
    assert time.perf_counter() - start < 3.0
    with Image.open(path) as png:
        assert png.size == (1400, 640)
        pixels = np.asarray(png.convert("RGB"))
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    # the left foot's contact colour appears in the top view
    assert (np.abs(pixels.astype(int) - CONTACT_PART_COLORS[1]).sum(-1) < 10).any()


def test_demo_figure_rejects_bad_image(tmp_path, room):
    with pytest.raises(InputError, match="image_rgb"):
        write_demo_figure(tmp_path / "f.png", np.zeros((4, 4)), np.zeros((0, 4)), None, None,
                          room.points, np.zeros(3), np.ones(3), np.zeros((0, 3)), np.zeros((0, 3)),
                          [], [], [])


# --- posing ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def body_model(tmp_path_factory):
    from sahmr_ros.body.smpl import load_body_model
    from sahmr_ros.body.synthetic import write_synthetic_model_dir

    return load_body_model(write_synthetic_model_dir(tmp_path_factory.mktemp("synthetic_body")))


def _smpl_frame_vertices(model, pose):
    with torch.no_grad():
        return model(**pose).vertices[0].double().numpy()


def test_pose_tensors_shapes():
    for pose in (standing_pose(), sitting_pose()):
        assert pose["global_orient"].shape == (1, 3) and pose["body_pose"].shape == (1, 69)
        assert pose["body_pose"].dtype == torch.float32
    # hips flexed (negative about x) and knees bent back (positive about x), by the given angles
    body_pose = sitting_pose(hip_flexion_deg=90.0, knee_flexion_deg=90.0)["body_pose"].reshape(23, 3)
    np.testing.assert_allclose(body_pose[[0, 1]].numpy(), [[-np.pi / 2, 0, 0]] * 2, atol=1e-6)
    np.testing.assert_allclose(body_pose[[3, 4]].numpy(), [[np.pi / 2, 0, 0]] * 2, atol=1e-6)


def test_standing_body_stands_on_the_floor(room, body_model):
    anchor = room.anchors["floor_spot"]
    vertices, joints, pelvis = place_body(body_model, standing_pose(), anchor)
    assert vertices.shape == (NUM_VERTICES, 3) and joints.shape == (NUM_SMPL_JOINTS, 3)
    assert vertices[:, 2].min() == pytest.approx(0.0, abs=1e-9)  # soles on the floor surface
    np.testing.assert_allclose(pelvis[:2], anchor.position[:2], atol=1e-9)
    np.testing.assert_array_equal(pelvis, joints[0])
    assert joints[15, 2] > pelvis[2] + 0.4  # head above the pelvis: SMPL up became map +z
    assert 1.5 < vertices[:, 2].max() < 2.0
    # facing -y (yaw -pi/2): toes ahead of the ankles along -y, the body's left (hip 1) at +x
    assert (joints[[10, 11], 1] < joints[[7, 8], 1]).all()
    assert joints[1, 0] > joints[2, 0]
    # only a rigid motion: pairwise distances as in the SMPL frame
    smpl = _smpl_frame_vertices(body_model, standing_pose())
    idx = np.arange(0, NUM_VERTICES, 97)
    np.testing.assert_allclose(np.linalg.norm(vertices[idx, None] - vertices[None, idx], axis=-1),
                               np.linalg.norm(smpl[idx, None] - smpl[None, idx], axis=-1), atol=1e-5)


def test_yaw_turns_the_body(room, body_model):
    anchor = room.anchors["floor_spot"]
    _, joints, _ = place_body(body_model, standing_pose(), anchor, yaw=0.0)  # facing +x
    assert (joints[[10, 11], 0] > joints[[7, 8], 0]).all()
    assert joints[1, 1] > joints[2, 1]  # left at +y


def test_sitting_body_sits_on_the_seat(room, body_model):
    anchor = room.anchors["seat_top_center"]
    vertices, joints, pelvis = place_body(body_model, sitting_pose(), anchor)
    seat_z = anchor.position[2]
    assert pelvis[2] > seat_z + 0.05  # pelvis above the seat
    np.testing.assert_allclose(pelvis[:2], anchor.position[:2] + [0.0, 0.06], atol=1e-9)  # faces -y
    near = (np.abs(vertices[:, :2] - pelvis[:2]).max(axis=1) < 0.12) & (vertices[:, 2] < pelvis[2])
    assert vertices[near, 2].min() == pytest.approx(seat_z, abs=1e-9)  # buttocks on the seat top
    assert joints[[4, 5], 2].min() > seat_z  # knees above the seat, in front of it
    assert (joints[[4, 5], 1] < anchor.position[1] - 0.2).all()
    # with the default pose the synthetic body's soles reach the floor (within 3 cm)
    assert -0.01 < vertices[:, 2].min() < 0.03


def test_place_body_input_errors(room, body_model):
    pose = standing_pose()
    with pytest.raises(InputError, match="body_pose"):
        place_body(body_model, {**pose, "body_pose": torch.zeros(1, 72)}, room.anchors["floor_spot"])
    with pytest.raises(InputError, match="global_orient"):
        place_body(body_model, {"body_pose": pose["body_pose"]}, room.anchors["floor_spot"])
