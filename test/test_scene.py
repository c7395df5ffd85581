"""The scene index against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from sahmr_ros.errors import InputError
from sahmr_ros.geometry import in_crop_frustum, invert_transform, roi_anchors, transform_points
from sahmr_ros.scene import Scene

K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
BOX = np.array([150.0, 60.0, 490.0, 400.0])


def _camera_pose():
    # camera at (0, -3, 1.2) in the map looking along +y: optical z = map y, x = map x, y = -map z
    T = np.eye(4)
    T[:3, :3] = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    T[:3, 3] = [0.0, -3.0, 1.2]
    return T


def test_nonfinite_points_are_dropped_and_counted():
    pts = np.array([[0, 0, 0], [np.nan, 0, 0], [1, np.inf, 0], [1, 1, 1]], dtype=np.float32)
    s = Scene(pts, pitch=None)
    assert len(s) == 2 and s.num_dropped_nonfinite == 2 and s.num_input_points == 4


def test_bad_scene_array_is_named():
    with pytest.raises(InputError, match="scene points"):
        Scene(np.zeros((4, 2)))


def test_roi_matches_brute_force_and_ignores_far_points():
    rng = np.random.default_rng(0)
    room = rng.uniform([-3, -1, 0], [3, 4, 2.5], size=(20000, 3))
    T = _camera_pose()
    anchors = roi_anchors(np.array([[0.1, 0.2, 3.0]]))[0]  # camera frame
    scene = Scene(room, pitch=None)
    got = scene.roi_points_camera(anchors, T, K, BOX)

    cam = transform_points(invert_transform(T), room)
    near = (np.linalg.norm(cam[:, None, :] - anchors[None], axis=2) <= 1.25).any(axis=1)
    ref = cam[near & in_crop_frustum(cam, K, BOX)]
    assert len(got) > 100
    np.testing.assert_allclose(np.array(sorted(got.tolist())), np.array(sorted(ref.tolist())), atol=1e-5)

    far = rng.uniform([50, 50, 0], [500, 500, 3], size=(50000, 3))
    bigger = Scene(np.concatenate([room, far]), pitch=None)
    np.testing.assert_allclose(bigger.roi_points_camera(anchors, T, K, BOX), got)


def test_empty_scene_gives_empty_roi():
    s = Scene(np.zeros((0, 3)))
    assert s.roi_points_camera(np.zeros((3, 3)), np.eye(4), K, BOX).shape == (0, 3)
