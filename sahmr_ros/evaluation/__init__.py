"""Evaluation of sahmr_ros estimates: the paper's metrics, no ROS and no file I/O.

See :mod:`sahmr_ros.evaluation.metrics` for the definitions (units, frames, what the official
SA-HMR evaluation does).
"""

from __future__ import annotations

from sahmr_ros.evaluation.metrics import (
    CONTACT_GT_RADIUS_M,
    ContactCounts,
    SDFGrid,
    contact_counts,
    contact_fit_error,
    contact_ground_truth_labels,
    g_mpjpe,
    g_mpve,
    labels_on_scene_points,
    mean_over_frames,
    mpjpe,
    mpve,
    outcome_shares,
    pa_mpjpe,
    penetration_error,
    pose_errors,
    procrustes_align,
    root_error,
    sample_sdf,
    scene_errors,
)

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
