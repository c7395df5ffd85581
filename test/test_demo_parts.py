"""Tests of the embedded demo's parts: procedural room and posing. CPU only.

The renderer and the figure are tested in test_render.py and test_figures.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from sahmr_ros.constants import NUM_SMPL_JOINTS, NUM_VERTICES
from sahmr_ros.demo.posing import place_body, sitting_pose, standing_pose
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
