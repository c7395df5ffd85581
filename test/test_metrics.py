"""The evaluation metrics on hand-computed cases and against naive references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.evaluation import metrics as M


@pytest.fixture()
def rng():
    return np.random.default_rng(1234)


def _regressor(rng, num_vertices=C.NUM_VERTICES):
    """A (17, V) non-negative regressor with rows summing to 1 (as the H36M one): it commutes with translation."""
    reg = rng.random((C.NUM_H36M_JOINTS, num_vertices)) * (rng.random((C.NUM_H36M_JOINTS, num_vertices)) < 0.01)
    reg[:, 0] += 1e-3
    return reg / reg.sum(axis=1, keepdims=True)


# --- pose --------------------------------------------------------------------------------------------
def test_translated_mesh_g_errors_equal_offset_and_aligned_errors_vanish(rng):
    gt = rng.normal(size=(2, C.NUM_VERTICES, 3))
    t = np.array([[0.3, -0.4, 1.2], [0.0, 0.05, 0.0]])
    pred = gt + t[:, None, :]
    errors = M.pose_errors(pred, gt, _regressor(rng))
    expected_mm = np.linalg.norm(t, axis=-1) * 1000  # 1300 mm and 50 mm
    np.testing.assert_allclose(errors["g_mpve"], expected_mm, rtol=1e-9)
    np.testing.assert_allclose(errors["g_mpjpe"], expected_mm, rtol=1e-9)
    np.testing.assert_allclose(errors["mpve"], 0, atol=1e-8)
    np.testing.assert_allclose(errors["mpjpe"], 0, atol=1e-8)
    np.testing.assert_allclose(errors["pa_mpjpe"], 0, atol=1e-6)
    np.testing.assert_allclose(M.g_mpve(pred, gt), expected_mm, rtol=1e-9)
    np.testing.assert_allclose(M.g_mpve(pred[0], gt[0]), expected_mm[0], rtol=1e-9)  # no batch axis


def test_pelvis_alignment_uses_each_mesh_h36m_pelvis(rng):
    """MPJPE = mean |e_j| for pred = gt + t + e_j with the pelvis moved by t only (hand-computed)."""
    gt = rng.normal(size=(14, 3))
    offsets = np.zeros((14, 3))
    offsets[0] = [0.03, 0.0, 0.04]  # 50 mm
    offsets[5] = [0.0, 0.1, 0.0]  # 100 mm
    t = np.array([1.0, 2.0, 3.0])
    gt_pelvis = np.array([0.1, 0.2, 0.3])
    got = M.mpjpe(gt + t + offsets, gt, gt_pelvis + t, gt_pelvis)
    assert got == pytest.approx(150 / 14, rel=1e-9)
    assert M.g_mpjpe(gt + t + offsets, gt) > 3000
    with pytest.raises(InputError, match="pred_pelvis"):
        M.mpjpe(gt, gt, np.zeros((2, 3)), np.zeros((2, 3)))


def test_pose_errors_regress_pelvis_from_the_vertices(rng):
    """The pelvis is row 0 of the regressor applied to each mesh (not a separate root estimate)."""
    reg = _regressor(rng)
    gt = rng.normal(size=(C.NUM_VERTICES, 3))
    pred = gt + rng.normal(scale=0.02, size=gt.shape) + [0.5, 0, 0]
    errors = M.pose_errors(pred, gt, reg)
    pj, gj = reg @ pred, reg @ gt
    idx = list(C.H36M_J17_TO_J14)
    assert errors["mpjpe"] == pytest.approx(M.mpjpe(pj[idx], gj[idx], pj[0], gj[0]))
    assert errors["mpve"] == pytest.approx(M.mpve(pred, gt, pj[0], gj[0]))
    assert errors["g_mpjpe"] == pytest.approx(M.g_mpjpe(pj[idx], gj[idx]))
    assert errors["pa_mpjpe"] == pytest.approx(M.pa_mpjpe(pj[idx], gj[idx]))
    with pytest.raises(InputError, match="j_regressor"):
        M.pose_errors(pred, gt, reg[:14])


def test_rotated_scaled_copy_has_zero_pa_mpjpe_but_not_mpjpe(rng):
    gt = rng.normal(scale=0.4, size=(3, 14, 3))
    rot = Rotation.random(3, random_state=7).as_matrix()
    scale = np.array([0.8, 1.0, 1.3])
    t = rng.normal(size=(3, 3))
    pred = scale[:, None, None] * np.einsum("bij,bpj->bpi", rot, gt) + t[:, None, :]
    np.testing.assert_allclose(M.pa_mpjpe(pred, gt), 0, atol=1e-6)
    np.testing.assert_allclose(M.procrustes_align(pred, gt), gt, atol=1e-9)
    pelvis_p, pelvis_g = pred[:, 0], gt[:, 0]
    assert (M.mpjpe(pred, gt, pelvis_p, pelvis_g) > 10).all()


def test_procrustes_matches_scipy_orthogonal_procrustes_on_noisy_copies(rng):
    """Reference: scipy's rotation of the centred points, then the least-squares scale."""
    from scipy.linalg import orthogonal_procrustes

    gt = rng.normal(scale=0.4, size=(5, 14, 3))
    rot = Rotation.random(5, random_state=3).as_matrix()
    pred = 1.2 * np.einsum("bij,bpj->bpi", rot, gt) + rng.normal(scale=0.03, size=gt.shape) + 0.7
    got = M.procrustes_align(pred, gt)
    for b in range(5):
        p, g = pred[b] - pred[b].mean(0), gt[b] - gt[b].mean(0)
        r, _ = orthogonal_procrustes(p, g)  # p @ r ~ g
        assert np.linalg.det(r) > 0
        s = np.sum((p @ r) * g) / np.sum(p**2)
        np.testing.assert_allclose(got[b], s * p @ r + gt[b].mean(0), atol=1e-9)


def test_procrustes_keeps_a_proper_rotation_for_a_mirrored_copy(rng):
    """A mirror image cannot be aligned by a rotation: PA-MPJPE stays > 0 (det fix of the official code)."""
    gt = rng.normal(scale=0.4, size=(14, 3))
    mirrored = gt * [-1, 1, 1]
    assert M.pa_mpjpe(mirrored, gt) > 10
    batched = M.pa_mpjpe(np.stack([mirrored, gt]), np.stack([gt, gt]))
    assert batched[0] == pytest.approx(M.pa_mpjpe(mirrored, gt)) and batched[1] == pytest.approx(0, abs=1e-6)


def test_root_error_in_metres():
    got = M.root_error([[0, 0, 0], [1, 1, 1]], [[0.3, 0.4, 0], [1, 1, 1]])
    np.testing.assert_allclose(got, [0.5, 0.0])


# --- SDF sampling, PenE, ConFE -----------------------------------------------------------------------
def _anisotropic_grid(values_fn):
    # different sizes and extents per axis, so a wrong (x, y, z) order cannot pass
    return M.SDFGrid.from_function(values_fn, [-1.0, -2.0, -0.5], [1.0, 2.0, 0.5], (5, 9, 17))


def test_sampling_at_nodes_returns_node_values(rng):
    base = _anisotropic_grid(lambda p: p[..., 0])
    grid = M.SDFGrid(rng.normal(size=base.values.shape).astype(np.float32), base.bounds_min, base.bounds_max)
    got = M.sample_sdf(grid, grid.node_positions())
    np.testing.assert_allclose(got, grid.values, atol=1e-5)


def test_sampling_between_nodes_is_trilinear_in_xyz_order(rng):
    """A multilinear function is reproduced exactly by trilinear sampling, wherever the point lies."""
    def fn(p):
        return p[..., 0] + 10 * p[..., 1] + 100 * p[..., 2] + 0.5 * p[..., 0] * p[..., 1] * p[..., 2]

    grid = _anisotropic_grid(fn)
    points = rng.uniform([-1, -2, -0.5], [1, 2, 0.5], size=(4, 50, 3))
    np.testing.assert_allclose(M.sample_sdf(grid, points), fn(points), atol=1e-4)
    # the array axes are [x, y, z]: values[i, j, k] is the node at (x_i, y_j, z_k)
    assert grid.values[4, 0, 0] == pytest.approx(fn(np.array([1.0, -2.0, -0.5])))
    # midway between two nodes along one axis: the mean of the two node values
    grid_r = M.SDFGrid(rng.normal(size=grid.values.shape).astype(np.float32), grid.bounds_min, grid.bounds_max)
    nodes = grid_r.node_positions()
    for axis in range(3):
        step = np.zeros(3, int)
        step[axis] = 1
        i, j, k = 2, 3, 4
        a, b = grid_r.values[i, j, k], grid_r.values[i + step[0], j + step[1], k + step[2]]
        mid = (nodes[i, j, k] + nodes[i + step[0], j + step[1], k + step[2]]) / 2
        assert M.sample_sdf(grid_r, mid) == pytest.approx((a + b) / 2, abs=1e-5)


def test_sampling_outside_uses_border_values():
    grid = _anisotropic_grid(lambda p: p[..., 2])  # the plane z = 0
    assert M.sample_sdf(grid, [0.2, 0.3, 2.0]) == pytest.approx(0.5, abs=1e-6)
    assert M.sample_sdf(grid, [5.0, -9.0, -3.0]) == pytest.approx(-0.5, abs=1e-6)


def test_pene_of_vertices_at_known_depths_below_a_plane():
    grid = _anisotropic_grid(lambda p: p[..., 2])  # sdf of the floor z = 0: the height
    vertices = np.array([[0.1, 0.2, -0.1], [0.3, -1.0, -0.05], [-0.5, 1.5, 0.2], [0.0, 0.0, 0.0]])
    sdf = M.sample_sdf(grid, vertices)
    np.testing.assert_allclose(sdf, [-0.1, -0.05, 0.2, 0.0], atol=1e-6)
    assert M.penetration_error(sdf) == pytest.approx(0.15, abs=1e-6)
    out = M.scene_errors(grid, np.stack([vertices, vertices + [0, 0, 0.2]]))
    np.testing.assert_allclose(out["pene"], [0.15, 0.0], atol=1e-6)
    np.testing.assert_allclose(out["confe"], out["pene"])  # no contact labels: ConFE = PenE


def test_pene_inside_a_sphere():
    centre, radius = np.array([0.1, 0.0, 0.0]), 0.5

    def sphere(p):
        return np.linalg.norm(p - centre, axis=-1) - radius

    grid = M.SDFGrid.from_function(sphere, [-0.9, -1.0, -1.0], [1.1, 1.0, 1.0], (41, 41, 41))  # 5 cm nodes
    # vertices at nodes: depths 0.5 (centre), 0.2 and 0.05 inside, 0.1 outside
    vertices = centre + np.array([[0, 0, 0], [0, 0, 0.3], [-0.45, 0, 0], [0, 0.6, 0]])
    assert M.scene_errors(grid, vertices)["pene"] == pytest.approx(0.5 + 0.2 + 0.05, abs=1e-5)


def test_confe_counts_contact_vertices_on_both_sides():
    sdf = np.array([[-0.1, 0.05, 0.2, -0.03], [0.0, 0.0, 0.0, 0.0]])
    contact = np.array([[False, True, False, True], [True, True, False, False]])
    np.testing.assert_allclose(M.contact_fit_error(sdf, contact), [0.1 + 0.05 + 0.03, 0.0])
    np.testing.assert_allclose(M.penetration_error(sdf), [0.13, 0.0])
    np.testing.assert_allclose(M.contact_fit_error(sdf), M.penetration_error(sdf))
    with pytest.raises(InputError, match="contact_mask"):
        M.contact_fit_error(sdf, contact.astype(int))


def test_sdf_grid_rejects_bad_layouts():
    with pytest.raises(InputError, match="sdf.values"):
        M.SDFGrid(np.zeros((4, 4)), [0, 0, 0], [1, 1, 1])
    with pytest.raises(InputError, match="bounds"):
        M.SDFGrid(np.zeros((4, 4, 4)), [0, 0, 0], [1, 0, 1])


# --- contact -----------------------------------------------------------------------------------------
def test_contact_precision_recall_f1_hand_labelled():
    pred = np.array([0, 1, 1, 2, 3, 0, 7])
    gt = np.array([0, 1, 2, 2, 0, 3, 7])
    counts = M.contact_counts(pred, gt)
    s = counts.scores()
    assert (s["contact_precision"], s["contact_recall"], s["contact_f1"]) == pytest.approx((0.6, 0.6, 0.6))
    assert (s["contact_precision/left_foot"], s["contact_recall/left_foot"]) == pytest.approx((0.5, 1.0))
    assert s["contact_f1/left_foot"] == pytest.approx(2 / 3)
    assert (s["contact_precision/right_foot"], s["contact_recall/right_foot"]) == pytest.approx((1.0, 0.5))
    assert s["contact_f1/left_hand"] == 0.0 and s["contact_f1/thighs"] == 1.0
    assert math.isnan(s["contact_precision/right_hand"]) and math.isnan(s["contact_f1/right_hand"])
    assert counts.scores(zero_division=0.0)["contact_precision/right_hand"] == 0.0
    pooled = counts + M.contact_counts(np.array([5, 5]), np.array([5, 0]))
    assert pooled.scores()["contact_precision/back"] == 0.5
    assert pooled.true_positive.sum() == 4 and (M.ContactCounts.zeros() + counts).predicted.sum() == 5


def test_contact_ground_truth_labels_equal_brute_force(rng):
    vertices = rng.uniform(-0.5, 0.5, size=(500, 3))
    parts = rng.integers(0, C.NUM_CONTACT_CLASSES, size=500)
    scene = rng.uniform(-0.6, 0.6, size=(3000, 3))

    def brute(exclude=()):
        keep = (parts != 0) & ~np.isin(parts, exclude)
        d = np.linalg.norm(scene[:, None] - vertices[keep][None], axis=-1)
        nearest = d.argmin(axis=1)
        return np.where(d.min(axis=1) < M.CONTACT_GT_RADIUS_M, parts[keep][nearest], 0)

    got = M.contact_ground_truth_labels(scene, vertices, parts)
    np.testing.assert_array_equal(got, brute())
    assert 0 < (got > 0).mean() < 1
    np.testing.assert_array_equal(M.contact_ground_truth_labels(scene, vertices, parts, exclude_parts=(3, 4)),
                                  brute((3, 4)))


def test_predicted_contact_points_map_onto_scene_points(rng):
    scene = rng.uniform(-1, 1, size=(200, 3))
    chosen = np.array([3, 17, 42, 199])
    labels = np.array([1, 2, 6, 7])
    got = M.labels_on_scene_points(scene, scene[chosen] + 1e-5, labels)
    expected = np.zeros(200, np.int64)
    expected[chosen] = labels
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(M.labels_on_scene_points(scene, np.zeros((0, 3)), np.zeros(0, int)), 0)
    with pytest.raises(InputError, match="contact_points"):
        M.labels_on_scene_points(scene, scene[:2] + 0.5, labels[:2])


# --- aggregation -------------------------------------------------------------------------------------
def test_mean_over_frames_like_the_official_np_mean():
    per_sample = {"g_mpve": [100.0, 200.0, math.nan], "pene": np.array([0.5, 1.5, 1.0])}
    assert math.isnan(M.mean_over_frames(per_sample)["g_mpve"])
    assert M.mean_over_frames(per_sample)["pene"] == 1.0
    assert M.mean_over_frames(per_sample, ignore_nan=True)["g_mpve"] == 150.0


def test_outcome_shares():
    flags = [(), (C.FLAG_NO_SCENE_POINTS,), (C.FLAG_NON_FINITE, C.FLAG_NO_SCENE_POINTS), ()]
    out = M.outcome_shares(flags, num_skipped=1)
    assert out["num_persons"] == 5
    assert (out["flagged"], out["skipped"], out["flagged_or_skipped"]) == pytest.approx((0.4, 0.2, 0.6))
    assert out[f"flag/{C.FLAG_NO_SCENE_POINTS}"] == pytest.approx(0.4)
    assert out[f"flag/{C.FLAG_NON_FINITE}"] == pytest.approx(0.2)
    assert math.isnan(M.outcome_shares([], 0)["flagged"])
