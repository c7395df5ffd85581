"""Batched per-frame steps (issue 12) against brute-force per-person references written here.

The ROI query, the voxel feature sampling, the refined root, the contact split and the fixed-size
contact sets handle all B persons of a frame at once; each is compared with a per-person loop
(numpy norms, ``torch.softmax``, one ``grid_sample`` per person), including persons without ROI
points, persons with non-finite anchors, and B = 0 / 1.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sahmr_ros import constants as C
from sahmr_ros.geometry import in_crop_frustum, invert_transform, roi_anchors, transform_points
from sahmr_ros.networks.rcnet import (
    RCNet,
    RootEstimate,
    _refined_roots,
    fixed_size_contacts_batch,
    voxelise_roi_points,
)
from sahmr_ros.networks.sahmr import SAHMRConfig
from sahmr_ros.scene import Scene

K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])


def _camera_pose():
    # camera at (0, -3, 1.2) in the map looking along +y: optical z = map y, x = map x, y = -map z
    T = np.eye(4)
    T[:3, :3] = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    T[:3, 3] = [0.0, -3.0, 1.2]
    return T


def _roi_reference(room, T, anchors, box):
    """One person's ROI by brute force: norms to the 3 anchors over the whole cloud, in scene order."""
    if not np.isfinite(anchors).all():
        return np.zeros((0, 3))
    cam = transform_points(invert_transform(T), room.astype(np.float64))
    near = (np.linalg.norm(cam[:, None, :] - anchors[None], axis=2) <= C.ROI_RADIUS_M).any(axis=1)
    return cam[near & in_crop_frustum(cam, K, box)]


@pytest.fixture(scope="module")
def room():
    rng = np.random.default_rng(0)
    return rng.uniform([-3, -1, 0], [3, 4, 2.5], size=(20000, 3)).astype(np.float32)


def _persons():
    """Anchors (6, 3, 3) and boxes (6, 4): overlapping ROIs, one far from the room, one NaN."""
    roots = np.array([[0.1, 0.2, 3.0], [0.4, 0.0, 3.2], [-1.0, 0.3, 2.5], [0.0, 0.0, 40.0],
                      [np.nan, 0.0, 3.0], [0.8, -0.2, 3.9]])
    boxes = np.array([[150.0, 60, 490, 400], [200, 80, 480, 360], [20, 100, 300, 380], [150, 60, 490, 400],
                      [150, 60, 490, 400], [300, 0, 640, 340]])
    return roi_anchors(roots), boxes


@pytest.mark.parametrize("subset", [[0, 1, 2, 3, 4, 5], [0], [3], [4], []], ids=["six", "one", "empty", "nan", "none"])
def test_batched_roi_matches_brute_force_per_person(room, subset):
    T = _camera_pose()
    anchors, boxes = _persons()
    anchors, boxes = anchors[subset], boxes[subset]
    points, person = Scene(room, pitch=None).roi_points_camera_batch(anchors, T, K, boxes)
    assert points.shape == (len(person), 3) and points.dtype == np.float64 and person.dtype == np.int64
    assert np.all(np.diff(person) >= 0)
    for b in range(len(subset)):
        ref = _roi_reference(room, T, anchors[b], boxes[b])
        # same points in the same (scene index) order; the camera transform is the same arithmetic
        np.testing.assert_allclose(points[person == b], ref, rtol=0, atol=1e-12)
    if subset == list(range(6)):
        counts = np.bincount(person, minlength=6)
        assert (counts[[0, 1, 2, 5]] > 100).all() and counts[3] == 0 and counts[4] == 0


def test_single_person_roi_is_the_batch_row_and_independent_of_the_others(room):
    T = _camera_pose()
    anchors, boxes = _persons()
    scene = Scene(room, pitch=None)
    points, person = scene.roi_points_camera_batch(anchors, T, K, boxes)
    for b in range(len(boxes)):
        np.testing.assert_array_equal(scene.roi_points_camera(anchors[b], T, K, boxes[b]), points[person == b])


def test_batched_roi_of_an_empty_scene_is_empty():
    anchors, boxes = _persons()
    points, person = Scene(np.zeros((0, 3))).roi_points_camera_batch(anchors, np.eye(4), K, boxes)
    assert points.shape == (0, 3) and person.shape == (0,)


# --- refined root: segment softmax -----------------------------------------------------------------
def _voxels(counts, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts, dtype=torch.int64))
    conf = torch.randn(len(batch), generator=g, dtype=torch.float64).float() * 3
    votes = (torch.randn(len(batch), 3, generator=g) * 0.3 + torch.tensor([0.3, 0.2, 3.0])).float()
    return batch, conf, votes


@pytest.mark.parametrize("counts", [[700, 0, 1500, 1, 40], [900], [0], []], ids=["five", "one", "no-voxels", "B0"])
def test_refined_roots_match_a_per_person_softmax(counts):
    batch, conf, votes = _voxels(counts)
    anchor = torch.arange(3.0 * len(counts)).reshape(-1, 3)
    conf.requires_grad_(True)
    votes.requires_grad_(True)
    got = _refined_roots(anchor, conf, votes, batch)
    assert got.dtype == torch.float32 and got.shape == (len(counts), 3)
    refs = []
    for b, n in enumerate(counts):
        m = batch == b
        if n == 0:
            refs.append(anchor[b].double())
            continue
        w = torch.softmax(torch.sigmoid(conf[m].double()), dim=0)
        refs.append((w[:, None] * votes[m].double()).sum(0))
    if not counts:
        return
    ref = torch.stack(refs)
    torch.testing.assert_close(got.double(), ref, rtol=1e-6, atol=2e-7)  # float64 sums rounded to float32
    if sum(counts) == 0:
        return
    # gradients reach the confidences and the votes as through the per-person softmax
    g_got = torch.autograd.grad(got.sum(), (conf, votes), allow_unused=True)
    g_ref = torch.autograd.grad(ref.sum(), (conf, votes), allow_unused=True)
    for a, b in zip(g_got, g_ref):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a.double(), b.double(), rtol=1e-5, atol=1e-7)


def test_non_finite_refined_root_keeps_the_anchor():
    batch, conf, votes = _voxels([30, 30])
    conf = conf.clone()
    conf[:30] = float("nan")
    anchor = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    got = _refined_roots(anchor, conf, votes, batch)
    assert torch.equal(got[0], anchor[0]) and torch.isfinite(got[1]).all() and not torch.equal(got[1], anchor[1])


# --- feature sampling: one grid_sample for the batch ------------------------------------------------------
def _sampling_inputs(counts, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = len(counts)
    fmap = torch.randn(B, 32, 56, 56, generator=g, requires_grad=True)
    root = RootEstimate(torch.zeros(B, 3), fmap, *(torch.zeros(B, 56, 56),) * 2, torch.zeros(B, 7, 56, 56))
    batch = torch.repeat_interleave(torch.arange(B), torch.tensor(counts, dtype=torch.int64))
    centers = (torch.rand(len(batch), 3, generator=g) - 0.5) * torch.tensor([0.8, 0.8, 1.0]) + torch.tensor([0, 0, 3.0])
    bbx = torch.tensor([[220.0, 100.0, 420.0, 300.0]], dtype=torch.float64).repeat(B, 1) + 20 * torch.arange(B)[:, None]
    Kt = torch.tensor([[600.0, 0.0, 320.0], [0.0, 600.0, 240.0], [0.0, 0.0, 1.0]], dtype=torch.float64).expand(B, 3, 3)
    return root, centers, batch, bbx, Kt


@pytest.mark.parametrize("counts", [[300, 0, 1200, 5], [400]], ids=["four", "one"])
def test_sampled_features_match_one_grid_sample_per_person(counts):
    root, centers, batch, bbx, Kt = _sampling_inputs(counts)
    got = RCNet._sample_features(root, centers, batch, bbx, Kt)
    assert got.shape == (len(batch), 32)
    ref = torch.zeros_like(got)
    for b in range(len(counts)):
        m = batch == b
        c = centers[m].double()
        uvw = c @ Kt[b].T
        uv = uvw[:, :2] / uvw[:, 2:]
        lu, rb = bbx[b, :2], bbx[b, 2:]
        grid = ((uv - lu) / (rb - lu) * 2 - 1).float()
        s = F.grid_sample(root.feature_map[b:b + 1], grid[None, :, None, :], align_corners=True)  # (1, C, n, 1)
        ref = ref.index_put((m.nonzero()[:, 0],), s[0, :, :, 0].T)
    assert (ref != 0).any(dim=1).float().mean() > 0.5  # most voxels project inside their crop
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(1))
    (g_got,) = torch.autograd.grad((got * w).sum(), root.feature_map)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), root.feature_map)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-6, atol=1e-6)


# --- voxelisation and contact split ------------------------------------------------------------------
def test_voxelise_handles_no_persons_and_empty_persons():
    points, point_batch, coords, point_voxel = voxelise_roi_points([])
    assert points.shape == (0, 3) and point_batch.shape == (0,) and coords.shape == (0, 4)
    roi = [torch.zeros(0, 3, dtype=torch.float64), torch.rand(50, 3, dtype=torch.float64), torch.zeros(0, 3)]
    points, point_batch, coords, point_voxel = voxelise_roi_points(roi)
    assert torch.equal(point_batch, torch.ones(50, dtype=torch.int64)) and (coords[:, 0] == 1).all()
    assert torch.equal(coords[point_voxel, 1:], torch.floor(roi[1].float() / C.CONTACT_VOXEL_M).long())


@pytest.fixture(scope="module")
def rcnet():
    torch.manual_seed(0)
    return RCNet(SAHMRConfig.small().rcnet).eval()


def _contact_inputs(counts, seed=0):
    g = torch.Generator().manual_seed(seed)
    roots = torch.tensor([[0.2, 0.1, 3.7], [-0.4, 0.3, 4.1], [0.5, -0.2, 3.2], [0.0, 0.0, 5.0]])[: len(counts)]
    roi = [(roots[b] + (torch.rand(n, 3, generator=g) - 0.5) * 2.0).double() for b, n in enumerate(counts)]
    root, _, _, bbx, Kt = _sampling_inputs(counts, seed)
    root.root_camera = roots
    return root, roi, bbx, Kt


def test_contacts_of_a_batch_match_the_per_person_formulas(rcnet):
    counts = [1500, 0, 800]
    root, roi, bbx, Kt = _contact_inputs(counts)
    with torch.no_grad():
        out = rcnet.estimate_contacts(root, roi, bbx, Kt)
    assert out.num_voxels.tolist()[1] == 0 and torch.equal(out.root_camera[1], root.root_camera[1])
    centres = {}
    for i, c in enumerate(out.voxel_centers.tolist()):
        centres[(int(out.voxel_batch[i]), *c)] = i
    for b, pts in enumerate(roi):
        cells = torch.floor(pts.float() / C.CONTACT_VOXEL_M)
        vc = (cells * C.CONTACT_VOXEL_M + C.CONTACT_VOXEL_M / 2).tolist()
        labels = out.voxel_labels[[centres[(b, *c)] for c in vc]] if len(pts) else torch.zeros(0, dtype=torch.int64)
        assert torch.equal(out.contact_points[b], pts.float()[labels != 0])
        assert torch.equal(out.contact_labels[b], labels[labels != 0])
        m = out.voxel_batch == b
        if m.any():
            o = out.voxel_outputs[m].double()
            w = torch.softmax(torch.sigmoid(o[:, 0]), dim=0)
            expected = (w[:, None] * (out.voxel_centers[m].double() + o[:, 1:4])).sum(0)
            torch.testing.assert_close(out.root_camera[b].double(), expected, rtol=1e-6, atol=2e-7)


def test_contacts_of_a_batch_match_one_call_per_person(rcnet):
    counts = [1500, 0, 800, 300]
    root, roi, bbx, Kt = _contact_inputs(counts)
    with torch.no_grad():
        out = rcnet.estimate_contacts(root, roi, bbx, Kt)
        for b in range(len(counts)):
            maps = (torch.zeros(1, 56, 56),) * 2
            one = RootEstimate(root.root_camera[b:b + 1], root.feature_map[b:b + 1], *maps, torch.zeros(1, 7, 56, 56))
            single = rcnet.estimate_contacts(one, roi[b:b + 1], bbx[b:b + 1], Kt[b:b + 1])
            m = out.voxel_batch == b
            torch.testing.assert_close(out.voxel_outputs[m], single.voxel_outputs, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(out.root_camera[b], single.root_camera[0], rtol=1e-5, atol=1e-5)
            assert torch.equal(out.contact_points[b], single.contact_points[0])


def test_gradients_flow_through_the_refined_root_and_the_sampled_features(rcnet):
    root, roi, bbx, Kt = _contact_inputs([600, 0, 400])
    rcnet.train()
    try:
        out = rcnet.estimate_contacts(root, roi, bbx, Kt)
    finally:
        rcnet.eval()
    (out.root_camera.sum() + out.voxel_outputs[:, 4:].sum()).backward()
    g = root.feature_map.grad
    assert g is not None and g[0].abs().sum() > 0 and g[2].abs().sum() > 0 and g[1].abs().sum() == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in rcnet.contact_net.parameters())


# --- fixed-size contact sets -----------------------------------------------------------------------------
def _fixed_reference(points, labels, n, origin):
    k = len(points)
    p = points - origin
    if k > n:
        idx = torch.tensor([(i * k) // n for i in range(n)], dtype=torch.int64)
        return p[idx], labels[idx]
    pad = n - k
    return torch.cat([p, torch.zeros(pad, 3, dtype=p.dtype)]), torch.cat([labels, torch.zeros(pad, dtype=torch.int64)])


@pytest.mark.parametrize("sizes", [[0, 3, 10, 25, 7], [0], [40], []], ids=["mixed", "empty", "one", "B0"])
def test_fixed_size_contacts_batch_equals_the_per_person_picks(sizes):
    n = 10
    g = torch.Generator().manual_seed(0)
    points = [torch.rand(k, 3, generator=g) for k in sizes]
    labels = [torch.randint(1, 8, (k,), generator=g) for k in sizes]
    origin = torch.rand(len(sizes), 3, generator=g)
    pts, lab = fixed_size_contacts_batch(points, labels, n, origin=origin)
    assert pts.shape == (len(sizes), n, 3) and lab.shape == (len(sizes), n) and lab.dtype == torch.int64
    for b, k in enumerate(sizes):
        ref_p, ref_l = _fixed_reference(points[b], labels[b], n, origin[b])
        assert torch.equal(pts[b], ref_p) and torch.equal(lab[b], ref_l)
    pts0, lab0 = fixed_size_contacts_batch(points, labels, n)  # without an origin
    for b in range(len(sizes)):
        assert torch.equal(pts0[b], _fixed_reference(points[b], labels[b], n, torch.zeros(3))[0])
