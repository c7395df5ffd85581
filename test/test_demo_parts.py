"""Tests of the embedded demo's scene: one fixed seed of the procedural room generator, two people. CPU only.

The room generator and the posing are tested in test_rooms.py and test_poses.py; the renderer and the
figure in test_render.py and test_figures.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from sahmr_ros.data import furniture as F
from sahmr_ros.data.placement import CONTACT_THRESHOLD_M, PENETRATION_TOLERANCE_M
from sahmr_ros.data.rooms import DEMO_ROOM_SEED, make_room
from sahmr_ros.geometry import voxel_downsample


@pytest.fixture(scope="module")
def demo(synthetic_model_dir):
    from sahmr_ros.body import load_body_assets
    from sahmr_ros.demo.run import IMAGE_H, IMAGE_W, make_demo_scene

    return make_demo_scene(synthetic_model_dir), load_body_assets(synthetic_model_dir), (IMAGE_W, IMAGE_H)


def test_demo_room_is_the_generators_fixed_seed(demo):
    scene, _, _ = demo
    room = make_room(DEMO_ROOM_SEED)
    assert scene.room.seed == DEMO_ROOM_SEED
    np.testing.assert_array_equal(scene.room.mesh_vertices, room.mesh_vertices)
    np.testing.assert_array_equal(scene.scene_points_map, room.scene_cloud())
    # the scan is a fixed point of the Scene's 2 cm voxelisation
    np.testing.assert_array_equal(voxel_downsample(scene.scene_points_map, 0.02), scene.scene_points_map)


def test_demo_people_stand_and_sit_in_contact(demo):
    scene, body, (width, height) = demo
    room = scene.room
    standing, sitting = scene.gt_vertices_map
    feet = np.isin(body.part_ids_6890, (1, 2))
    assert standing[:, 2].min() == pytest.approx(0.0, abs=1e-6) and standing[feet, 2].min() < CONTACT_THRESHOLD_M
    chair = next(s for s in room.supports if s.label == F.LABEL_CHAIR_SEAT)
    glute = sitting[body.part_ids_6890 == 6]
    assert np.abs(glute[:, 2] - chair.center[2]).min() < 1e-6 and chair.contains(glute).any()
    for vertices in scene.gt_vertices_map:
        assert room.sdf(vertices).min() >= -PENETRATION_TOLERANCE_M
    # both people are in the image, boxes inside it, roots near the pelvis
    assert scene.boxes.shape == (2, 4) and (scene.boxes[:, 2:] > scene.boxes[:, :2] + 20).all()
    assert (scene.boxes >= 0).all() and (scene.boxes[:, [0, 2]] < width).all()
    assert (scene.boxes[:, [1, 3]] < height).all()
    assert scene.image.shape == (height, width, 3)
    assert scene.gt_roots_map[1, 2] > chair.center[2]
