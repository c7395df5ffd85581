"""One training step of SA-HMR: the model's own forward pieces, the ground-truth targets and the loss terms.

Stages (SPEC section 6; official ``pose_trainer.NetworkWrapper``, ``rc_net.RCNet``, ``sahmr.SAHMR``):

* ``"rcnet"``: RCNet trains (train mode); the root network also runs on the flipped crops (official
  ``train_extra_flip``). Anchor noise: a person whose coarse root is more than 0.5 m from the ground
  truth (or not finite) gets the anchor ``GT + N(0, 0.5^2)`` per axis instead, for the ROI, the voxel
  features and the refined root's fallback. Loss L_RC (:data:`~.losses.RCNET_LOSS_WEIGHTS`).
* ``"mesh"``: RCNet frozen (eval mode, no gradient, anchors = its coarse roots), the mesh network
  trains. Pelvis noise: a refined root more than 0.5 m off becomes ``GT + N(0, 0.08^2)``; that pelvis
  is the origin of the contact points and is added to the predicted vertices. Loss L_HMR
  (:data:`~.losses.MESH_LOSS_WEIGHTS`).
* ``"joint"`` (not in the paper; fine-tuning): both train, L_RC + L_HMR, with both noises; the mesh
  network gets RCNet's contact points and its (detached, noisy where far off) refined root.

The ROI is selected as in the official code: the frustum points within 1.25 m of an anchor, or all
frustum points when none is that close. The voxel labels come from the voxel centres and the
ground-truth part vertices (7 cm), the offsets from the ground-truth pelvis
(:mod:`~sahmr_ros.training.targets`).

Precision: call it under ``torch.autocast`` if wanted; the model keeps its geometry in float32
(``networks.precision``) and every target and loss here is computed in float32 with autocast off.
Randomness: the noise comes from ``rng`` (one draw of (B, 3) per noise, whatever the predictions, so
the stream stays aligned); dropout uses torch's global generator (seed it for bit-exact runs).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Iterator, Mapping

import numpy as np
import torch

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.networks.precision import at_least_float32, full_precision
from sahmr_ros.networks.rcnet import ContactEstimate, RootEstimate, select_roi
from sahmr_ros.training.batch import TrainBatch
from sahmr_ros.training.losses import (
    MESH_LOSS_WEIGHTS,
    RCNET_LOSS_WEIGHTS,
    contact_point_loss,
    mean_l1_loss,
    part_heatmap_loss,
    pelvis_depth_loss,
    pelvis_heatmap_loss,
    refined_root_loss,
    voxel_contact_loss,
    voxel_offset_loss,
)
from sahmr_ros.training.targets import flip_part_heatmaps, voxel_contact_labels, voxel_offset_target

__all__ = [
    "STAGES",
    "ANCHOR_ERROR_THRESHOLD_M",
    "ANCHOR_NOISE_STD_M",
    "PELVIS_NOISE_STD_M",
    "loss_weights",
    "noisy_replacement",
    "roi_points",
    "trainable_parameters",
    "training_step",
]

STAGES = ("rcnet", "mesh", "joint")
ANCHOR_ERROR_THRESHOLD_M = 0.5  # official train_anchor_err_thr (RCNet) and the SAHMR replace_mask threshold
ANCHOR_NOISE_STD_M = 0.5  # RCNet: anchor = GT + N(0, 0.5^2) per axis
PELVIS_NOISE_STD_M = 0.08  # mesh network: pelvis = GT + N(0, 0.08^2) per axis


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise InputError(f"stage: expected one of {', '.join(STAGES)}, got {stage!r}")


def loss_weights(stage: str, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Return the loss weights of a stage: the official ones (``"joint"``: both sets), then ``overrides``.

    Raises:
        InputError: an override names a term the stage does not have, or is negative or not finite.
    """
    _check_stage(stage)
    weights = {}
    if stage in ("rcnet", "joint"):
        weights.update(RCNET_LOSS_WEIGHTS)
    if stage in ("mesh", "joint"):
        weights.update(MESH_LOSS_WEIGHTS)
    for name, value in (overrides or {}).items():
        if name not in weights:
            raise InputError(f"loss_weights.{name}: stage {stage!r} has no such loss term; "
                             f"its terms: {', '.join(weights)}")
        if not (math.isfinite(value) and value >= 0):
            raise InputError(f"loss_weights.{name}: expected a finite number >= 0, got {value}")
        weights[name] = float(value)
    return weights


def trainable_parameters(model, stage: str) -> Iterator[torch.nn.Parameter]:
    """Return the parameters a stage trains (hand these to the optimiser).

    ``"rcnet"``: ``model.rcnet``; ``"mesh"``: ``model.mesh_network`` (RCNet frozen); ``"joint"``: all.
    """
    _check_stage(stage)
    module = {"rcnet": model.rcnet, "mesh": model.mesh_network, "joint": model}[stage]
    return module.parameters()


def noisy_replacement(estimate: torch.Tensor, target: torch.Tensor, std: float, rng: np.random.Generator,
                      threshold: float = ANCHOR_ERROR_THRESHOLD_M) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace estimates farther than ``threshold`` from the target by ``target + N(0, std^2)``.

    Non-finite estimates count as far. ``rng`` draws (B, 3) normals every call.

    Args:
        estimate, target: (B, 3) camera frame, metres.
        std: metres.
        rng: numpy Generator.

    Returns:
        (B, 3) float32 (detached) and the (B,) bool mask of replaced rows.
    """
    noise = torch.from_numpy(rng.standard_normal(tuple(target.shape))).to(target.device, torch.float32)
    estimate = estimate.detach().to(torch.float32)
    target = target.detach().to(torch.float32)
    far = ~((estimate - target).norm(dim=-1) <= threshold)  # NaN distance: far
    return torch.where(far[:, None], target + std * noise, estimate), far


def roi_points(frustum_points: list[torch.Tensor], anchors: torch.Tensor) -> list[torch.Tensor]:
    """ROI of each person: frustum points within 1.25 m of an anchor, else all of them (official).

    Args:
        frustum_points: B tensors (N_b, 3), camera frame; anchors: (B, 3) middle anchors.

    Returns:
        B tensors (k_b, 3).
    """
    out = []
    for b, pts in enumerate(frustum_points):
        keep = select_roi(pts, anchors[b].to(pts.dtype)) if len(pts) else torch.zeros(0, dtype=torch.bool)
        out.append(pts[keep] if keep.any() else pts)
    return out


def _rcnet_terms(root: RootEstimate, contacts: ContactEstimate, batch: TrainBatch) -> dict[str, torch.Tensor]:
    B = len(batch)
    gt_root = batch.root_camera.to(torch.float32)
    terms = {
        "pelvis_heatmap": pelvis_heatmap_loss(at_least_float32(root.pelvis_heatmap), batch.pelvis_heatmap),
        "pelvis_depth": pelvis_depth_loss(at_least_float32(root.depth_map), batch.pelvis_depth, batch.pelvis_cell),
        "part_heatmaps": part_heatmap_loss(at_least_float32(root.part_heatmaps), batch.part_heatmaps),
    }
    if root.part_heatmaps_flipped is not None:
        terms["part_heatmaps_flip"] = part_heatmap_loss(at_least_float32(root.part_heatmaps_flipped),
                                                        flip_part_heatmaps(batch.part_heatmaps))
    centers = contacts.voxel_centers.to(torch.float32)
    vb = contacts.voxel_batch
    labels = torch.zeros(len(centers), dtype=torch.int64, device=centers.device)
    for b in range(B):
        m = vb == b
        if m.any():
            labels[m] = voxel_contact_labels(centers[m], batch.vertices_camera[b], batch.vertex_parts,
                                             exclude_parts=batch.excluded_parts[b] if batch.excluded_parts else ())
    out = at_least_float32(contacts.voxel_outputs)
    terms["voxel_contact"] = voxel_contact_loss(out[:, 4:], labels, vb, B)
    terms["voxel_offset"] = voxel_offset_loss(out[:, 1:4], voxel_offset_target(gt_root, centers, vb), vb, B)
    terms["refined_root"] = refined_root_loss(at_least_float32(contacts.root_camera), gt_root)
    return terms


def _mesh_terms(mesh, batch: TrainBatch) -> dict[str, torch.Tensor]:
    reg = batch.j_regressor_h36m.to(torch.float32)  # (17, 6890)
    j14 = reg[list(C.H36M_J17_TO_J14)]

    def relative(vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertices and 14 joints minus the regressed H36M pelvis (official get_r_h36m_verts_joints14)."""
        pelvis = torch.einsum("v,bvc->bc", reg[C.H36M_PELVIS], vertices)[:, None]
        return vertices - pelvis, torch.einsum("jv,bvc->bjc", j14, vertices) - pelvis

    pred_v, pred_j = relative(at_least_float32(mesh.network.vertices))
    gt_v, gt_j = relative(batch.vertices_camera.to(torch.float32))
    return {
        "vertices": mean_l1_loss(pred_v, gt_v),
        "joints": mean_l1_loss(pred_j, gt_j),
        "contact_points": contact_point_loss(at_least_float32(mesh.network.contact_points),
                                             mesh.contact_points_input.to(torch.float32),
                                             mesh.contact_labels_input != 0),
        "vertices_camera": mean_l1_loss(at_least_float32(mesh.vertices_camera), batch.vertices_camera),
    }


def training_step(model, batch: TrainBatch, stage: str, rng: np.random.Generator,
                  weights: Mapping[str, float] | None = None) -> dict[str, torch.Tensor]:
    """Forward one batch through the stage's networks and compute its loss terms.

    Sets the modules' modes for the stage (``"mesh"``: RCNet eval, mesh network train; the others:
    train). Does not call ``backward`` or the optimiser.

    Args:
        model: :class:`sahmr_ros.networks.sahmr.SAHMR`, on the batch's device.
        batch: :class:`~sahmr_ros.training.batch.TrainBatch` (``batch.to(device)``).
        stage: ``"rcnet"``, ``"mesh"`` or ``"joint"``.
        rng: numpy Generator for the anchor / pelvis noise.
        weights: loss weight overrides by term name (:func:`loss_weights`); None: the official weights.

    Returns:
        ``{term: scalar}``, each term the mean over the B persons of its per-person value (unweighted; names
        as in :mod:`~sahmr_ros.training.losses`: RCNet terms for ``"rcnet"``, mesh terms for ``"mesh"``,
        both for ``"joint"``), and ``"loss"``: the mean over the persons of the weighted sum, the value to
        back-propagate. All float32.
    """
    _check_stage(stage)
    if len(batch) == 0:
        raise InputError("batch: empty (no annotated person)")
    train_rcnet = stage in ("rcnet", "joint")
    model.rcnet.train(train_rcnet)
    if stage != "rcnet":
        model.mesh_network.train(True)
    device = batch.crops.device
    gt_root = batch.root_camera.to(torch.float32)

    weights = loss_weights(stage, weights)
    with torch.enable_grad() if train_rcnet else torch.no_grad():
        flipped = train_rcnet and weights["part_heatmaps_flip"] > 0  # the flipped pass feeds only that term
        root = model.rcnet.estimate_root(batch.crops, batch.bbx_lurb, batch.K, with_flipped=flipped)
        with full_precision(device):
            anchor = at_least_float32(root.root_camera.detach())
            if train_rcnet:
                anchor, _ = noisy_replacement(anchor, gt_root, ANCHOR_NOISE_STD_M, rng)
        roi = roi_points(batch.frustum_points, anchor)
        contacts = model.rcnet.estimate_contacts(root, roi, batch.bbx_lurb, batch.K, anchor_root=anchor)

    with full_precision(device):
        terms = _rcnet_terms(root, contacts, batch) if train_rcnet else {}
    if stage != "rcnet":
        with full_precision(device):
            pelvis, _ = noisy_replacement(at_least_float32(contacts.root_camera), gt_root, PELVIS_NOISE_STD_M, rng)
        mesh = model.estimate_mesh(batch.crops, replace(contacts, root_camera=pelvis))
        with full_precision(device):
            terms.update(_mesh_terms(mesh, batch))

    with full_precision(device):
        total = sum(weights[k] * v for k, v in terms.items() if k in weights)
        result = {k: v.mean() for k, v in terms.items()}
        result["loss"] = total.mean()
    return result
