"""Numerics against the official SA-HMR code: float32 voxelisation, template joints, half precision.

The official model computes its geometry in float32 (zju3dv/SA-HMR ``rc_net.py``,
``torchsparse_utils.initial_voxelize``, ``_smpl.get_r_h36m_verts_joints14``). Every expected value
here is computed independently of the code under test: float32 ``floor(p / 0.05)`` with a float32
divisor tensor, the regressor applied to the posed body, float64 formulas on the returned outputs.

Half precision (``torch.autocast``, fp16 / bf16, on CPU here) may change what the networks output,
but never the geometry derived from given network outputs; the tolerances are stated per test.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from sahmr_ros import constants as C
from sahmr_ros.body import load_body_assets, load_body_model
from sahmr_ros.geometry import root_from_heatmaps
from sahmr_ros.networks.rcnet import voxelise_roi_points
from sahmr_ros.pipeline import Pipeline, PipelineConfig

HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
VOXEL = C.CONTACT_VOXEL_M
# float32 rounding of a coordinate of up to 8 m is 4.8e-7 m; allow a few roundings
GEOMETRY_ATOL_M = 2e-6


def _floor_f32(points: np.ndarray) -> np.ndarray:
    """The official voxel index: float32 points divided by a float32 0.05, floored (independent)."""
    p = torch.as_tensor(np.asarray(points, dtype=np.float32))
    return torch.floor(p / torch.tensor(VOXEL, dtype=torch.float32)).to(torch.int64).numpy()


def _face_points_where_float64_differs(n: int = 40) -> np.ndarray:
    """float32 coordinates on and next to 5 cm voxel faces (0.5 to 8 m, both signs) whose float32
    voxel index differs from the float64 one."""
    faces = (np.arange(-160, 161) * VOXEL).astype(np.float32)
    candidates = [faces]
    for direction in (-np.inf, np.inf):
        x = faces
        for _ in range(3):
            x = np.nextafter(x, np.float32(direction))
            candidates.append(x)
    x = np.unique(np.concatenate(candidates))
    f64 = np.floor(x.astype(np.float64) / VOXEL).astype(np.int64)
    differ = x[_floor_f32(x) != f64]
    assert len(differ) >= n, "the float32 / float64 disagreement these tests need must exist"
    return differ[:: max(1, len(differ) // n)][:n]


def _points_on_faces() -> np.ndarray:
    """(N, 3) float32 points with one coordinate from :func:`_face_points_where_float64_differs`
    (z: the positive ones) and the others inside a voxel, so that each point has its own voxel."""
    x = _face_points_where_float64_differs()
    z = _face_points_where_float64_differs(80)
    z = z[z > 0.5]
    a, b = np.float32(0.0123), np.float32(6.0123)
    pts = [np.stack([x, np.full_like(x, a), np.full_like(x, b)], 1),
           np.stack([np.full_like(x, a), x, np.full_like(x, b)], 1),
           np.stack([np.full_like(z, a), np.full_like(z, a), z], 1)]
    return np.concatenate(pts).astype(np.float32)


@pytest.fixture(scope="module")
def model(synthetic_model_dir):
    return Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu"), weights="untrained").model


# --- 1. voxelisation in float32 --------------------------------------------------------------------
def test_voxelisation_divides_in_float32_as_the_official():
    pts = _points_on_faces()
    roi = [torch.from_numpy(pts[: len(pts) // 2]).double(), torch.from_numpy(pts[len(pts) // 2:]).double()]

    points, point_batch, coords, point_voxel = voxelise_roi_points(roi, VOXEL)
    assert points.dtype == torch.float32 and torch.equal(points, torch.from_numpy(pts))
    expected_cells = _floor_f32(pts)
    # each point's voxel (the assignment contact labels follow) is the official float32 one
    assert np.array_equal(coords[point_voxel, 1:].numpy(), expected_cells)
    assert np.array_equal(coords[point_voxel, 0].numpy(), point_batch.numpy())
    expected_rows = np.unique(np.concatenate([point_batch.numpy()[:, None], expected_cells], 1), axis=0)
    assert np.array_equal(coords.numpy(), expected_rows)
    # and float64 would have put some of them elsewhere
    assert (np.floor(pts.astype(np.float64) / VOXEL).astype(np.int64) != expected_cells).any(axis=1).sum() >= 40


def test_contact_voxels_and_point_labels_follow_the_float32_voxels(model):
    """Through RCNet.estimate_contacts: voxel centres c * 0.05 + 0.025 in float32 of the float32
    voxels, and each ROI point takes the label of its float32 voxel."""
    pts = _points_on_faces()
    g = torch.Generator().manual_seed(0)
    pts = np.concatenate([pts, (torch.rand(400, 3, generator=g) * 1.5 + torch.tensor([-0.7, -0.7, 5.0])).numpy()])
    root = _root_estimate(model, torch.tensor([[0.0, 0.0, 5.6]]))
    K, bbx = _camera(1)
    with torch.inference_mode():
        out = model.estimate_contacts(root, [torch.from_numpy(pts).double()], bbx, K)
    cells = _floor_f32(pts)
    unique_cells = np.unique(cells, axis=0)
    centres = torch.from_numpy(unique_cells).float() * torch.tensor(VOXEL) + torch.tensor(VOXEL / 2)
    assert out.voxel_centers.dtype == torch.float32 and torch.equal(out.voxel_centers, centres)
    row = {tuple(c): i for i, c in enumerate(unique_cells.tolist())}
    labels = out.voxel_labels.numpy()[[row[tuple(c)] for c in cells.tolist()]]
    assert np.array_equal(out.contact_points[0].numpy(), pts[labels != 0])
    assert np.array_equal(out.contact_labels[0].numpy(), labels[labels != 0])


# --- 2. template joints as the official ----------------------------------------------------------------
def test_template_joints14_follow_the_official_formula(synthetic_model_dir, tmp_path):
    """(J v)[J14] - (J v)[pelvis] of the posed body v, with a regressor whose rows do not sum to 1."""
    model_dir = tmp_path / "model"
    shutil.copytree(synthetic_model_dir, model_dir)
    path = model_dir / C.H36M_REGRESSOR_FILENAME
    regressor = np.load(path) * np.linspace(0.9, 1.1, C.NUM_H36M_JOINTS)[:, None]  # row sums 0.9 .. 1.1
    np.save(path, regressor)

    body = load_body_model(model_dir, dtype=torch.float64)
    orient = torch.tensor([[C.TEMPLATE_GLOBAL_ORIENT_X, 0.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        v = body(global_orient=orient).vertices[0].numpy()  # the posed (flipped) body, not pelvis-relative
    joints = regressor @ v
    expected = joints[list(C.H36M_J17_TO_J14)] - joints[C.H36M_PELVIS]

    assets = load_body_assets(model_dir)
    np.testing.assert_allclose(assets.template_joints14, expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(assets.template_vertices, v - joints[C.H36M_PELVIS], atol=1e-6, rtol=0)
    # J (v - pelvis) would be off by (row sum - 1) * pelvis: centimetres here
    wrong = (regressor @ (v - joints[C.H36M_PELVIS]))[list(C.H36M_J17_TO_J14)]
    assert np.abs(wrong - expected).max() > 1e-3


# --- 3. half precision keeps the geometry in float32 ---------------------------------------------------
def _camera(batch: int):
    K = torch.tensor([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    bbx = torch.tensor([[220.0, 100.0, 420.0, 300.0], [300.0, 150.0, 460.0, 310.0]], dtype=torch.float64)
    return K.expand(batch, 3, 3), bbx[:batch]


def _crops(batch: int) -> torch.Tensor:
    return torch.rand(batch, 3, C.CROP_SIZE_PX, C.CROP_SIZE_PX, generator=torch.Generator().manual_seed(3))


def _root_estimate(model, root_camera: torch.Tensor):
    """An fp32 RootEstimate of random crops with the given coarse root (the same for every precision)."""
    K, bbx = _camera(len(root_camera))
    with torch.inference_mode():
        root = model.estimate_root(_crops(len(root_camera)), bbx, K)
    root.root_camera = root_camera.float()
    return root


@pytest.mark.parametrize("precision", sorted(HALF))
def test_coarse_root_is_the_float32_root_of_the_heatmaps_under_autocast(model, precision):
    """Given the heatmap and depth map the network returns, the root is their float32 geometry
    (|error| <= 2e-6 m at 4-8 m; bf16 would round it in 3 cm steps)."""
    K, bbx = _camera(2)
    conv = model.rcnet.root_net.out_conv
    saved = conv.bias[C.ROOT_NET_DEPTH_CHANNEL].item()
    try:
        with torch.no_grad():  # put the roots at 4-8 m: d = Z w_bbox / f_x with Z near 6 m
            conv.bias[C.ROOT_NET_DEPTH_CHANNEL] = 6.0 * 200.0 / 600.0
        with torch.inference_mode(), torch.autocast("cpu", dtype=HALF[precision]):
            root = model.estimate_root(_crops(2), bbx, K)
    finally:
        with torch.no_grad():
            conv.bias[C.ROOT_NET_DEPTH_CHANNEL] = saved
    assert root.root_camera.dtype == torch.float32 and root.depth_map.dtype == torch.float32
    expected = root_from_heatmaps(root.pelvis_heatmap.double(), root.depth_map.double(), bbx, K)
    assert (expected[:, 2] > 4.0).all() and (expected[:, 2] < 8.0).all()
    torch.testing.assert_close(root.root_camera.double(), expected, atol=GEOMETRY_ATOL_M, rtol=0)


@pytest.mark.parametrize("precision", sorted(HALF))
def test_voxels_contacts_and_refined_root_stay_float32_under_autocast(model, precision):
    """Same coarse root and ROI points as fp32: the same voxels bit for bit, contact points that are
    exactly the float32 ROI points, and the refined root equal to the float64 formula on the
    returned confidences and offsets (atol 1e-5 m: a float32 sum over ~1000 voxels at 6-7 m)."""
    g = torch.Generator().manual_seed(1)
    roots = torch.tensor([[0.2, 0.1, 5.7], [-0.4, 0.3, 7.1]])
    roi = [(r + (torch.rand(3000, 3, generator=g) - 0.5) * 2.4).double() for r in roots]
    root = _root_estimate(model, roots)
    K, bbx = _camera(2)
    with torch.inference_mode():
        ref = model.estimate_contacts(root, roi, bbx, K)
        with torch.autocast("cpu", dtype=HALF[precision]):
            half = model.estimate_contacts(root, roi, bbx, K)

    assert torch.equal(half.voxel_centers, ref.voxel_centers) and half.voxel_centers.dtype == torch.float32
    assert torch.equal(half.voxel_batch, ref.voxel_batch) and torch.equal(half.num_voxels, ref.num_voxels)
    for b, points in enumerate(roi):
        contacts = half.contact_points[b]
        assert contacts.dtype == torch.float32
        in_roi = (contacts[:, None, :] == points.float()[None]).all(-1).any(1)
        assert in_roi.all()
    assert half.root_camera.dtype == torch.float32
    out = half.voxel_outputs.double()
    for b in range(2):
        m = half.voxel_batch == b
        w = torch.softmax(torch.sigmoid(out[m, 0]), dim=0)
        expected = (w[:, None] * (half.voxel_centers[m].double() + out[m, 1:4])).sum(0)
        torch.testing.assert_close(half.root_camera[b].double(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("precision", sorted(HALF))
def test_vertices_are_the_network_output_plus_the_root_in_float32(model, precision):
    """vertices_camera = network vertices + refined root, in float32 (atol 2e-6 m at 5-7 m)."""
    g = torch.Generator().manual_seed(2)
    roots = torch.tensor([[0.2, 0.1, 5.7], [-0.4, 0.3, 7.1]])
    roi = [(r + (torch.rand(2000, 3, generator=g) - 0.5) * 2.4).double() for r in roots]
    root = _root_estimate(model, roots)
    K, bbx = _camera(2)
    with torch.inference_mode(), torch.autocast("cpu", dtype=HALF[precision]):
        contacts = model.estimate_contacts(root, roi, bbx, K)
        mesh = model.estimate_mesh(_crops(2), contacts)
    assert mesh.vertices_camera.dtype == torch.float32 and mesh.network.vertices.dtype == torch.float32
    expected = mesh.network.vertices.double() + contacts.root_camera.double()[:, None, :]
    torch.testing.assert_close(mesh.vertices_camera.double(), expected, atol=GEOMETRY_ATOL_M, rtol=0)
    j14 = model.j_regressor14.double()
    torch.testing.assert_close(mesh.joints14_camera.double(), torch.einsum("jv,bvc->bjc", j14, expected),
                               atol=1e-5, rtol=0)
    # the contact points the network got are relative to the float32 refined root
    for b in range(2):
        k = min(len(contacts.contact_points[b]), C.NUM_CONTACT_POINTS)
        valid = mesh.contact_labels_input[b] != 0
        assert int(valid.sum()) == k and mesh.contact_points_input.dtype == torch.float32
