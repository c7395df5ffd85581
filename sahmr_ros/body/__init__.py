"""Body model: SMPL without chumpy, the official SA-HMR body assets, and a synthetic stand-in.

Frame of the body model: metres, y up, the body faces +z, +x is the body's left. The mesh network's
template (:class:`BodyAssets`) is turned upside down (camera orientation: y down, z forward).
"""

from sahmr_ros.body.assets import (
    BodyAssets,
    FileCheck,
    h36m_joints,
    h36m_pelvis,
    joints14_from_vertices,
    load_body_assets,
    load_h36m_regressor,
    load_mesh_downsampling,
    load_seg_part_info,
    model_file_status,
    ModelFileStatus,
    selection_indices,
    validate_model_dir,
)
from sahmr_ros.body.smpl import RestrictedUnpickler, find_smpl_file, load_body_model, load_smpl_arrays
from sahmr_ros.body.synthetic import write_synthetic_model_dir

__all__ = [
    "BodyAssets",
    "FileCheck",
    "RestrictedUnpickler",
    "find_smpl_file",
    "h36m_joints",
    "h36m_pelvis",
    "joints14_from_vertices",
    "load_body_assets",
    "load_body_model",
    "load_h36m_regressor",
    "load_mesh_downsampling",
    "load_seg_part_info",
    "load_smpl_arrays",
    "model_file_status",
    "ModelFileStatus",
    "selection_indices",
    "validate_model_dir",
    "write_synthetic_model_dir",
]
