"""Posing an SMPL-topology body to make the demo's ground-truth people, in contact with the room.

Frames: the SMPL model frame has y up and the body facing +z (x is the body's left); the map frame
(REP-103) has z up. :func:`place_body` turns the body so that SMPL up is map +z and the body faces
the map heading ``yaw`` (radians about +z, 0 = facing +x), then translates it so that it stands on
the floor or sits on a seat.

Poses are smplx keyword tensors: ``global_orient`` (1, 3) and ``body_pose`` (1, 69), axis-angle in
radians, each joint's rotation relative to its parent (SMPL's 23 non-root joints, 3 values each).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from sahmr_ros.constants import NUM_SMPL_JOINTS, NUM_VERTICES
from sahmr_ros.demo.scene import Anchor
from sahmr_ros.errors import InputError

# SMPL joint indices (kinematic tree order).
_PELVIS = 0
_L_HIP, _R_HIP = 1, 2
_L_KNEE, _R_KNEE = 4, 5
_L_SHOULDER, _R_SHOULDER = 16, 17
_L_ELBOW, _R_ELBOW = 18, 19
_NUM_BODY_POSE = 3 * (NUM_SMPL_JOINTS - 1)  # 69

# Sitting: the pelvis sits this far behind the seat's centre (towards the backrest), and the
# buttocks are the lowest vertices within this half-width box around the pelvis (top view).
_SIT_PELVIS_BACK_M = 0.06
_GLUTEUS_HALF_WIDTH_M = 0.12

# SMPL model frame -> map frame for yaw 0: SMPL +z (forward) -> map +x, +x (left) -> +y, +y (up) -> +z.
_R_MAP_SMPL = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class PlacedBody(NamedTuple):
    """A posed body in the map frame (metres). Unpacks as ``vertices, joints, pelvis``.

    Attributes:
        vertices: (6890, 3) float64.
        joints: (24, 3) float64, SMPL joints.
        pelvis: (3,) float64, SMPL joint 0.
    """

    vertices: np.ndarray
    joints: np.ndarray
    pelvis: np.ndarray


def _set(body_pose: np.ndarray, joint: int, axis_angle) -> None:
    body_pose[3 * (joint - 1) : 3 * joint] = axis_angle


def _pose_tensors(body_pose: np.ndarray) -> dict[str, torch.Tensor]:
    return {
        "global_orient": torch.zeros(1, 3, dtype=torch.float32),
        "body_pose": torch.as_tensor(body_pose, dtype=torch.float32).reshape(1, _NUM_BODY_POSE),
    }


def _arms(body_pose: np.ndarray, down_deg: float, forward_deg: float, elbow_deg: float) -> None:
    # From the T-pose, the arms come down by a rotation about the body's forward axis (SMPL z),
    # then swing forward about the body's x axis; the elbows bend the forearms forward about the
    # upper arm's local y axis.
    forward = Rotation.from_euler("x", -forward_deg, degrees=True)
    bend = np.deg2rad(elbow_deg)
    for shoulder, elbow, side in ((_L_SHOULDER, _L_ELBOW, -1.0), (_R_SHOULDER, _R_ELBOW, 1.0)):
        down = Rotation.from_euler("z", side * down_deg, degrees=True)
        _set(body_pose, shoulder, (forward * down).as_rotvec())
        _set(body_pose, elbow, (0.0, side * bend, 0.0))


def standing_pose(
    arm_down_deg: float = 72.0, arm_forward_deg: float = 5.0, elbow_bend_deg: float = 15.0
) -> dict[str, torch.Tensor]:
    """Return a relaxed standing pose: legs straight, arms lowered from the T-pose, elbows slightly bent.

    Args:
        arm_down_deg: how far the arms come down from the T-pose (90 = along the body).
        arm_forward_deg: forward swing of the lowered arms.
        elbow_bend_deg: elbow flexion.

    Returns:
        ``{"global_orient": (1, 3), "body_pose": (1, 69)}`` float32 axis-angle, radians.
    """
    body_pose = np.zeros(_NUM_BODY_POSE)
    _arms(body_pose, arm_down_deg, arm_forward_deg, elbow_bend_deg)
    return _pose_tensors(body_pose)


def sitting_pose(
    hip_flexion_deg: float = 80.0,
    knee_flexion_deg: float = 90.0,
    arm_down_deg: float = 84.0,
    arm_forward_deg: float = 10.0,
    elbow_bend_deg: float = 45.0,
) -> dict[str, torch.Tensor]:
    """Return a sitting pose.

    Thighs raised forward at the hips, shins bent down at the knees, hands resting on the thighs.

    Hip flexion is a negative rotation about SMPL x (the thigh swings from -y towards +z); knee
    flexion a positive one (the shin swings back down). The defaults (thighs 10 degrees below
    horizontal, shins vertical) seat the synthetic body of ``sahmr_ros.body.synthetic`` on the
    demo room's 0.45 m chair with its soles within 1 cm of the floor.

    Args:
        hip_flexion_deg, knee_flexion_deg: leg flexion (90 / 90 = thighs horizontal, shins vertical).
        arm_down_deg, arm_forward_deg, elbow_bend_deg: as in :func:`standing_pose`.

    Returns:
        ``{"global_orient": (1, 3), "body_pose": (1, 69)}`` float32 axis-angle, radians.
    """
    body_pose = np.zeros(_NUM_BODY_POSE)
    hip, knee = np.deg2rad(hip_flexion_deg), np.deg2rad(knee_flexion_deg)
    for joint in (_L_HIP, _R_HIP):
        _set(body_pose, joint, (-hip, 0.0, 0.0))
    for joint in (_L_KNEE, _R_KNEE):
        _set(body_pose, joint, (knee, 0.0, 0.0))
    _arms(body_pose, arm_down_deg, arm_forward_deg, elbow_bend_deg)
    return _pose_tensors(body_pose)


def _yaw_rotation(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def place_body(
    model,
    pose: Mapping[str, torch.Tensor],
    anchor: Anchor,
    yaw: float | None = None,
    betas: torch.Tensor | None = None,
) -> PlacedBody:
    """Pose ``model`` and put it in the room at ``anchor``.

    ``anchor.support == "floor"``: the pelvis is above ``anchor.position`` and the lowest vertex
    (the soles) is at the anchor's height. ``"seat"``: the pelvis is ``6 cm`` behind the seat
    centre (away from the facing direction) and the lowest vertex of the buttocks (the vertices
    below the pelvis within +-12 cm of it along and across the facing direction) is on the seat
    top. Only a translation is solved for: whether the feet of a sitting body reach the floor
    depends on the body's proportions and the pose.

    Args:
        model: an ``smplx.SMPL`` (or anything with its call signature and ``v_template``, returning
            ``vertices`` (1, 6890, 3) and ``joints`` (1, >= 24, 3)).
        pose: ``global_orient`` (1, 3) and ``body_pose`` (1, 69) axis-angle tensors, SMPL frame;
            e.g. :func:`standing_pose` or :func:`sitting_pose`.
        anchor: where to put the body (see :class:`sahmr_ros.demo.scene.Anchor`).
        yaw: heading the body faces in the map, radians about +z; ``None`` -> ``anchor.yaw``.
        betas: (1, num_betas) shape coefficients; ``None`` -> the model's own (zeros by default).

    Returns:
        The body in the map frame.
    """
    for key, shape in (("global_orient", (1, 3)), ("body_pose", (1, _NUM_BODY_POSE))):
        if key not in pose:
            raise InputError(f"pose: missing key {key!r}; expected global_orient and body_pose")
        if tuple(pose[key].shape) != shape:
            raise InputError(f"pose[{key!r}]: expected shape {shape}, got {tuple(pose[key].shape)}")
    if anchor.support not in ("floor", "seat"):
        raise InputError(f"anchor.support: expected 'floor' or 'seat', got {anchor.support!r}")
    position = np.asarray(anchor.position, dtype=np.float64)
    if position.shape != (3,):
        raise InputError(f"anchor.position: expected shape (3,), got {position.shape}")
    yaw = anchor.yaw if yaw is None else float(yaw)

    dtype = model.v_template.dtype
    kwargs = {k: pose[k].to(dtype) for k in ("global_orient", "body_pose")}
    if betas is not None:
        kwargs["betas"] = torch.as_tensor(betas, dtype=dtype)
    with torch.no_grad():
        output = model(**kwargs, transl=torch.zeros(1, 3, dtype=dtype), return_verts=True)
    vertices = output.vertices[0].double().numpy()
    joints = output.joints[0, :NUM_SMPL_JOINTS].double().numpy()
    if vertices.shape != (NUM_VERTICES, 3):
        raise InputError(f"model: expected {NUM_VERTICES} SMPL-topology vertices, got {vertices.shape}")

    rotation = _yaw_rotation(yaw) @ _R_MAP_SMPL
    vertices = vertices @ rotation.T
    joints = joints @ rotation.T
    pelvis = joints[_PELVIS]

    forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    if anchor.support == "floor":
        target_xy = position[:2]
        lowest = vertices[:, 2].min()
    else:
        target_xy = position[:2] - _SIT_PELVIS_BACK_M * forward[:2]
        left = np.array([-forward[1], forward[0]])
        offset = vertices[:, :2] - pelvis[:2]
        near_pelvis = (np.abs(offset @ forward[:2]) < _GLUTEUS_HALF_WIDTH_M) & (
            np.abs(offset @ left) < _GLUTEUS_HALF_WIDTH_M
        ) & (vertices[:, 2] < pelvis[2])
        if not near_pelvis.any():
            raise InputError("pose: no vertex below the pelvis near it; is it a sitting pose?")
        lowest = vertices[near_pelvis, 2].min()
    translation = np.array([*(target_xy - pelvis[:2]), position[2] - lowest])
    vertices = vertices + translation
    joints = joints + translation
    return PlacedBody(vertices=vertices, joints=joints, pelvis=joints[_PELVIS].copy())
