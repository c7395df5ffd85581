"""The paper's metrics, computed as the official SA-HMR evaluation computes them.

Reference: zju3dv/SA-HMR @ c57d244, ``tools/eval_results.py`` (G-MPJPE, G-MPVE, MPJPE, MPVE, PenE,
ConFE), ``lib/evaluators/pose/metrics.py`` and ``utils.py`` (PA-MPJPE with
``compute_similarity_transform``, PelvisE, VoxSeg precision/recall) and
``lib/train/trainers/pose/supervision.py`` (contact ground truth of scene points, 7 cm).

Conventions:

* A *sample* is one person in one image. The official RICH test set has one person per image, so
  its "mean over frames" is a mean over samples; :func:`mean_over_frames` does that.
* Frames: every function takes prediction and ground truth in the **same** frame. The official
  evaluation uses the world frame (predictions moved there with ``T_c2w``); sahmr_ros outputs and the
  synthetic data are in the map frame, which plays that role. Nothing here transforms frames.
* Units: inputs in metres. Pose errors are returned in **millimetres** (the official ``* 1000``);
  PenE / ConFE in SDF units (**metres**, sums over the vertices, no ``* 1000``); root error in metres.
* Batching: pose and scene functions take ``(..., V, 3)`` arrays (any leading batch shape, also
  none) and return ``(...)``. numpy arrays or torch tensors are accepted; results are numpy float64
  (float32 for raw SDF samples). Pose geometry is computed in float64.
* Per-sample values are computed first and averaged afterwards, as the official code does
  (``np.mean`` over the per-frame list): one NaN sample makes the official mean NaN. Persons whose
  estimate is flagged ``non_finite_output`` should be counted by :func:`outcome_shares` and left out
  of the pose means by the caller, or averaged with ``mean_over_frames(..., ignore_nan=True)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError

__all__ = [
    "CONTACT_GT_RADIUS_M",
    "ContactCounts",
    "SDFGrid",
    "contact_counts",
    "contact_fit_error",
    "contact_ground_truth_labels",
    "g_mpjpe",
    "g_mpve",
    "labels_on_scene_points",
    "mean_over_frames",
    "mpjpe",
    "mpve",
    "outcome_shares",
    "pa_mpjpe",
    "penetration_error",
    "pose_errors",
    "procrustes_align",
    "root_error",
    "sample_sdf",
    "scene_errors",
]

# Scene points closer than this to a ground-truth part vertex take that vertex's part (official
# ``PoseTrainer.contact_thr_dist``; strict ``<``).
CONTACT_GT_RADIUS_M = 0.07
_M_TO_MM = 1000.0
_NUM_PARTS = C.NUM_CONTACT_CLASSES - 1  # labels 1..7


# --- input helpers ----------------------------------------------------------------------------------
def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected an array, got {type(x).__name__}") from exc


def _points(x, name: str) -> np.ndarray:
    """(..., 3) float64 points."""
    a = _as_numpy(x, name)
    if a.ndim < 1 or a.shape[-1] != 3 or not np.issubdtype(a.dtype, np.number):
        raise InputError(f"{name}: expected a numeric (..., 3) array, got shape {a.shape} dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def _pair(pred, gt, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    p, g = _points(pred, names[0]), _points(gt, names[1])
    if p.ndim < 2 or p.shape != g.shape:
        raise InputError(f"{names[0]} and {names[1]}: expected the same (..., P, 3) shape, "
                         f"got {p.shape} and {g.shape}")
    return p, g


def _mean_l2_mm(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Mean over the points (axis -2) of the L2 distance, in mm (official ``L2_error(...).mean() * 1000``)."""
    return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1) * _M_TO_MM


# --- pose --------------------------------------------------------------------------------------------
def g_mpjpe(pred_joints14, gt_joints14) -> np.ndarray:
    """G-MPJPE: mean joint L2 error in the world (map) frame, no alignment.

    Args:
        pred_joints14, gt_joints14: (..., 14, 3) H36M evaluation joints (``H36M_J17_TO_J14`` rows of
            the regressor applied to the vertices), metres, same frame.

    Returns:
        (...) millimetres.
    """
    return _mean_l2_mm(*_pair(pred_joints14, gt_joints14, ("pred_joints14", "gt_joints14")))


def g_mpve(pred_vertices, gt_vertices) -> np.ndarray:
    """G-MPVE: mean vertex L2 error in the world (map) frame, no alignment.

    Args:
        pred_vertices, gt_vertices: (..., V, 3) metres (V = 6890, SMPL topology), same frame.

    Returns:
        (...) millimetres.
    """
    return _mean_l2_mm(*_pair(pred_vertices, gt_vertices, ("pred_vertices", "gt_vertices")))


def _pelvis_aligned(pred: np.ndarray, gt: np.ndarray, pred_pelvis, gt_pelvis) -> np.ndarray:
    pp, gp = _points(pred_pelvis, "pred_pelvis"), _points(gt_pelvis, "gt_pelvis")
    if pp.shape != pred.shape[:-2] + (3,) or gp.shape != pp.shape:
        raise InputError(f"pred_pelvis and gt_pelvis: expected shape {pred.shape[:-2] + (3,)}, "
                         f"got {pp.shape} and {gp.shape}")
    aligned = pred - pp[..., None, :] + gp[..., None, :]
    return _mean_l2_mm(aligned, gt)


def mpjpe(pred_joints14, gt_joints14, pred_pelvis, gt_pelvis) -> np.ndarray:
    """MPJPE after pelvis translation alignment: ``pred - pred_pelvis + gt_pelvis``.

    The official pelvis is joint 0 of the 17 H36M joints regressed from each mesh's own vertices
    (not RCNet's root estimate); :func:`pose_errors` computes it so.

    Args:
        pred_joints14, gt_joints14: (..., 14, 3) metres.
        pred_pelvis, gt_pelvis: (..., 3) metres.

    Returns:
        (...) millimetres.
    """
    p, g = _pair(pred_joints14, gt_joints14, ("pred_joints14", "gt_joints14"))
    return _pelvis_aligned(p, g, pred_pelvis, gt_pelvis)


def mpve(pred_vertices, gt_vertices, pred_pelvis, gt_pelvis) -> np.ndarray:
    """MPVE after pelvis translation alignment: ``pred - pred_pelvis + gt_pelvis``.

    Args:
        pred_vertices, gt_vertices: (..., V, 3) metres.
        pred_pelvis, gt_pelvis: (..., 3) H36M pelvis of each mesh, metres.

    Returns:
        (...) millimetres.
    """
    p, g = _pair(pred_vertices, gt_vertices, ("pred_vertices", "gt_vertices"))
    return _pelvis_aligned(p, g, pred_pelvis, gt_pelvis)


def procrustes_align(pred, gt) -> np.ndarray:
    """Similarity transform (scale, rotation, translation) of ``pred`` that best fits ``gt``.

    The standard least-squares solution (Umeyama), as the official ``compute_similarity_transform``:
    ``K = sum (p - mean p)(g - mean g)^T``, ``U S V^T = svd(K)``, ``R = V diag(1, 1, d) U^T`` with
    ``d = sign det(V U^T)`` (a proper rotation), ``s = trace(R K) / sum |p - mean p|^2``.

    Args:
        pred, gt: (..., P, 3).

    Returns:
        (..., P, 3) float64: ``s R pred + t``.
    """
    p, g = _pair(pred, gt, ("pred", "gt"))
    mu_p, mu_g = p.mean(axis=-2, keepdims=True), g.mean(axis=-2, keepdims=True)
    xp, xg = p - mu_p, g - mu_g
    k = np.swapaxes(xp, -1, -2) @ xg  # (..., 3, 3)
    u, _, vh = np.linalg.svd(k)
    v = np.swapaxes(vh, -1, -2)
    d = np.where(np.linalg.det(v @ np.swapaxes(u, -1, -2)) < 0, -1.0, 1.0)
    z = np.broadcast_to(np.eye(3), k.shape).copy()
    z[..., 2, 2] = d
    r = v @ z @ np.swapaxes(u, -1, -2)
    scale = np.trace(r @ k, axis1=-2, axis2=-1) / (xp**2).sum(axis=(-2, -1))
    return scale[..., None, None] * (xp @ np.swapaxes(r, -1, -2)) + mu_g


def pa_mpjpe(pred_joints14, gt_joints14) -> np.ndarray:
    """PA-MPJPE: joint error after :func:`procrustes_align` (official ``PA_MPJPE_metric``).

    Args:
        pred_joints14, gt_joints14: (..., 14, 3) metres (any frame; the alignment removes it).

    Returns:
        (...) millimetres.
    """
    p, g = _pair(pred_joints14, gt_joints14, ("pred_joints14", "gt_joints14"))
    return _mean_l2_mm(procrustes_align(p, g), g)


def pose_errors(pred_vertices, gt_vertices, j_regressor) -> dict[str, np.ndarray]:
    """All pose metrics of one batch, joints and pelvis regressed from the vertices as officially.

    Official ``tools/eval_results.py``: ``joints = J_regressor_h36m @ verts`` for prediction and
    ground truth alike; the pelvis is joint 0 (``H36M_PELVIS``), the 14 evaluation joints are rows
    ``H36M_J17_TO_J14``.

    Args:
        pred_vertices, gt_vertices: (..., V, 3) metres, world (map) frame.
        j_regressor: (17, V) H36M regressor (``J_regressor_h36m_correct.npy``).

    Returns:
        ``{"g_mpjpe", "g_mpve", "mpjpe", "mpve", "pa_mpjpe"}``, each (...) millimetres.
    """
    p, g = _pair(pred_vertices, gt_vertices, ("pred_vertices", "gt_vertices"))
    reg = _as_numpy(j_regressor, "j_regressor").astype(np.float64)
    if reg.shape != (C.NUM_H36M_JOINTS, p.shape[-2]):
        raise InputError(f"j_regressor: expected shape ({C.NUM_H36M_JOINTS}, {p.shape[-2]}), got {reg.shape}")
    pj, gj = reg @ p, reg @ g  # (..., 17, 3)
    pp, gp = pj[..., C.H36M_PELVIS, :], gj[..., C.H36M_PELVIS, :]
    idx = list(C.H36M_J17_TO_J14)
    pj14, gj14 = pj[..., idx, :], gj[..., idx, :]
    return {
        "g_mpjpe": _mean_l2_mm(pj14, gj14),
        "g_mpve": _mean_l2_mm(p, g),
        "mpjpe": _mean_l2_mm(pj14 - pp[..., None, :] + gp[..., None, :], gj14),
        "mpve": _mean_l2_mm(p - pp[..., None, :] + gp[..., None, :], g),
        "pa_mpjpe": _mean_l2_mm(procrustes_align(pj14, gj14), gj14),
    }


def root_error(pred_root, gt_root) -> np.ndarray:
    """Distance between an estimated root (pelvis) and the ground-truth H36M pelvis.

    Use it for RCNet's coarse root and for the refined root alike. The official ``PelvisE_metric``
    reports the same distance in mm (camera frame); the distance is frame independent.

    Args:
        pred_root, gt_root: (..., 3) metres, same frame.

    Returns:
        (...) metres.
    """
    p, g = _points(pred_root, "pred_root"), _points(gt_root, "gt_root")
    if p.shape != g.shape:
        raise InputError(f"pred_root and gt_root: expected the same (..., 3) shape, got {p.shape} and {g.shape}")
    return np.linalg.norm(p - g, axis=-1)


# --- scene: SDF, PenE, ConFE -------------------------------------------------------------------------
@dataclass(frozen=True)
class SDFGrid:
    """A scene's signed distance field on a regular grid, in the layout the official code samples.

    Layout: ``values[i, j, k]`` is the signed distance (metres; negative inside objects) at the grid
    node ``bounds_min + (i, j, k) * (bounds_max - bounds_min) / (shape - 1)``: array axes are
    [x, y, z] of the scene (map / world) frame, the first node lies at ``bounds_min`` and the last at
    ``bounds_max`` (``align_corners=True``). The official files (``*_sdf.npy`` + a JSON with ``min``,
    ``max``, ``dim``) are this layout with X = Y = Z = dim (reshape ``(dim, dim, dim)``); here the
    sizes may differ per axis.

    Attributes:
        values: (X, Y, Z) float32, each size >= 2.
        bounds_min, bounds_max: (3,) float64 positions of the first and last node, metres.
    """

    values: np.ndarray
    bounds_min: np.ndarray
    bounds_max: np.ndarray

    def __post_init__(self):
        values = _as_numpy(self.values, "sdf.values")
        if values.ndim != 3 or min(values.shape) < 2 or not np.issubdtype(values.dtype, np.number):
            raise InputError(f"sdf.values: expected a numeric (X, Y, Z) array with every size >= 2, "
                             f"got shape {values.shape} dtype {values.dtype}")
        lo, hi = _points(self.bounds_min, "sdf.bounds_min"), _points(self.bounds_max, "sdf.bounds_max")
        if lo.shape != (3,) or hi.shape != (3,):
            raise InputError(f"sdf.bounds_min / bounds_max: expected shape (3,), got {lo.shape} and {hi.shape}")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (hi > lo).all()):
            raise InputError(f"sdf.bounds_max must exceed sdf.bounds_min on every axis, got {lo} and {hi}")
        object.__setattr__(self, "values", np.ascontiguousarray(values, dtype=np.float32))
        object.__setattr__(self, "bounds_min", lo.copy())
        object.__setattr__(self, "bounds_max", hi.copy())

    @property
    def spacing(self) -> np.ndarray:
        """(3,) node spacing per axis, metres."""
        return (self.bounds_max - self.bounds_min) / (np.asarray(self.values.shape) - 1)

    def node_positions(self) -> np.ndarray:
        """(X, Y, Z, 3) float64 position of every node (``values``' layout)."""
        axes = [np.linspace(self.bounds_min[a], self.bounds_max[a], self.values.shape[a]) for a in range(3)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    @classmethod
    def from_function(cls, sdf: Callable[[np.ndarray], np.ndarray], bounds_min, bounds_max,
                      shape: Sequence[int]) -> "SDFGrid":
        """Sample ``sdf`` ((..., 3) points -> (...) distances) at the nodes of a grid of ``shape`` (X, Y, Z)."""
        probe = cls(np.zeros(tuple(shape), np.float32), bounds_min, bounds_max)
        return cls(np.asarray(sdf(probe.node_positions()), dtype=np.float32), bounds_min, bounds_max)


def sample_sdf(grid: SDFGrid, points) -> np.ndarray:
    """Trilinear SDF values at points, exactly as the official PenE / ConFE code samples them.

    Official ``tools/eval_results.py``: points normalised to [-1, 1] by ``(p - min) / (max - min) * 2 - 1``,
    passed to ``F.grid_sample`` in (z, y, x) order (grid_sample's last coordinate indexes the last array
    axis, so the array axes are [x, y, z]), ``align_corners=True``, ``padding_mode="border"``: points
    outside the grid take the value at the nearest point of the grid's boundary.

    Args:
        grid: the scene's :class:`SDFGrid`.
        points: (..., 3) metres, the grid's (map / world) frame.

    Returns:
        (...) float32 signed distances, metres.
    """
    pts = _points(points, "points")
    flat = pts.reshape(-1, 3)
    if len(flat) == 0:
        return np.zeros(pts.shape[:-1], np.float32)
    normalised = (flat - grid.bounds_min) / (grid.bounds_max - grid.bounds_min) * 2 - 1
    coords = torch.from_numpy(np.ascontiguousarray(normalised[:, [2, 1, 0]], dtype=np.float32))
    volume = torch.from_numpy(grid.values).view(1, 1, *grid.values.shape)
    out = F.grid_sample(volume, coords.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out.reshape(pts.shape[:-1]).numpy()


def _sdf_values(sdf_at_vertices, name: str = "sdf_at_vertices") -> np.ndarray:
    s = _as_numpy(sdf_at_vertices, name)
    if s.ndim < 1 or not np.issubdtype(s.dtype, np.number):
        raise InputError(f"{name}: expected a numeric (..., V) array, got shape {s.shape} dtype {s.dtype}")
    return s.astype(np.float64, copy=False)


def penetration_error(sdf_at_vertices) -> np.ndarray:
    """PenE: sum over the vertices of ``|sdf|`` where ``sdf < 0`` (inside the scene).

    Args:
        sdf_at_vertices: (..., V) signed distances at the predicted vertices (:func:`sample_sdf`), metres.

    Returns:
        (...) metres (a sum over V = 6890 vertices, not a mean; no ``* 1000``, as officially).
    """
    s = _sdf_values(sdf_at_vertices)
    return np.where(s < 0, np.abs(s), 0.0).sum(axis=-1)


def contact_fit_error(sdf_at_vertices, contact_mask=None) -> np.ndarray:
    """ConFE: ``|sdf|`` summed over ground-truth contact vertices plus the PenE term over the others.

    Official: ``ConFE = cat([PenE[~hsc_mask], |sdf|[hsc_mask]]).sum()``. Without contact labels
    (``contact_mask=None``, as PROX) it equals :func:`penetration_error`.

    Args:
        sdf_at_vertices: (..., V) signed distances at the predicted vertices, metres.
        contact_mask: (..., V) bool, True where the ground-truth vertex touches the scene; or None.

    Returns:
        (...) metres.
    """
    s = _sdf_values(sdf_at_vertices)
    pen = np.where(s < 0, np.abs(s), 0.0)
    if contact_mask is None:
        return pen.sum(axis=-1)
    mask = _as_numpy(contact_mask, "contact_mask")
    if mask.shape != s.shape or mask.dtype != np.bool_:
        raise InputError(f"contact_mask: expected a bool array of shape {s.shape}, got shape {mask.shape} "
                         f"dtype {mask.dtype}")
    return np.where(mask, np.abs(s), pen).sum(axis=-1)


def scene_errors(grid: SDFGrid, pred_vertices, contact_mask=None) -> dict[str, np.ndarray]:
    """Penetration (PenE) and contact fit (ConFE) errors of predicted meshes in one scene.

    Args:
        grid: the scene's SDF.
        pred_vertices: (..., V, 3) predicted vertices, metres, the grid's frame.
        contact_mask: (..., V) bool ground-truth vertex contact, or None (then ConFE = PenE).

    Returns:
        ``{"pene", "confe"}``, each (...) metres.
    """
    v = _points(pred_vertices, "pred_vertices")
    if v.ndim < 2:
        raise InputError(f"pred_vertices: expected a (..., V, 3) array, got shape {v.shape}")
    s = sample_sdf(grid, v)
    return {"pene": penetration_error(s), "confe": contact_fit_error(s, contact_mask)}


# --- contact labels of scene points ------------------------------------------------------------------
def _labels(x, name: str, n: int | None = None) -> np.ndarray:
    a = _as_numpy(x, name)
    if a.ndim != 1 or (n is not None and len(a) != n) or not np.issubdtype(a.dtype, np.integer):
        want = f"({n},)" if n is not None else "(N,)"
        raise InputError(f"{name}: expected a {want} integer array, got shape {a.shape} dtype {a.dtype}")
    if len(a) and (a.min() < 0 or a.max() >= C.NUM_CONTACT_CLASSES):
        raise InputError(f"{name}: labels must lie in 0..{C.NUM_CONTACT_CLASSES - 1}, got {a.min()}..{a.max()}")
    return a.astype(np.int64, copy=False)


def _cloud(x, name: str) -> np.ndarray:
    a = _points(x, name)
    if a.ndim != 2:
        raise InputError(f"{name}: expected an (N, 3) array, got shape {a.shape}")
    return a


def contact_ground_truth_labels(scene_points, vertices, vertex_parts, radius: float = CONTACT_GT_RADIUS_M,
                                exclude_parts: Iterable[int] = ()) -> np.ndarray:
    """Ground-truth contact label of every scene point for one person (SPEC section 6).

    A scene point closer than ``radius`` (strictly) to a ground-truth part vertex takes the part of
    its nearest part vertex; the others are 0. Only vertices with a part (``vertex_parts != 0``, not in
    ``exclude_parts``) are searched, as the official ``spv_pcSeg`` / ``get_w_pcSeg_all`` (which pass
    ``exclude_parts=(3, 4)``, the hands, for PROX).

    Args:
        scene_points: (N, 3) metres.
        vertices: (V, 3) the person's ground-truth vertices, metres, same frame.
        vertex_parts: (V,) integer part of each vertex, 0..7 (``BodyAssets.part_ids_6890``).
        radius: contact distance, metres (0.07 officially).
        exclude_parts: parts whose vertices are ignored.

    Returns:
        (N,) int64 labels in 0..7 (see ``constants.CONTACT_PART_NAMES``).
    """
    pts = _cloud(scene_points, "scene_points")
    verts = _cloud(vertices, "vertices")
    parts = _labels(vertex_parts, "vertex_parts", len(verts))
    keep = (parts != 0) & ~np.isin(parts, list(exclude_parts))
    labels = np.zeros(len(pts), np.int64)
    if not keep.any() or len(pts) == 0:
        return labels
    dist, idx = cKDTree(verts[keep]).query(pts, k=1, distance_upper_bound=radius)
    hit = dist < radius
    labels[hit] = parts[keep][idx[hit]]
    return labels


def labels_on_scene_points(scene_points, contact_points, contact_labels, tolerance: float = 1e-3) -> np.ndarray:
    """Predicted contact label of every scene point, from the predicted (labelled) contact points.

    The pipeline's contact points are points of its scene cloud (``Pipeline.scene.points_map``); each
    is matched to its nearest scene point. Compute the ground truth on that same cloud.

    Args:
        scene_points: (N, 3) metres.
        contact_points: (k, 3) predicted contact points, metres, same frame.
        contact_labels: (k,) their labels in 1..7.
        tolerance: largest accepted distance between a contact point and its scene point, metres.

    Returns:
        (N,) int64: the label of the nearest contact point matched to each scene point, else 0.

    Raises:
        InputError: a contact point lies farther than ``tolerance`` from every scene point (the clouds
            differ), or malformed inputs.
    """
    pts = _cloud(scene_points, "scene_points")
    cps = _cloud(contact_points, "contact_points")
    labs = _labels(contact_labels, "contact_labels", len(cps))
    out = np.zeros(len(pts), np.int64)
    if len(cps) == 0:
        return out
    if len(pts) == 0:
        raise InputError(f"scene_points: empty, but {len(cps)} contact points were given")
    dist, idx = cKDTree(pts).query(cps, k=1)
    far = dist > tolerance
    if far.any():
        raise InputError(f"contact_points: {int(far.sum())} of {len(cps)} lie farther than {tolerance} m from "
                         f"every scene point (up to {dist.max():.4f} m); pass the cloud the pipeline used "
                         f"(Pipeline.scene.points_map) or a larger tolerance")
    order = np.argsort(-dist, kind="stable")  # the nearest contact point is written last and wins
    out[idx[order]] = labs[order]
    return out


@dataclass(frozen=True)
class ContactCounts:
    """Contact counts over scene points, per part; they add up across samples (``a + b``).

    A scene point predicted with label k > 0 is a true positive if its ground-truth label is also k.
    Precision = TP / predicted, recall = TP / ground truth, F1 = 2 TP / (predicted + ground truth),
    overall (sums over the parts, as the official ``VoxSeg_metric`` over labels 1..7) and per part.

    Attributes:
        true_positive, predicted, ground_truth: (7,) int64, index k - 1 for part k.
    """

    true_positive: np.ndarray
    predicted: np.ndarray
    ground_truth: np.ndarray

    def __add__(self, other: "ContactCounts") -> "ContactCounts":
        return ContactCounts(self.true_positive + other.true_positive, self.predicted + other.predicted,
                             self.ground_truth + other.ground_truth)

    @staticmethod
    def zeros() -> "ContactCounts":
        """Empty counts (the start of a sum)."""
        z = np.zeros(_NUM_PARTS, np.int64)
        return ContactCounts(z, z.copy(), z.copy())

    def scores(self, zero_division: float = math.nan) -> dict[str, float]:
        """Precision, recall and F1, overall and per part.

        Args:
            zero_division: value of a ratio whose denominator is 0 (NaN: undefined; the official
                ``VoxSeg_metric`` adds 1e-10 to denominators, i.e. 0.0).

        Returns:
            ``{"contact_precision", "contact_recall", "contact_f1"}`` plus the same keys suffixed
            ``"/<part name>"`` for the 7 parts (``constants.CONTACT_PART_NAMES[1:]``).
        """
        def ratio(num, den):
            return float(num) / float(den) if den else float(zero_division)

        def three(tp, pred, gt):
            return ratio(tp, pred), ratio(tp, gt), ratio(2 * tp, pred + gt)

        out = dict(zip(("contact_precision", "contact_recall", "contact_f1"),
                       three(self.true_positive.sum(), self.predicted.sum(), self.ground_truth.sum())))
        for k, name in enumerate(C.CONTACT_PART_NAMES[1:]):
            p, r, f = three(self.true_positive[k], self.predicted[k], self.ground_truth[k])
            out.update({f"contact_precision/{name}": p, f"contact_recall/{name}": r, f"contact_f1/{name}": f})
        return out


def contact_counts(pred_labels, gt_labels) -> ContactCounts:
    """Count contact true positives, predictions and ground truth over the same scene points.

    Args:
        pred_labels: (N,) predicted label of each scene point, 0..7 (:func:`labels_on_scene_points`).
        gt_labels: (N,) ground-truth label of each scene point, 0..7 (:func:`contact_ground_truth_labels`).

    Returns:
        :class:`ContactCounts`.
    """
    pred = _labels(pred_labels, "pred_labels")
    gt = _labels(gt_labels, "gt_labels", len(pred))
    tp = pred[(pred == gt) & (pred != 0)]

    def per_part(x):
        return np.bincount(x, minlength=C.NUM_CONTACT_CLASSES)[1:].astype(np.int64)

    return ContactCounts(per_part(tp), per_part(pred), per_part(gt))


# --- aggregation -------------------------------------------------------------------------------------
def mean_over_frames(per_sample: Mapping[str, Sequence[float]], ignore_nan: bool = False) -> dict[str, float]:
    """Average per-sample metrics over samples, as the official evaluation (``np.mean`` of the lists).

    Args:
        per_sample: metric name -> per-sample values (e.g. the (B,) arrays of :func:`pose_errors`,
            concatenated over batches).
        ignore_nan: average the finite values only (``np.nanmean``); officially any NaN sample makes
            the mean NaN. An empty (or all-NaN) list gives NaN.

    Returns:
        metric name -> mean.
    """
    out = {}
    for name, values in per_sample.items():
        v = np.asarray(_as_numpy(values, name), dtype=np.float64).reshape(-1)
        if ignore_nan:
            v = v[~np.isnan(v)]
        out[name] = float(v.mean()) if len(v) else math.nan
    return out


def outcome_shares(person_flags: Sequence[Sequence[str]], num_skipped: int) -> dict[str, float]:
    """Share of the persons (boxes) that were flagged or skipped.

    Args:
        person_flags: the ``flags`` of every processed person (``PersonResult.flags``).
        num_skipped: boxes not processed (``len(FrameResult.skipped)``, summed over frames).

    Returns:
        ``{"num_persons", "flagged", "skipped", "flagged_or_skipped"}`` plus ``"flag/<name>"`` per
        flag seen; shares of ``num_persons = len(person_flags) + num_skipped`` (NaN when it is 0).
    """
    if int(num_skipped) != num_skipped or num_skipped < 0:
        raise InputError(f"num_skipped: expected a count >= 0, got {num_skipped!r}")
    flags = [tuple(f) for f in person_flags]
    total = len(flags) + int(num_skipped)

    def share(n):
        return n / total if total else math.nan

    flagged = sum(1 for f in flags if f)
    out = {"num_persons": float(total), "flagged": share(flagged), "skipped": share(num_skipped),
           "flagged_or_skipped": share(flagged + num_skipped)}
    for name in sorted({n for f in flags for n in f}):
        out[f"flag/{name}"] = share(sum(1 for f in flags if name in f))
    return out
