"""Tests of sahmr_ros.visualization.render: coverage, depth, instances, projection and distortion.

Every expectation is derived independently of the renderer: pixel sets by hand, depths from the
plane equation, projections with ``geometry.project_points``, distortion with a hand-written
plumb_bob forward model and scipy's root finder. CPU only.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.optimize import fsolve

from sahmr_ros import geometry
from sahmr_ros.constants import NUM_FACES, NUM_VERTICES
from sahmr_ros.errors import InputError
from sahmr_ros.visualization.render import (
    BACKGROUND_RGB,
    Light,
    Mesh,
    look_at_camera,
    pinhole_intrinsics,
    pixel_rays,
    project_points,
    render,
    silhouettes,
)

_K100 = np.array([[100.0, 0.0, 49.5], [0.0, 100.0, 49.5], [0.0, 0.0, 1.0]])
_AMBIENT = Light().ambient


def _unproject(K, uv, z):
    """Camera-frame points (N, 3) at depth z whose projections are the pixels uv (N, 2)."""
    uv = np.atleast_2d(np.asarray(uv, dtype=np.float64))
    homogeneous = np.column_stack([uv, np.ones(len(uv))])
    return np.linalg.solve(K, homogeneous.T).T * np.reshape(z, (-1, 1))


# --- camera helpers ----------------------------------------------------------------------------------


def test_pinhole_intrinsics_centre_and_fov():
    K = pinhole_intrinsics(640, 480, 90.0)
    np.testing.assert_allclose(K[:2, 2], [319.5, 239.5])
    assert K[0, 0] == pytest.approx(320.0) and K[1, 1] == pytest.approx(320.0)
    with pytest.raises(InputError, match="width, height"):
        pinhole_intrinsics(0, 480)


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


# --- coverage and depth ------------------------------------------------------------------------------


def test_quad_covers_exactly_the_pixel_centres_inside():
    # Corners at pixel coordinates u in [20.5, 60.5], v in [10.5, 30.5], 2 m away: the pixel centres
    # inside are u = 21..60, v = 11..30 (40 x 20), whatever the winding.
    corners = _unproject(_K100, [[20.5, 10.5], [60.5, 10.5], [60.5, 30.5], [20.5, 30.5]], 2.0)
    for faces in ([[0, 1, 2], [0, 2, 3]], [[0, 2, 1], [0, 3, 2]]):
        out = render([Mesh(corners, np.array(faces), (200, 100, 50))], _K100, np.eye(4), 100, 100)
        expected = np.zeros((100, 100), dtype=bool)
        expected[11:31, 21:61] = True
        np.testing.assert_array_equal(out.instance == 0, expected)
        np.testing.assert_array_equal(np.isfinite(out.depth), expected)
        np.testing.assert_allclose(out.depth[expected], 2.0, rtol=1e-6)
        assert set(np.unique(out.primitive[expected])) == {0, 1}
        assert (out.primitive[~expected] == -1).all() and (out.instance[~expected] == -1).all()
        assert out.depth.dtype == np.float32 and out.instance.dtype == np.int32 and out.rgb.dtype == np.uint8
        assert (out.rgb[~expected] == BACKGROUND_RGB).all()
        # head-light Lambert per face: cos = z / |centroid| of the face, in the camera frame
        for face_index, face in enumerate(faces):
            centroid = corners[face].mean(axis=0)
            shade = _AMBIENT + (1 - _AMBIENT) * centroid[2] / np.linalg.norm(centroid)
            seen = out.primitive == face_index
            np.testing.assert_array_equal(out.rgb[seen], np.broadcast_to(np.rint(np.multiply((200, 100, 50), shade)),
                                                                         (seen.sum(), 3)))


def test_triangle_covers_the_hand_counted_pixels():
    # Right angle at (20.25, 10.25), legs of 40 px: centres with u >= 21, v >= 11, u + v <= 70, i.e.
    # a = u - 21 >= 0, b = v - 11 >= 0, a + b <= 38: 39 * 40 / 2 = 780 pixels.
    corners = _unproject(_K100, [[20.25, 10.25], [60.25, 10.25], [20.25, 50.25]], 3.0)
    out = render([(corners, [[0, 1, 2]], (10, 20, 30))], _K100, np.eye(4), 100, 100)
    v, u = np.mgrid[0:100, 0:100]
    expected = (u >= 21) & (v >= 11) & (u + v <= 70)
    assert expected.sum() == 780
    np.testing.assert_array_equal(out.instance == 0, expected)
    np.testing.assert_allclose(out.depth[expected], 3.0, rtol=1e-6)


def test_tilted_plane_depth_and_coverage_with_skew():
    K = np.array([[80.0, 6.0, 41.3], [0.0, 90.0, 29.8], [0.0, 0.0, 1.0]])  # non-zero skew
    normal = np.array([0.3, -0.4, -1.0])
    normal /= np.linalg.norm(normal)
    point_on_plane = np.array([0.1, 0.05, 2.5])
    # a large triangle in that plane, then the expectation per pixel from the ray-plane equation
    axis_u = np.cross(normal, [0.0, 1.0, 0.0])
    axis_u /= np.linalg.norm(axis_u)
    axis_v = np.cross(normal, axis_u)
    corners = point_on_plane + np.array([[-1.2, -0.9], [1.1, -1.0], [0.1, 1.2]]) @ np.stack([axis_u, axis_v])
    pose = geometry.invert_transform(look_at_camera([0.5, -2.0, 1.0], [0.4, 1.0, 1.1]))  # T_map_camera
    corners_map = geometry.transform_points(pose, corners)
    out = render([(corners_map, [[0, 1, 2]], (100, 100, 100))], K, geometry.invert_transform(pose), 80, 60)

    v, u = np.mgrid[0:60, 0:80].astype(np.float64)
    rays = np.linalg.solve(K, np.stack([u.ravel(), v.ravel(), np.ones(u.size)])).T  # z = 1
    depth = (normal @ point_on_plane) / (rays @ normal)
    hit = rays * depth[:, None] - corners[0]
    # barycentric coordinates of the hit in the triangle's plane
    e1, e2 = corners[1] - corners[0], corners[2] - corners[0]
    gram = np.array([[e1 @ e1, e1 @ e2], [e1 @ e2, e2 @ e2]])
    b12 = np.linalg.solve(gram, np.stack([hit @ e1, hit @ e2])).T
    bary = np.column_stack([1 - b12.sum(axis=1), b12])
    inside = (bary > 1e-6).all(axis=1) & (depth > 0)
    clear = inside | (bary < -1e-6).any(axis=1)  # pixels not on an edge
    assert inside.sum() > 1000 and clear.mean() > 0.98
    covered = out.instance.ravel() == 0
    np.testing.assert_array_equal(covered[clear], inside[clear])
    np.testing.assert_allclose(out.depth.ravel()[inside], depth[inside], rtol=1e-5)


def test_a_mesh_behind_the_camera_is_not_seen_and_one_crossing_it_is_cut():
    floor = np.array([[-5.0, 1.0, -2.0], [5.0, 1.0, -2.0], [0.0, 1.0, 10.0]])  # y = 1: below the camera
    out = render([(floor, [[0, 1, 2]], (100, 100, 100))], _K100, np.eye(4), 100, 100)
    covered = out.instance == 0
    assert covered[99].all() and not covered[:50].any()  # below the horizon (v > 49.5) only
    assert out.depth[covered].min() > 0
    behind = floor * [1.0, 1.0, 0.0] + [0.0, 0.0, -1.0]
    assert (render([(behind, [[0, 1, 2]], (1, 1, 1))], _K100, np.eye(4), 100, 100).instance == -1).all()


def test_far_from_the_map_origin_keeps_precision():
    corners = _unproject(_K100, [[20.5, 10.5], [60.5, 10.5], [60.5, 30.5], [20.5, 30.5]], 2.0)
    offset = np.array([1.0e4, -2.0e4, 30.0])
    T_camera_map = np.eye(4)
    T_camera_map[:3, 3] = -offset
    out = render([(corners + offset, [[0, 1, 2], [0, 2, 3]], (9, 9, 9))], _K100, T_camera_map, 100, 100)
    assert (out.instance == 0).sum() == 800
    np.testing.assert_allclose(out.depth[out.instance == 0], 2.0, rtol=1e-6)


# --- instances ---------------------------------------------------------------------------------------


def test_instance_map_tells_which_mesh_is_in_front():
    near = _unproject(_K100, [[10.5, 10.5], [60.5, 10.5], [60.5, 60.5], [10.5, 60.5]], 2.0)
    far = _unproject(_K100, [[30.5, 30.5], [90.5, 30.5], [90.5, 90.5], [30.5, 90.5]], 4.0)
    quads = [[0, 1, 2], [0, 2, 3]]
    v, u = np.mgrid[0:100, 0:100]
    in_near = (u >= 11) & (u <= 60) & (v >= 11) & (v <= 60)
    in_far = (u >= 31) & (u <= 90) & (v >= 31) & (v <= 90)
    for order in ((0, 1), (1, 0)):
        meshes = [(near, quads, (255, 0, 0)), (far, quads, (0, 0, 255))]
        meshes = [meshes[i] for i in order]
        index_near, index_far = order.index(0), order.index(1)
        out = render(meshes, _K100, np.eye(4), 100, 100)
        np.testing.assert_array_equal(out.mask(index_near), in_near)
        np.testing.assert_array_equal(out.mask(index_far), in_far & ~in_near)
        np.testing.assert_allclose(out.depth[in_near], 2.0, rtol=1e-6)
        np.testing.assert_allclose(out.depth[in_far & ~in_near], 4.0, rtol=1e-6)
        assert (out.rgb[in_near][:, 2] == 0).all() and (out.rgb[in_far & ~in_near][:, 0] == 0).all()
        # silhouettes ignore the other meshes: the far quad's whole 60 x 60 pixels
        alone = silhouettes(meshes, _K100, np.eye(4), 100, 100)
        np.testing.assert_array_equal(alone[index_far], in_far)
        np.testing.assert_array_equal(alone[index_near], in_near)


def test_empty_meshes_keep_their_instance_index():
    corners = _unproject(_K100, [[20.5, 10.5], [60.5, 10.5], [60.5, 30.5]], 2.0)
    out = render([(np.zeros((0, 3)), np.zeros((0, 3), int), (1, 2, 3)), (corners, [[0, 1, 2]], (1, 2, 3))],
                 _K100, np.eye(4), 100, 100)
    assert set(np.unique(out.instance)) == {-1, 1}
    nothing = render([], _K100, np.eye(4), 30, 20)
    assert (nothing.instance == -1).all() and np.isinf(nothing.depth).all()
    assert (nothing.rgb == BACKGROUND_RGB).all()


def test_vertices_land_where_project_points_says():
    # Tiny markers (0.5 mm, well under a pixel) around points that project to chosen pixel centres,
    # seen through a skewed K from a tilted camera: each marker covers exactly its pixel.
    K = np.array([[420.0, 3.5, 161.2], [0.0, 400.0, 118.7], [0.0, 0.0, 1.0]])
    T_camera_map = look_at_camera([1.0, -2.5, 1.4], [0.2, 0.5, 0.9])
    rng = np.random.default_rng(0)
    pixels = np.column_stack([rng.integers(2, 318, 12), rng.integers(2, 238, 12)]).astype(np.float64)
    depths = rng.uniform(1.5, 6.0, 12)
    centres_map = geometry.transform_points(geometry.invert_transform(T_camera_map), _unproject(K, pixels, depths))
    np.testing.assert_allclose(geometry.project_points(geometry.transform_points(T_camera_map, centres_map), K),
                               pixels, atol=1e-9)
    offsets = 5e-4 * np.array([[1.0, 0.0, 0.0], [-0.5, 0.8, 0.3], [-0.5, -0.8, -0.3]])
    meshes = [(c + offsets, [[0, 1, 2]], (255, 255, 255)) for c in centres_map]
    out = render(meshes, K, T_camera_map, 320, 240)
    for i, (u, v) in enumerate(pixels.astype(int)):
        assert out.instance[v, u] == i
        assert out.mask(i).sum() == 1


# --- lens distortion ---------------------------------------------------------------------------------

_PLUMB_BOB = np.array([-0.28, 0.09, 0.0012, -0.0008, -0.012])
_K_DIST = np.array([[300.0, 0.0, 161.0], [0.0, 305.0, 119.0], [0.0, 0.0, 1.0]])


def _plumb_bob(x, y, k1, k2, p1, p2, k3):
    """OpenCV's plumb_bob forward model on normalised coordinates, written out by hand."""
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def test_distorted_pixel_rays_satisfy_the_forward_model():
    rays = pixel_rays(_K_DIST, 320, 240, _PLUMB_BOB, "plumb_bob")
    assert rays.shape == (240, 320, 3) and not rays.flags.writeable
    assert np.isfinite(rays).all()
    np.testing.assert_array_equal(rays[..., 2], 1.0)
    xd, yd = _plumb_bob(rays[..., 0], rays[..., 1], *_PLUMB_BOB)
    u = _K_DIST[0, 0] * xd + _K_DIST[0, 2]
    v = _K_DIST[1, 1] * yd + _K_DIST[1, 2]
    v_grid, u_grid = np.mgrid[0:240, 0:320]
    np.testing.assert_allclose(u, u_grid, atol=1e-6)
    np.testing.assert_allclose(v, v_grid, atol=1e-6)
    # no distortion (None or all zero): K^-1 (u, v, 1)
    plain = np.linalg.solve(_K_DIST, np.stack([u_grid.ravel(), v_grid.ravel(), np.ones(u_grid.size)])).T
    np.testing.assert_allclose(pixel_rays(_K_DIST, 320, 240).reshape(-1, 3), plain, atol=1e-12)
    np.testing.assert_allclose(pixel_rays(_K_DIST, 320, 240, np.zeros(5)).reshape(-1, 3), plain, atol=1e-12)


def test_strong_barrel_distortion_leaves_pixels_beyond_the_fold_empty():
    # k1 = -0.5 folds at r^2 = 1 / (3 * 0.5): distorted radius at most 0.544; the corners lie beyond it.
    K = pinhole_intrinsics(200, 150, 120.0)
    rays = pixel_rays(K, 200, 150, [-0.5, 0.0, 0.0, 0.0, 0.0])
    valid = np.isfinite(rays[..., 0])
    assert valid[75, 100] and not valid[0, 0] and not valid.all()
    xd, yd = _plumb_bob(rays[valid][:, 0], rays[valid][:, 1], -0.5, 0.0, 0.0, 0.0, 0.0)
    v, u = np.nonzero(valid)
    np.testing.assert_allclose(K[0, 0] * xd + K[0, 2], u, atol=1e-6)
    np.testing.assert_allclose(K[1, 1] * yd + K[1, 2], v, atol=1e-6)
    assert (np.hypot(rays[valid][:, 0], rays[valid][:, 1]) ** 2 <= 1 / 1.5 + 1e-9).all()
    wall = _unproject(K, [[-1e4, -1e4], [1e4, -1e4], [0.0, 1e4]], 1.0)
    out = render([(wall, [[0, 1, 2]], (50, 50, 50))], K, np.eye(4), 200, 150, distortion=[-0.5, 0, 0, 0, 0])
    np.testing.assert_array_equal(out.instance == 0, valid)


def test_render_with_distortion_sees_the_rays_of_the_forward_model():
    # Markers at points whose *distorted* projection is a chosen pixel centre (solved with scipy).
    rng = np.random.default_rng(5)
    pixels = np.column_stack([rng.integers(3, 317, 10), rng.integers(3, 237, 10)]).astype(np.float64)
    targets = np.column_stack([(pixels[:, 0] - _K_DIST[0, 2]) / _K_DIST[0, 0],
                               (pixels[:, 1] - _K_DIST[1, 2]) / _K_DIST[1, 1]])
    undistorted = np.array([fsolve(lambda p, t=t: np.subtract(_plumb_bob(*p, *_PLUMB_BOB), t), t, xtol=1e-12)
                            for t in targets])
    depth = rng.uniform(2.0, 5.0, 10)
    centres = np.column_stack([undistorted * depth[:, None], depth])
    offsets = 3e-4 * np.array([[1.0, 0.0, 0.0], [-0.5, 0.8, 0.2], [-0.5, -0.8, -0.2]])
    meshes = [(c + offsets, [[0, 1, 2]], (255, 255, 255)) for c in centres]
    out = render(meshes, _K_DIST, np.eye(4), 320, 240, distortion=_PLUMB_BOB, distortion_model="plumb_bob")
    moved = 0
    for i, (u, v) in enumerate(pixels.astype(int)):
        assert out.instance[v, u] == i and out.mask(i).sum() == 1
        pinhole = project_points(centres[i][None], _K_DIST)[0]
        moved += np.hypot(*(pinhole - (u, v))) > 2.0
    assert moved >= 5  # the distortion moved most markers away from their pinhole pixel
    plain = render(meshes, _K_DIST, np.eye(4), 320, 240, distortion=np.zeros(5))
    np.testing.assert_array_equal(plain.instance, render(meshes, _K_DIST, np.eye(4), 320, 240).instance)


# --- light -------------------------------------------------------------------------------------------


def test_directional_light_is_double_sided():
    # A horizontal floor (map z = 0) lit from straight above: full colour from above, ambient from below.
    floor = np.array([[-5.0, -5.0, 0.0], [5.0, -5.0, 0.0], [0.0, 6.0, 0.0]])
    light = Light(direction_map=(0.0, 0.0, -1.0), ambient=0.3)
    K = pinhole_intrinsics(40, 30, 60.0)
    for eye, expected in (([0.0, -1.0, 1.5], 200), ([0.0, -1.0, -1.5], np.rint(200 * 0.3))):
        T = look_at_camera(eye, [0.0, 1.0, 0.0])
        out = render([(floor, [[0, 1, 2]], (200, 200, 200))], K, T, 40, 30, light=light)
        assert (out.instance == 0).sum() > 100
        assert (out.rgb[out.instance == 0] == expected).all()
    grazing = render([(floor, [[0, 1, 2]], (200, 200, 200))], K, look_at_camera([0.0, -1.0, 1.5], [0.0, 1.0, 0.0]),
                     40, 30, light=Light(direction_map=(1.0, 0.0, 0.0), ambient=0.3))
    assert (grazing.rgb[grazing.instance == 0] == 60).all()  # light along the floor: ambient only


# --- input errors and speed --------------------------------------------------------------------------


def test_render_input_errors():
    tri = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    with pytest.raises(InputError, match="K"):
        render([(tri, [[0, 1, 2]], (1, 2, 3))], np.eye(2), np.eye(4), 10, 10)
    with pytest.raises(InputError, match="faces"):
        render([(tri, [[0, 1, 3]], (1, 2, 3))], _K100, np.eye(4), 10, 10)
    with pytest.raises(InputError, match="colors"):
        render([(tri, [[0, 1, 2]], np.zeros((2, 3)))], _K100, np.eye(4), 10, 10)
    with pytest.raises(InputError, match="non-finite"):
        render([(tri * np.nan, [[0, 1, 2]], (1, 2, 3))], _K100, np.eye(4), 10, 10)
    with pytest.raises(InputError, match="T_camera_map"):
        render([(tri, [[0, 1, 2]], (1, 2, 3))], _K100, np.zeros((4, 4)), 10, 10)
    with pytest.raises(InputError, match="width, height"):
        render([(tri, [[0, 1, 2]], (1, 2, 3))], _K100, np.eye(4), 0, 10)
    with pytest.raises(InputError, match="light.ambient"):
        render([(tri, [[0, 1, 2]], (1, 2, 3))], _K100, np.eye(4), 10, 10, light=Light(ambient=2.0))
    with pytest.raises(InputError, match="distortion"):
        render([(tri, [[0, 1, 2]], (1, 2, 3))], _K100, np.eye(4), 10, 10, distortion=np.ones(9))


def _room_and_bodies(num_bodies: int):
    """A 6 x 5 x 2.6 m room (walls and floor subdivided, ~12k faces) and SMPL-sized stand-in bodies."""
    import trimesh

    room = trimesh.creation.box(extents=(6.0, 5.0, 2.6))
    for _ in range(5):
        room = room.subdivide()
    room_vertices = room.vertices + [0.0, 0.0, 1.3]
    body = trimesh.creation.icosphere(subdivisions=5, radius=0.3)
    body_faces = body.faces[:NUM_FACES]  # the SMPL face count
    meshes = [(room_vertices, room.faces, (200, 190, 170))]
    meshes += [(body.vertices * [1.0, 1.0, 2.8] + [-1.0 + 0.7 * k, 0.5, 0.9], body_faces, (210, 160, 130))
               for k in range(num_bodies)]
    return meshes


def test_render_room_and_four_bodies_is_fast():
    meshes = _room_and_bodies(4)
    K = pinhole_intrinsics(640, 480, 65.0)
    T = look_at_camera([0.5, -2.3, 1.4], [0.0, 0.5, 0.9])
    render(meshes, K, T, 640, 480)  # rays are cached per calibration
    start = time.perf_counter()
    out = render(meshes, K, T, 640, 480)
    assert time.perf_counter() - start < 1.5  # ~50 ms on an idle 2-core machine; generous for CI load
    assert (out.instance >= 0).all()  # the room surrounds the camera
    assert {1, 2, 3, 4} <= set(np.unique(out.instance))


def test_silhouettes_of_a_garbage_mesh_are_quick():
    # untrained networks can output a mesh whose triangles span the whole image
    rng = np.random.default_rng(0)
    vertices = rng.uniform([-2.0, -1.5, 1.0], [2.0, 1.5, 1.3], size=(NUM_VERTICES, 3))
    faces = rng.integers(0, NUM_VERTICES, (NUM_FACES, 3))
    start = time.perf_counter()
    mask = silhouettes([(vertices, faces)], pinhole_intrinsics(640, 480, 65.0), np.eye(4), 640, 480)[0]
    assert time.perf_counter() - start < 3.0
    assert mask.mean() > 0.9
