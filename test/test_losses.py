"""Loss terms and training targets of SA-HMR on hand-computed cases, naive references and finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.evaluation.metrics import contact_ground_truth_labels
from sahmr_ros.geometry import root_from_heatmaps, square_crop_boxes
from sahmr_ros.training import (
    HEATMAP_KERNEL,
    MESH_LOSS_WEIGHTS,
    RCNET_LOSS_WEIGHTS,
    contact_point_loss,
    flip_part_heatmaps,
    heatmap_cell,
    mean_l1_loss,
    part_heatmap_loss,
    part_heatmap_target,
    pelvis_depth_loss,
    pelvis_depth_target,
    pelvis_heatmap_loss,
    pelvis_heatmap_target,
    refined_root_loss,
    voxel_contact_labels,
    voxel_contact_loss,
    voxel_offset_loss,
    voxel_offset_target,
)
from sahmr_ros.training.batch import augmented_crop_boxes

KERNEL = torch.tensor(HEATMAP_KERNEL, dtype=torch.float64)


def _camera(B: int = 1):
    K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 100.0, 50.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return K.expand(B, 3, 3).clone(), torch.tensor([[0.0, 0.0, 110.0, 110.0]], dtype=torch.float64).expand(B, 4)


# --- weights ------------------------------------------------------------------------------------------
def test_official_loss_weights():
    """configs/pose/rich/rcnet.yaml and sahmr.yaml: depth x10, every other term x1."""
    assert RCNET_LOSS_WEIGHTS == {"pelvis_heatmap": 1.0, "pelvis_depth": 10.0, "voxel_contact": 1.0,
                                  "voxel_offset": 1.0, "refined_root": 1.0, "part_heatmaps": 1.0,
                                  "part_heatmaps_flip": 1.0}
    assert MESH_LOSS_WEIGHTS == {"vertices": 1.0, "joints": 1.0, "contact_points": 1.0, "vertices_camera": 1.0}


# --- image targets ------------------------------------------------------------------------------------
def test_heatmap_cell_hand_computed():
    """Principal point at the box's 50/110 -> 50 / 110 * 55 = 25; corners clamp to 1 and 54."""
    K, bbx = _camera(3)
    roots = torch.tensor([[0.0, 0.0, 2.0], [-1.0, -1.0, 2.0], [1.2, 1.2, 2.0]], dtype=torch.float64)
    # uv: (50, 50), (0, 0) -> cell 0 -> 1, (110, 110) -> 55 -> 54
    assert heatmap_cell(roots, K, bbx).tolist() == [[25, 25], [1, 1], [54, 54]]
    # x and y separately: uv = (50 + 100 * 0.3 / 2, 50 - 100 * 0.2 / 2) = (65, 40) -> (32.5 -> 32 (half to even), 20)
    assert heatmap_cell(torch.tensor([[0.3, -0.2, 2.0]], dtype=torch.float64), K[:1], bbx[:1]).tolist() == [[32, 20]]


def test_pelvis_heatmap_target_is_the_kernel_at_the_cell():
    hm = pelvis_heatmap_target(torch.tensor([[25, 7], [1, 54]]))
    assert hm.shape == (2, 56, 56) and hm.dtype == torch.float32
    assert torch.equal(hm[0, 6:9, 24:27].double(), KERNEL)
    assert hm[0].sum() == 4.0 and hm[0].argmax() == 7 * 56 + 25
    assert torch.equal(hm[1, 53:56, 0:3].double(), KERNEL) and hm[1].sum() == 4.0


def test_depth_target_round_trips_through_the_pipeline_root():
    """d = Z w / f_x, and root_from_heatmaps (the pipeline's Z = d f_x / w) reads Z back at the target cell."""
    K, bbx = _camera(2)
    K[1, 0, 0] = 250.0
    bbx = torch.tensor([[0.0, 0.0, 110.0, 110.0], [10.0, 20.0, 70.0, 80.0]], dtype=torch.float64)
    roots = torch.tensor([[0.1, -0.2, 3.0], [-0.3, 0.4, 6.5]], dtype=torch.float64)
    d = pelvis_depth_target(roots, K, bbx)
    assert d.tolist() == pytest.approx([3.0 * 110 / 100, 6.5 * 60 / 250])
    cell = heatmap_cell(roots, K, bbx)
    heat = pelvis_heatmap_target(cell).double()
    depth_map = d[:, None, None].expand(2, 56, 56).clone()
    back = root_from_heatmaps(heat, depth_map, bbx, K)
    assert back[:, 2].tolist() == pytest.approx(roots[:, 2].tolist(), rel=1e-12)
    # x, y within half a heatmap cell (w / 55 / 2 pixels) back-projected at Z
    half_cell_m = (bbx[:, 2] - bbx[:, 0]) / 55 / 2 * roots[:, 2] / K[:, 0, 0]
    assert ((back[:, :2] - roots[:, :2]).abs() <= half_cell_m[:, None] + 1e-12).all()


def test_part_heatmap_target_hand_computed():
    """One left-foot point -> the kernel in channel 0; two neighbouring back points -> blurred, clamped to 1."""
    K, bbx = _camera()
    z = 2.0
    # pixel (50, 50) -> cell (25, 25); pixel 52 -> 52 / 110 * 55 = 26 -> cell (26, 25)
    pts = torch.tensor([[0.0, 0.0, z], [0.0, 0.0, z], [0.02 * z / 1.0 * 1.0, 0.0, z], [0.3, 0.3, z]],
                       dtype=torch.float64)
    pts[2, 0] = (52 - 50) * z / 100
    labels = torch.tensor([1, 5, 5, 0])
    hm = part_heatmap_target(pts, labels, K[0], bbx[0])
    assert hm.shape == (7, 56, 56) and hm.dtype == torch.float32
    assert torch.equal(hm[0, 24:27, 24:27].double(), KERNEL) and hm[0].sum() == 4.0
    expected = torch.zeros(56, 56, dtype=torch.float64)
    expected[24:27, 24:27] += KERNEL
    expected[24:27, 25:28] += KERNEL
    assert torch.equal(hm[4].double(), expected.clamp_max(1.0))
    assert hm[[1, 2, 3, 5, 6]].abs().sum() == 0  # label 0 and the other parts: nothing
    # points projecting outside the box are dropped
    outside = part_heatmap_target(torch.tensor([[2.0, 0.0, z]], dtype=torch.float64), torch.tensor([3]), K[0], bbx[0])
    assert outside.abs().sum() == 0


def test_flip_part_heatmaps_mirrors_and_swaps_left_right():
    hm = torch.zeros(1, 7, 56, 56)
    hm[0, 0, 10, 3] = 1.0  # left foot (label 1) at column 3
    hm[0, 3, 20, 50] = 2.0  # right hand (label 4)
    hm[0, 4, 30, 0] = 3.0  # back (label 5)
    f = flip_part_heatmaps(hm)
    assert f[0, 1, 10, 52] == 1.0 and f[0, 2, 20, 5] == 2.0 and f[0, 4, 30, 55] == 3.0
    assert f.sum() == 6.0
    assert torch.equal(flip_part_heatmaps(f), hm)
    assert tuple(C.CONTACT_PART_FLIP) == (1, 0, 3, 2, 4, 5, 6)


def test_augmented_crop_boxes():
    boxes = np.array([[100.0, 50.0, 180.0, 250.0], [10.0, 10.0, 30.0, 20.0]])
    assert np.array_equal(augmented_crop_boxes(boxes, None, augment=False), square_crop_boxes(boxes))
    a = augmented_crop_boxes(boxes, np.random.default_rng(3), augment=True)
    assert np.array_equal(a, augmented_crop_boxes(boxes, np.random.default_rng(3), augment=True))
    centre_shift = (a[:, :2] + a[:, 2:]) / 2 - (boxes[:, :2] + boxes[:, 2:]) / 2
    assert (np.abs(centre_shift) <= 10.0).all() and np.abs(centre_shift).max() > 0
    scale = (a[:, 2] - a[:, 0]) / np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert ((scale >= 1.15) & (scale <= 1.55)).all()
    with pytest.raises(InputError, match="rng"):
        augmented_crop_boxes(boxes, None, augment=True)


# --- scene targets ------------------------------------------------------------------------------------
def test_voxel_contact_labels_hand_computed():
    """Strictly within 7 cm of a part vertex -> its part; part-0 vertices and excluded parts ignored."""
    verts = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 2.0], [0.0, 1.0, 2.0], [0.1, 0.0, 2.0]])
    parts = torch.tensor([1, 0, 3, 5])
    centers = torch.tensor([
        [0.0, 0.0, 2.069],  # 6.9 cm from the part-1 vertex -> 1
        [0.0, 0.0, 1.925],  # 7.5 cm -> 0
        [1.0, 0.0, 2.01],  # next to a part-0 vertex -> 0
        [0.0, 1.0, 2.0],  # on the hand (part 3)
        [0.06, 0.0, 2.0],  # 6 cm from part 1, 4 cm from part 5 -> nearest: 5
    ])
    assert voxel_contact_labels(centers, verts, parts).tolist() == [1, 0, 0, 3, 5]
    assert voxel_contact_labels(centers, verts, parts, exclude_parts=(3, 4)).tolist() == [1, 0, 0, 0, 5]
    assert voxel_contact_labels(centers[:0], verts, parts).shape == (0,)


def test_voxel_contact_labels_match_the_kdtree_reference():
    """The same rule as the evaluation's contact_ground_truth_labels (brute force vs cKDTree)."""
    g = torch.Generator().manual_seed(0)
    verts = torch.rand(300, 3, generator=g)
    parts = torch.randint(0, 8, (300,), generator=g)
    centers = torch.rand(2000, 3, generator=g) * 1.2 - 0.1
    got = voxel_contact_labels(centers, verts, parts, chunk=257)
    ref = contact_ground_truth_labels(centers.double().numpy(), verts.double().numpy(), parts.numpy())
    assert (got.numpy() != 0).sum() > 100
    assert np.array_equal(got.numpy(), ref)


def test_voxel_offset_target():
    roots = torch.tensor([[0.0, 0.0, 2.0], [1.0, 1.0, 3.0]])
    centers = torch.tensor([[0.025, 0.025, 2.025], [0.975, 1.025, 2.975], [0.0, 0.0, 0.0]])
    got = voxel_offset_target(roots, centers, torch.tensor([0, 1, 1]))
    assert torch.allclose(got, torch.tensor([[-0.025, -0.025, -0.025], [0.025, -0.025, 0.025], [1.0, 1.0, 3.0]]))


# --- loss terms ---------------------------------------------------------------------------------------
def test_pelvis_heatmap_loss_hand_computed():
    target = pelvis_heatmap_target(torch.tensor([[10, 10], [20, 30]]))
    pred = torch.zeros(2, 56, 56)
    pred[1] = target[1]
    pred[1, 0, 0] = 0.5
    # sum of squared kernel entries: 1 + 4 * 0.5^2 + 4 * 0.25^2 = 2.25
    assert pelvis_heatmap_loss(pred, target).tolist() == pytest.approx([2.25, 0.25])
    with pytest.raises(InputError, match="differ in shape"):
        pelvis_heatmap_loss(pred[:, :55], target)


def test_pelvis_depth_loss_hand_computed():
    cell = torch.tensor([[10, 20], [1, 54], [30, 30]])
    target = torch.tensor([2.0, 3.0, 1.0])
    pred = torch.zeros(3, 56, 56)
    pred[0] = 1.5  # |2 - 1.5| * sum(kernel) = 0.5 * 4
    pred[1] = 3.0
    pred[1, 53, 0] = 5.0  # top-left of the window at (x 1, y 54): weight 0.25 * |3 - 5|
    pred[1, 54, 2] = 4.0  # right neighbour: weight 0.5 * 1
    pred[2] = 1.0
    pred[2, 30, 33] = 100.0  # outside the window: ignored
    assert pelvis_depth_loss(pred, target, cell).tolist() == pytest.approx([2.0, 1.0, 0.0])
    with pytest.raises(InputError, match="cells must lie"):
        pelvis_depth_loss(pred, target, torch.tensor([[0, 5], [5, 5], [5, 5]]))


def test_part_heatmap_loss_hand_computed():
    target = torch.zeros(2, 7, 56, 56)
    target[0, 3, 5, 5] = 1.0
    pred = torch.zeros(2, 7, 56, 56)
    pred[0, 0, 1, 1] = 2.0
    pred[1, 6] = 0.5
    assert part_heatmap_loss(pred, target).tolist() == pytest.approx([1.0 + 4.0, 56 * 56 * 0.25])


def test_voxel_losses_hand_computed():
    """Per-person means over each person's voxels; a person without voxels gets 0."""
    vb = torch.tensor([0, 0, 2])
    pred = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [-1.0, 1.0, 1.0]])
    assert voxel_offset_loss(pred, torch.zeros(3, 3), vb, 3).tolist() == pytest.approx([1.5, 0.0, 3.0])
    logits = torch.zeros(3, 8)
    logits[2, 4] = 100.0
    labels = torch.tensor([0, 7, 4])
    assert voxel_contact_loss(logits, labels, vb, 3).tolist() == pytest.approx([math.log(8), 0.0, 0.0], abs=1e-6)
    # cross-entropy of two classes by hand: -log(e^1 / (e^1 + 7 e^0))
    logits = torch.zeros(1, 8)
    logits[0, 2] = 1.0
    ce = -math.log(math.e / (math.e + 7))
    assert voxel_contact_loss(logits, torch.tensor([2]), torch.tensor([0]), 1).item() == pytest.approx(ce)
    empty = voxel_offset_loss(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), 2)
    assert empty.tolist() == [0.0, 0.0]


def test_root_and_mesh_losses_hand_computed():
    assert refined_root_loss(torch.tensor([[1.0, -2.0, 0.5]]), torch.zeros(1, 3)).tolist() == [3.5]
    pred = torch.zeros(2, 4, 3)
    target = torch.zeros(2, 4, 3)
    pred[0, 0] = torch.tensor([1.0, 1.0, 1.0])  # 3 / 4 points
    pred[1, :, 2] = 0.5  # 0.5 on every point
    assert mean_l1_loss(pred, target).tolist() == pytest.approx([0.75, 0.5])
    mask = torch.tensor([[True, False, False, False], [True, True, False, False]])
    pred[1, 3] = 10.0  # masked out
    # padded rows count in the mean: (3 + 0) / 4 and (0.5 + 0.5) / 4
    assert contact_point_loss(pred, target, mask).tolist() == pytest.approx([0.75, 0.25])


@pytest.mark.parametrize("name", ["heatmap", "depth", "parts", "offset", "contact", "root", "l1", "contact_points"])
def test_loss_gradients_match_finite_differences(name):
    """Every term's analytic gradient equals central differences (float64, no kinks at the sample)."""
    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()

    vb = torch.tensor([0, 0, 1, 2, 2, 2])
    part_target = torch.rand(2, 7, 4, 4, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 5, generator=g) > 0.4
    heat_target = pelvis_heatmap_target(torch.tensor([[3, 4], [5, 6]]), size=8).double()
    cases = {
        "heatmap": (lambda p: pelvis_heatmap_loss(p, heat_target), r(2, 8, 8)),
        "depth": (lambda p: pelvis_depth_loss(p, torch.tensor([2.0, 3.0], dtype=torch.float64),
                                              torch.tensor([[3, 4], [1, 6]])), r(2, 8, 8)),
        "parts": (lambda p: part_heatmap_loss(p, part_target),
                  r(2, 7, 4, 4)),
        "offset": (lambda p: voxel_offset_loss(p, torch.full((6, 3), 1.5, dtype=torch.float64), vb, 4), r(6, 3)),
        "contact": (lambda p: voxel_contact_loss(p, torch.tensor([0, 3, 7, 1, 1, 0]), vb, 4), r(6, 8)),
        "root": (lambda p: refined_root_loss(p, torch.full((3, 3), 2.0, dtype=torch.float64)), r(3, 3)),
        "l1": (lambda p: mean_l1_loss(p, torch.full((2, 5, 3), 1.5, dtype=torch.float64)), r(2, 5, 3)),
        "contact_points": (lambda p: contact_point_loss(p, torch.full((2, 5, 3), 1.5, dtype=torch.float64),
                                                        mask), r(2, 5, 3)),
    }
    fn, x = cases[name]
    out = fn(x)
    assert torch.isfinite(out).all()
    assert torch.autograd.gradcheck(lambda p: fn(p), (x,), eps=1e-6, atol=1e-6)
