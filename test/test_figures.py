"""Tests of sahmr_ros.visualization.figures: the result figure, the overlay and the evaluation plots."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from scipy.spatial import Delaunay

from sahmr_ros import geometry
from sahmr_ros.constants import CONTACT_PART_COLORS, CONTACT_PART_NAMES
from sahmr_ros.errors import InputError
from sahmr_ros.visualization.figures import (
    PERSON_COLORS,
    ImageOverlay,
    SamplePanel,
    TopView,
    overlay_meshes,
    plot_contact_parts,
    plot_error_cdfs,
    plot_sample_grid,
    write_result_figure,
)

_K = np.array([[300.0, 0.0, 159.5], [0.0, 300.0, 119.5], [0.0, 0.0, 1.0]])


def _ellipsoid_camera(centre=(0.2, 0.1, 3.0)):
    """A convex body (V, 3) in the camera frame and its faces."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    return sphere.vertices * [1.0, 2.5, 1.0] + centre, sphere.faces


def _room_points():
    rng = np.random.default_rng(0)
    floor = np.column_stack([rng.uniform(-3, 3, 4000), rng.uniform(-2.5, 2.5, 4000), np.zeros(4000)])
    wall = np.column_stack([rng.uniform(-3, 3, 1000), np.full(1000, 2.5), rng.uniform(0, 2.6, 1000)])
    return np.concatenate([floor, wall])


def _top_view():
    contacts = np.array([[0.6, 0.1, 0.0], [0.8, 0.1, 0.0], [-0.7, 0.3, 0.45]])
    return TopView(_room_points(), np.array([0.0, -2.0, 1.2]), np.array([0.0, 1.0, -0.2]),
                   np.array([[0.7, 0.1, 0.9]]), np.array([[0.75, 0.05, 0.95]]), [contacts], [np.array([1, 2, 6])])


def test_overlay_paints_exactly_the_projected_pixels():
    # A convex mesh projects onto the convex hull of its projected vertices: the overlay must paint
    # the pixel centres inside that hull, computed here with geometry.project_points and Delaunay.
    vertices, faces = _ellipsoid_camera()
    image = np.full((240, 320, 3), 100, dtype=np.uint8)
    blended, masks = overlay_meshes(ImageOverlay(image, _K, [vertices, None], faces))
    assert masks[1] is None
    hull = Delaunay(geometry.project_points(vertices, _K))
    v, u = np.mgrid[0:240, 0:320]
    centres = np.column_stack([u.ravel(), v.ravel()]).astype(np.float64)
    inside = (hull.find_simplex(centres) >= 0).reshape(240, 320)
    near_edge = np.zeros_like(inside)
    for shift in ((0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)):
        near_edge |= (hull.find_simplex(centres + shift) >= 0).reshape(240, 320) != inside
    assert inside.sum() > 3000
    np.testing.assert_array_equal(masks[0][~near_edge], inside[~near_edge])
    expected = np.rint(0.55 * 100 + 0.45 * np.array(PERSON_COLORS[0]))
    np.testing.assert_array_equal(blended[masks[0]], np.broadcast_to(expected, (masks[0].sum(), 3)))
    np.testing.assert_array_equal(blended[~masks[0]], 100)


def test_overlay_draws_a_broken_mesh_without_its_non_finite_faces():
    vertices, faces = _ellipsoid_camera()
    vertices[0] = np.nan
    image = np.zeros((240, 320, 3), dtype=np.uint8)
    _, masks = overlay_meshes(ImageOverlay(image, _K, [vertices], faces))
    assert masks[0].sum() > 3000


def test_result_figure_is_written(tmp_path):
    vertices, faces = _ellipsoid_camera()
    image = np.full((240, 320, 3), 180, dtype=np.uint8)
    uv = geometry.project_points(vertices, _K)
    box = np.array([[*uv.min(axis=0), *uv.max(axis=0)]])
    start = time.perf_counter()
    path = write_result_figure(tmp_path / "sub" / "figure.png", ImageOverlay(image, _K, [vertices], faces, box),
                               _top_view(), ["root error 71 mm", "weights: synthetic"])
    assert time.perf_counter() - start < 5.0
    with Image.open(path) as png:
        assert png.size == (1400, 640)
        pixels = np.asarray(png.convert("RGB")).astype(int)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    # the left foot's contact colour (top view) and the person's overlay colour (image) appear
    assert (np.abs(pixels - CONTACT_PART_COLORS[1]).sum(-1) < 10).any()
    overlay_colour = np.rint(0.55 * 180 + 0.45 * np.array(PERSON_COLORS[0]))
    assert (np.abs(pixels - overlay_colour).sum(-1) < 6).sum() > 500


def test_result_figure_rejects_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="overlay.image"):
        write_result_figure(tmp_path / "f.png", ImageOverlay(np.zeros((4, 4)), _K), _top_view(), [])
    bad_top = _top_view()
    bad_top.contact_labels = [np.array([1, 2])]
    with pytest.raises(InputError, match="contact_labels"):
        write_result_figure(tmp_path / "f.png", ImageOverlay(np.zeros((8, 8, 3), np.uint8), _K), bad_top, [])


def test_error_cdfs_png(tmp_path):
    rng = np.random.default_rng(0)
    values = {"G-MPJPE": rng.gamma(4.0, 40.0, 200), "PA-MPJPE": np.append(rng.gamma(3.0, 15.0, 199), np.nan),
              "broken": np.full(5, np.nan)}
    path = plot_error_cdfs(values, "mm", tmp_path / "cdf.png", title="errors")
    with Image.open(path) as png:
        assert png.size == (800, 500)
        assert len(np.unique(np.asarray(png.convert("RGB")).reshape(-1, 3), axis=0)) > 20
    with pytest.raises(InputError, match="values"):
        plot_error_cdfs({}, "mm", tmp_path / "none.png")


def test_contact_parts_png(tmp_path):
    parts = CONTACT_PART_NAMES[1:]
    precision = {name: 0.1 * i for i, name in enumerate(parts)}
    recall = {name: 1.0 - 0.1 * i for i, name in enumerate(parts)}
    recall["back"] = float("nan")
    path = plot_contact_parts(precision, recall, tmp_path / "parts.png", size_px=(900, 400))
    with Image.open(path) as png:
        assert png.size == (900, 400)
        pixels = np.asarray(png.convert("RGB")).astype(int)
    assert (np.abs(pixels - CONTACT_PART_COLORS[2]).sum(-1) < 10).any()  # right foot's bar
    with pytest.raises(InputError, match="precision, recall"):
        plot_contact_parts({"left_foot": 1.5}, {}, tmp_path / "bad.png")


def test_sample_grid_png(tmp_path):
    vertices, faces = _ellipsoid_camera()
    image = np.full((240, 320, 3), 120, dtype=np.uint8)
    samples = [SamplePanel(ImageOverlay(image, _K, [vertices + [0.1 * k, 0.0, 0.0]], faces), _top_view(),
                           f"worst #{k}: 412 mm") for k in range(3)]
    path = plot_sample_grid(samples, tmp_path / "grid.png", columns=2, panel_px=(300, 220), title="worst samples")
    with Image.open(path) as png:
        assert png.size == (2 * 2 * 300, 2 * 220 + 40 + 60)
    with pytest.raises(InputError, match="samples"):
        plot_sample_grid([], tmp_path / "empty.png")
