"""Tests of people posed in rooms (sahmr_ros.data.poses, sahmr_ros.data.placement). CPU only.

Penetration is checked with an SDF computed independently of ``Room.sdf``: Open3D's signed distance
to each box's closed mesh (and z for the floor); contact with the support's plane and rectangle.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from conftest import torch_threads
from sahmr_ros.constants import NUM_SMPL_JOINTS, NUM_VERTICES
from sahmr_ros.data import furniture as F
from sahmr_ros.data import poses as P
from sahmr_ros.data.placement import (CONTACT_THRESHOLD_M, PENETRATION_TOLERANCE_M, PERSON_CLEARANCE_M, PlacedPerson,
                                      PlacementError, place_person, sample_person, supports_for)
from sahmr_ros.data.rooms import make_room
from sahmr_ros.errors import InputError
from sahmr_ros.evaluation.metrics import contact_ground_truth_labels

FEET, L_HAND, R_HAND, BACK, GLUTEUS = (1, 2), 3, 4, 5, 6
ROOM_SEEDS = (0, 1, 2, 4, 7)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Batches of a few bodies: one thread is 3-10x faster than two on a busy 2-core machine (as in data workers)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def body(synthetic_model_dir):
    from sahmr_ros.body import load_body_assets, load_body_model

    return load_body_model(synthetic_model_dir), load_body_assets(synthetic_model_dir).part_ids_6890


@pytest.fixture(scope="module")
def rooms():
    return {seed: make_room(seed) for seed in ROOM_SEEDS}


def _independent_sdf(room, points: np.ndarray) -> np.ndarray:
    o3d = pytest.importorskip("open3d")
    query = o3d.core.Tensor(points.astype(np.float32))
    out = points[:, 2].astype(np.float64).copy()
    lo, hi = points.min(axis=0) - 0.2, points.max(axis=0) + 0.2
    for b in range(len(room.boxes)):
        faces = room.mesh_faces[room.face_boxes == b]
        used, local = np.unique(faces, return_inverse=True)
        corners = room.mesh_vertices[used]
        if (corners.max(axis=0) < lo).any() or (corners.min(axis=0) > hi).any():
            continue  # farther than 20 cm from every vertex: cannot be the nearest within the thresholds
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(corners.astype(np.float32)),
                            o3d.core.Tensor(local.reshape(-1, 3).astype(np.uint32)))
        out = np.minimum(out, scene.compute_signed_distance(query).numpy())
    return out


def _plane_distance(support, points):
    """Signed distance of points to the support's plane and whether they project inside its rectangle."""
    return (points - support.center) @ support.normal, support.contains(points)


def _check_person(person: PlacedPerson, room, body, parts):
    model, _ = body
    s = room.supports[person.support]
    v = person.vertices
    assert v.shape == (NUM_VERTICES, 3) and person.joints.shape == (NUM_SMPL_JOINTS, 3)
    sdf = _independent_sdf(room, v)
    assert sdf.min() >= -PENETRATION_TOLERANCE_M - 1e-4, (person.category, sdf.min())
    # vertex contact is |sdf| < threshold (vertices within 0.1 mm of the threshold may go either way)
    clear = np.abs(np.abs(sdf) - CONTACT_THRESHOLD_M) > 1e-4
    np.testing.assert_array_equal(person.vertex_contact[clear], (np.abs(sdf) < CONTACT_THRESHOLD_M)[clear])
    # the smplx parameters give the vertices
    with torch.no_grad():
        out = model(betas=torch.tensor(person.betas[None], dtype=torch.float32),
                    body_pose=torch.tensor(person.body_pose[None], dtype=torch.float32),
                    global_orient=torch.tensor(person.global_orient[None], dtype=torch.float32),
                    transl=torch.tensor(person.transl[None], dtype=torch.float32))
    np.testing.assert_allclose(out.vertices[0].numpy(), v, atol=2e-4)
    np.testing.assert_array_equal(person.pelvis, person.joints[0])
    assert (np.abs(person.betas) <= 2.0).all()

    def touching(mask, plane=s, count=3):
        d, inside = _plane_distance(plane, v[mask])
        return np.count_nonzero((np.abs(d) < CONTACT_THRESHOLD_M) & inside) >= count

    feet = np.isin(parts, FEET)
    floor = room.supports[0]
    c = person.category
    if c in (P.STANDING, P.WALKING, P.CROUCHING) and s.kind == F.KIND_FLOOR:
        assert touching(feet, floor)
        assert v[:, 2].min() == pytest.approx(0.0, abs=1e-6)  # the lowest vertex on the floor
    if c == P.STANDING and s.kind == F.KIND_STEP:
        assert touching(feet)
    if c in (P.SITTING, P.SITTING_BACK):
        assert touching(parts == GLUTEUS, count=10)
        assert person.pelvis[2] > s.center[2] + 0.03
    if c == P.SITTING_BACK:
        backrest = room.supports[s.backrest]
        assert touching(parts == BACK, backrest) or touching(parts == GLUTEUS, backrest)
    if c == P.HAND_ON_SURFACE:
        assert touching(parts == L_HAND) or touching(parts == R_HAND)
        assert touching(feet, floor)
    if c == P.LEANING_TABLE:
        assert touching(parts == L_HAND) and touching(parts == R_HAND)
        assert touching(feet, floor)
    if c == P.LEANING_WALL:
        assert touching(np.isin(parts, (BACK, GLUTEUS)))
        assert touching(feet, floor)
    if c == P.LYING:
        assert touching(np.ones(NUM_VERTICES, bool), count=30)
        # lying: the body's long axis is horizontal
        extent = v.max(axis=0) - v.min(axis=0)
        assert extent[2] < 0.6 * max(extent[0], extent[1])


def test_body_pose_conventions():
    pose = P.body_pose_from_params({"l_hip_flex": 90.0, "r_hip_flex": 90.0, "l_knee": 90.0, "r_knee": 90.0})
    assert pose.shape == (69,)
    per_joint = pose.reshape(23, 3)
    np.testing.assert_allclose(per_joint[[0, 1]], [[-np.pi / 2, 0, 0]] * 2, atol=1e-9)  # hips: about -x
    np.testing.assert_allclose(per_joint[[3, 4]], [[np.pi / 2, 0, 0]] * 2, atol=1e-9)  # knees: about +x
    np.testing.assert_array_equal(P.body_pose_from_params({}), np.zeros(69))
    with pytest.raises(InputError, match="unknown"):
        P.body_pose_from_params({"elbow": 3.0})
    with pytest.raises(InputError, match="category"):
        P.sample_pose_params("dancing", np.random.default_rng(0))


def test_sampled_poses_vary_and_are_seeded():
    for category in P.CATEGORIES:
        a = P.sample_pose_params(category, np.random.default_rng(1))
        assert a == P.sample_pose_params(category, np.random.default_rng(1))
        assert a != P.sample_pose_params(category, np.random.default_rng(2))


@pytest.mark.parametrize("category", P.CATEGORIES)
def test_each_category_in_seeded_rooms(category, body, rooms):
    model, parts = body
    placed, times = 0, []
    for seed in ROOM_SEEDS:
        room = rooms[seed]
        supports = supports_for(room, category)
        if not supports:
            continue
        rng = np.random.default_rng(seed)
        support = int(supports[rng.integers(len(supports))])
        start = time.perf_counter()
        try:
            person = place_person(model, room, support, category, rng, part_ids=parts)
        except PlacementError:
            continue
        times.append(time.perf_counter() - start)
        assert person.category == category and person.support == support
        _check_person(person, room, body, parts)
        placed += 1
    assert placed >= 2, f"{category}: placed in only {placed} rooms"
    assert np.median(times) < 1.0  # measured ~20..150 ms


def test_sitting_feet_reach_the_floor_on_chairs(body, rooms):
    """The knees are solved so that the soles reach the floor, where no candidate angle penetrates."""
    model, parts = body
    room = rooms[1]
    chairs = [i for i, s in enumerate(room.supports) if s.label == F.LABEL_CHAIR_SEAT]
    feet = np.isin(parts, FEET)
    heights = []
    for chair in chairs:
        person = place_person(model, room, chair, P.SITTING, np.random.default_rng(5), part_ids=parts)
        heights.append(person.vertices[feet, 2].min())
    assert len(chairs) >= 3 and min(heights) > -PENETRATION_TOLERANCE_M and max(heights) < 0.15
    assert np.mean(np.abs(heights) < 0.01) >= 0.5
    # the scene-point contact labels of SPEC section 6 (7 cm): the seat's points take the gluteus
    cloud = room.scene_cloud()
    labels = contact_ground_truth_labels(cloud, person.vertices, parts)
    seat = room.supports[chair]
    on_seat = (np.abs(cloud[:, 2] - seat.center[2]) < 0.02) & seat.contains(cloud)
    assert (labels[on_seat] == GLUTEUS).any() and (labels[np.abs(cloud[:, 2] - 0.01) < 1e-4] == 1).any() | (
        labels[np.abs(cloud[:, 2] - 0.01) < 1e-4] == 2).any()


def test_people_do_not_touch_each_other_and_placement_is_seeded(body, rooms):
    model, parts = body
    room = rooms[1]

    def crowd(seed):
        rng, people = np.random.default_rng(seed), []
        for _ in range(4):
            people.append(sample_person(model, room, rng, part_ids=parts, others=people))
        return people

    people = crowd(3)
    for i, a in enumerate(people):
        for b in people[i + 1:]:
            gap = np.linalg.norm(a.vertices[::5, None] - b.vertices[None, ::5], axis=-1).min()
            assert gap >= PERSON_CLEARANCE_M - 0.01
    again = crowd(3)
    for a, b in zip(people, again):
        assert a.category == b.category and a.support == b.support
        np.testing.assert_array_equal(a.vertices, b.vertices)


def test_standing_faces_its_yaw_and_is_rigid(body, rooms):
    model, parts = body
    room = rooms[0]
    person = place_person(model, room, 0, P.STANDING, np.random.default_rng(0), part_ids=parts)
    j = person.joints
    assert j[15, 2] > j[0, 2] + 0.4  # head above the pelvis: SMPL up is map +z
    toes_ahead = (j[[10, 11]] - j[[7, 8]])[:, :2].mean(axis=0)
    left = j[1, :2] - j[2, :2]
    assert toes_ahead[0] * left[1] - toes_ahead[1] * left[0] > 0  # the body's left is left of its facing
    assert 1.4 < person.vertices[:, 2].max() < 2.2


def test_place_person_input_errors(body, rooms):
    model, parts = body
    room = rooms[0]
    with pytest.raises(InputError, match="cannot host"):
        place_person(model, room, 0, P.SITTING, np.random.default_rng(0), part_ids=parts)
    with pytest.raises(InputError, match="support"):
        place_person(model, room, 999, P.STANDING, np.random.default_rng(0), part_ids=parts)
    with pytest.raises(InputError, match="part_ids"):
        place_person(model, room, 0, P.STANDING, np.random.default_rng(0), part_ids=parts[:10])
    with pytest.raises(InputError, match="category"):
        supports_for(room, "dancing")
