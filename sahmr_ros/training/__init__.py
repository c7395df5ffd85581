"""Training of SA-HMR: targets, batches, the paper's losses and one training step (no ROS).

* :mod:`~sahmr_ros.training.batch`: :func:`make_batch` turns samples (images with annotated people) into a
  :class:`TrainBatch`: one item per person, the crop (with the official box augmentation), the ground
  truth in the camera frame and the image-side targets;
* :mod:`~sahmr_ros.training.targets`: those targets (pelvis and part heatmaps, normalised depth, voxel
  contact labels, voxel offsets), each a pure function;
* :mod:`~sahmr_ros.training.losses`: every loss term of the paper, a pure function returning one value per
  person;
* :mod:`~sahmr_ros.training.objective`: :func:`training_step` runs the model's own forward pieces for a
  stage (``"rcnet"``, ``"mesh"``, ``"joint"``) and returns the loss terms.

Frames: camera optical (x right, y down, z forward), metres; pixels of the full image unless a name says
``crop`` / ``cell`` (the 56 x 56 heatmap grid).
"""

from sahmr_ros.training.batch import (
    ItemCollator,
    ItemTransform,
    TrainBatch,
    TrainItem,
    collate_items,
    make_batch,
    make_items,
    sample_rng,
)
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
from sahmr_ros.training.objective import STAGES, loss_weights, trainable_parameters, training_step
from sahmr_ros.training.targets import (
    HEATMAP_KERNEL,
    flip_part_heatmaps,
    heatmap_cell,
    part_heatmap_target,
    pelvis_depth_target,
    pelvis_heatmap_target,
    voxel_contact_labels,
    voxel_offset_target,
)

__all__ = [
    "HEATMAP_KERNEL",
    "ItemCollator",
    "ItemTransform",
    "MESH_LOSS_WEIGHTS",
    "RCNET_LOSS_WEIGHTS",
    "STAGES",
    "TrainBatch",
    "TrainItem",
    "collate_items",
    "contact_point_loss",
    "flip_part_heatmaps",
    "heatmap_cell",
    "loss_weights",
    "make_batch",
    "make_items",
    "mean_l1_loss",
    "part_heatmap_loss",
    "part_heatmap_target",
    "pelvis_depth_loss",
    "pelvis_depth_target",
    "pelvis_heatmap_loss",
    "pelvis_heatmap_target",
    "refined_root_loss",
    "sample_rng",
    "trainable_parameters",
    "training_step",
    "voxel_contact_labels",
    "voxel_contact_loss",
    "voxel_offset_loss",
    "voxel_offset_target",
]
