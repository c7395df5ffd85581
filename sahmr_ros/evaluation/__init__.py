"""Evaluation of sahmr_ros estimates (no ROS imports).

* :mod:`~sahmr_ros.evaluation.metrics`: the paper's metrics, no file I/O (units, frames, what the
  official SA-HMR evaluation does);
* :mod:`~sahmr_ros.evaluation.evaluate`: ``sahmr eval``'s runner: a pipeline (or the node's code path on
  rosbag2 files) over a data split, every metric per person;
* :mod:`~sahmr_ros.evaluation.report`: per-person CSV, summary JSON / markdown and plots;
* :mod:`~sahmr_ros.evaluation.bags`: the split's rosbag2 layout (``DIR/bags/<split>/``), written and read back.
"""

from __future__ import annotations

from sahmr_ros.evaluation.evaluate import EvalData, EvalResult, evaluate, evaluate_bags, open_data
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
from sahmr_ros.evaluation.report import write_report

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
    "EvalData",
    "EvalResult",
    "evaluate",
    "evaluate_bags",
    "open_data",
    "write_report",
]
