"""Geometry against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.geometry import (
    check_intrinsics,
    check_pose,
    crop_images,
    crop_normalized_coords,
    crop_to_image_pixels,
    frustum_corners_camera,
    in_crop_frustum,
    invert_transform,
    project_points,
    roi_anchors,
    root_from_heatmaps,
    square_crop_boxes,
    transform_points,
    unproject_pixels,
    voxel_centers,
    voxel_downsample,
    voxelize,
)

K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])


def test_square_crop_box_by_hand():
    # centre (150, 150), w 100, h 200 -> half size 100 * 1.15 = 115
    np.testing.assert_allclose(square_crop_boxes([[100, 50, 200, 250]]), [[35, 35, 265, 265]])


def test_crop_samples_the_box_corners_and_centre():
    H, W = 300, 400
    ramp_x = np.tile(np.arange(W, dtype=np.float64), (H, 1))
    ramp_y = np.tile(np.arange(H, dtype=np.float64)[:, None], (1, W))
    img = torch.from_numpy(np.stack([ramp_x, ramp_y, ramp_x * 0])).float()
    bbx = torch.tensor([[35.0, 35.0, 265.0, 265.0]], dtype=torch.float64)
    crop = crop_images(img, bbx)[0]  # (3, 224, 224)
    assert crop.shape == (3, C.CROP_SIZE_PX, C.CROP_SIZE_PX)
    # crop pixel j samples x = 35 + j * 230 / 223 (bilinear on a linear ramp is exact)
    expected = 35 + np.arange(224) * 230 / 223
    np.testing.assert_allclose(crop[0, 0].numpy(), expected, atol=2e-3)
    np.testing.assert_allclose(crop[1, :, 0].numpy(), expected, atol=2e-3)
    # centre of the crop (111.5, 111.5) is the box centre 150
    assert abs(float(crop[0, 111, 111] + crop[0, 112, 112]) / 2 - 150.0) < 1e-3


def test_crop_outside_the_image_is_zero():
    img = torch.ones(3, 100, 100)
    crop = crop_images(img, torch.tensor([[-200.0, -200.0, -100.0, -100.0]], dtype=torch.float64))
    assert float(crop.abs().max()) == 0.0


def test_crop_coordinates_round_trip():
    bbx = torch.tensor([[10.0, 20.0, 110.0, 120.0], [0.0, 0.0, 50.0, 50.0]], dtype=torch.float64)
    uv01 = torch.rand(2, 7, 2, dtype=torch.float64)
    back = crop_normalized_coords(crop_to_image_pixels(uv01, bbx), bbx)
    torch.testing.assert_close(back, uv01)


def test_projection_round_trip_numpy_and_torch():
    pts = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 7.5]])
    uv = project_points(pts, K)
    np.testing.assert_allclose(uv[0], [500 * 0.15 + 320, 500 * -0.1 + 240])
    np.testing.assert_allclose(unproject_pixels(uv, pts[:, 2], K), pts)
    t = torch.from_numpy(pts)[None]
    Kt = torch.from_numpy(K)[None]
    torch.testing.assert_close(unproject_pixels(project_points(t, Kt), t[..., 2], Kt), t)


@pytest.mark.parametrize(
    "point, inside",
    [
        ((0.0, 0.0, 2.0), True),
        ((0.399, 0.0, 2.0), True),  # box [220, 420] at z=2 spans x in [-0.4, 0.4]
        ((0.401, 0.0, 2.0), False),
        ((-0.401, 0.0, 2.0), False),
        ((0.0, 0.399, 2.0), True),  # v in [140, 340] spans y in [-0.4, 0.4]
        ((0.0, -0.401, 2.0), False),
        ((0.0, 0.0, 0.49), False),  # near plane 0.5 m
        ((0.0, 0.0, 0.51), True),
        ((0.0, 0.0, 12.49), True),  # far plane 12.5 m
        ((0.0, 0.0, 12.51), False),
        ((0.0, 0.0, -2.0), False),  # behind the camera
    ],
)
def test_points_just_inside_and_outside_each_frustum_plane(point, inside):
    mask = in_crop_frustum(np.array([point]), K, np.array([220.0, 140.0, 420.0, 340.0]))
    assert bool(mask[0]) is inside


def test_frustum_corners_project_to_box_corners():
    box = np.array([220.0, 140.0, 420.0, 340.0])
    corners = frustum_corners_camera(K, box)
    np.testing.assert_allclose(corners[:, 2], [0.5] * 4 + [12.5] * 4)
    np.testing.assert_allclose(project_points(corners, K)[:4], [[220, 140], [420, 140], [420, 340], [220, 340]])


def test_root_from_known_heatmap_and_depth():
    hm = torch.zeros(1, 56, 56)
    hm[0, 20, 10] = 5.0  # row v=20, column u=10
    depth = torch.zeros(1, 56, 56)
    depth[0, 20, 10] = 2.0
    bbx = torch.tensor([[0.0, 0.0, 550.0, 550.0]], dtype=torch.float64)
    root = root_from_heatmaps(hm, depth, bbx, torch.from_numpy(K)[None])[0].numpy()
    u, v = 10 / 55 * 550, 20 / 55 * 550  # (100, 200) pixels
    z = 2.0 * 500 / 550
    np.testing.assert_allclose(root, [(u - 320) * z / 500, (v - 240) * z / 500, z])


def test_roi_anchors_along_camera_z():
    a = roi_anchors(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(a[0], [[1, 2, 2.5], [1, 2, 3], [1, 2, 3.5]])
    t = roi_anchors(torch.tensor([[1.0, 2.0, 3.0]]))
    torch.testing.assert_close(t, torch.from_numpy(a).float())


def test_voxels_by_hand():
    pts = np.array([[0.01, 0.02, 0.049], [0.051, -0.001, 0.0], [0.03, 0.04, 0.0]])
    coords, inv = voxelize(pts, 0.05)
    np.testing.assert_array_equal(coords, [[0, 0, 0], [1, -1, 0]])
    np.testing.assert_array_equal(inv, [0, 1, 0])
    np.testing.assert_allclose(voxel_centers(coords, 0.05), [[0.025, 0.025, 0.025], [0.075, -0.025, 0.025]])


def test_voxel_downsample_means_points_per_cell():
    pts = np.array([[0.001, 0.001, 0.001], [0.019, 0.001, 0.001], [0.5, 0.5, 0.5]])
    out = voxel_downsample(pts, 0.02)
    np.testing.assert_allclose(sorted(out.tolist()), [[0.01, 0.001, 0.001], [0.5, 0.5, 0.5]], atol=1e-7)


def test_transform_inverse_round_trip():
    a = 0.3
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
    T[:3, 3] = [1, 2, 3]
    p = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(transform_points(invert_transform(T), transform_points(T, p)), p, atol=1e-12)
    np.testing.assert_allclose(invert_transform(T) @ T, np.eye(4), atol=1e-12)


@pytest.mark.parametrize(
    "bad, fragment",
    [(np.eye(2), "(3, 3)"), (np.full((3, 3), np.nan), "NaN"), (np.diag([0.0, 1, 1]), "focal")],
)
def test_bad_intrinsics_are_named(bad, fragment):
    with pytest.raises(InputError, match="K") as err:
        check_intrinsics(bad)
    assert fragment in str(err.value)


def test_bad_pose_is_named():
    T = np.eye(4)
    T[0, 0] = 2.0
    with pytest.raises(InputError, match="T_map_camera: rotation"):
        check_pose(T)
    T = np.eye(4)
    T[1, 3] = np.inf
    with pytest.raises(InputError, match="NaN or inf"):
        check_pose(T)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_unique_rows_equals_the_general_unique(backend):
    from sahmr_ros.geometry import unique_rows

    rng = np.random.default_rng(0)
    q = np.concatenate([rng.integers(0, 3, (500, 1)), rng.integers(-40, 40, (500, 3))], axis=1)
    want_rows, want_inverse = np.unique(q, axis=0, return_inverse=True)
    if backend == "torch":
        rows, inverse = unique_rows(torch.from_numpy(q))
        rows, inverse = rows.numpy(), inverse.numpy()
    else:
        rows, inverse = unique_rows(q)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(inverse, want_inverse.reshape(-1))
    np.testing.assert_array_equal(rows[inverse], q)
    huge = np.array([[0, 2**40], [2**40, 0], [0, 2**40]])  # key would overflow: general path
    rows, inverse = unique_rows(huge)
    np.testing.assert_array_equal(rows, [[0, 2**40], [2**40, 0]])
    np.testing.assert_array_equal(inverse, [0, 1, 0])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_unique_rows_int32_and_int64_keys_and_dtypes(backend):
    """Key ranges below and above 2**31 (int32 / int64 keys), int32 inputs, batch columns and negative cells."""
    from sahmr_ros.geometry import unique_rows

    rng = np.random.default_rng(1)
    small = np.concatenate([rng.integers(0, 8, (4000, 1)), rng.integers(-60, 60, (4000, 3))], axis=1)
    wide = np.concatenate([rng.integers(0, 3, (3000, 1)), rng.integers(-5000, 5000, (3000, 2)),
                           rng.integers(-2, 2, (3000, 1))], axis=1)  # range 3e8 * 4 > 2**31
    wide = np.concatenate([wide, wide[:500]])  # repeated rows
    for q in (small, small.astype(np.int32), wide, small[:1], small[:, 1:]):
        want_rows, want_inverse = np.unique(q, axis=0, return_inverse=True)
        if backend == "torch":
            rows, inverse = unique_rows(torch.from_numpy(q))
            assert rows.dtype == torch.from_numpy(q).dtype and inverse.dtype == torch.int64
            rows, inverse = rows.numpy(), inverse.numpy()
        else:
            rows, inverse = unique_rows(q)
            assert rows.dtype == q.dtype
        np.testing.assert_array_equal(rows, want_rows)
        np.testing.assert_array_equal(inverse, want_inverse.reshape(-1))
