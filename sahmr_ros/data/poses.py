"""Poses people take in rooms, as SMPL ``body_pose`` axis-angles, with seeded random variation.

A pose is a small set of named joint angles (:data:`PARAM_NAMES`, degrees) that
:func:`body_pose_from_params` turns into the 23 SMPL joint rotations (axis-angle, radians, each
relative to its parent; the (69,) ``body_pose`` of ``smplx.SMPL``). :func:`sample_pose_params`
draws the angles of a category from its range; :mod:`sahmr_ros.data.placement` then solves one of
them (a knee so that the feet reach the floor, a shoulder so that a hand reaches a table top) and
puts the body in the room.

SMPL frame (the body model's): y up, the body faces +z, +x is the body's left. Conventions of the
angles (positive values):

* ``*_hip_flex``: thigh forward (rotation about -x); ``hip_abduct``: both thighs outwards.
* ``*_knee``: shin backwards (about +x); ``*_ankle``: toes up (about -x); a flat foot on the
  ground needs ``ankle = knee - hip_flex + pelvis_tilt``.
* ``spine_flex``: the trunk bends forward (about +x), shared over the three spine joints;
  ``spine_twist`` about +y; ``head_flex``, ``head_turn`` likewise at the neck and head.
* ``*_arm_down``: from the T-pose towards the body (90 = arm along the body); ``*_arm_fwd``: then
  forward (90 = horizontal in front); ``*_elbow``: forearm bends forward.
* ``pelvis_tilt``: not a joint: the whole body's forward tilt, applied by the placement (negative:
  reclined).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from sahmr_ros.constants import NUM_SMPL_JOINTS
from sahmr_ros.errors import InputError

__all__ = ["CATEGORIES", "CATEGORY_SUPPORTS", "PARAM_NAMES", "body_pose_from_params", "sample_pose_params",
           "walking_params"]

STANDING = "standing"
WALKING = "walking"
SITTING = "sitting"
SITTING_BACK = "sitting_back"  # sitting with the back on the backrest
LYING = "lying"
LEANING_WALL = "leaning_wall"
LEANING_TABLE = "leaning_table"  # both hands on a table or counter, trunk bent forward
HAND_ON_SURFACE = "hand_on_surface"  # standing, one hand on a table or counter
CROUCHING = "crouching"
CATEGORIES = (STANDING, WALKING, SITTING, SITTING_BACK, LYING, LEANING_WALL, LEANING_TABLE, HAND_ON_SURFACE,
              CROUCHING)
# Support kinds each category uses (furniture.KIND_*).
CATEGORY_SUPPORTS = {
    STANDING: ("floor", "step"), WALKING: ("floor",), SITTING: ("seat", "bed"), SITTING_BACK: ("seat",),
    LYING: ("bed", "seat", "floor"), LEANING_WALL: ("wall",), LEANING_TABLE: ("table_top", "counter_top"),
    HAND_ON_SURFACE: ("table_top", "counter_top"), CROUCHING: ("floor",),
}
NUM_BODY_POSE = 3 * (NUM_SMPL_JOINTS - 1)  # 69
# Walking: hip swing and knee bend amplitudes (degrees), arm swing relative to the hips.
GAIT_HIP_AMPLITUDE_DEG = (15.0, 30.0)
GAIT_KNEE_AMPLITUDE_DEG = (20.0, 45.0)
GAIT_ARM_SWING = (0.6, 1.0)

PARAM_NAMES = ("pelvis_tilt", "spine_flex", "spine_twist", "head_flex", "head_turn", "hip_abduct",
               "l_hip_flex", "r_hip_flex", "l_knee", "r_knee", "l_ankle", "r_ankle",
               "l_arm_down", "l_arm_fwd", "l_elbow", "r_arm_down", "r_arm_fwd", "r_elbow")

# SMPL joint indices (kinematic tree order).
_L_HIP, _R_HIP, _SPINE1, _L_KNEE, _R_KNEE, _SPINE2, _L_ANKLE, _R_ANKLE, _SPINE3 = 1, 2, 3, 4, 5, 6, 7, 8, 9
_NECK, _HEAD, _L_SHOULDER, _R_SHOULDER, _L_ELBOW, _R_ELBOW = 12, 15, 16, 17, 18, 19


def _set(body_pose: np.ndarray, joint: int, rotation: Rotation) -> None:
    body_pose[3 * (joint - 1):3 * joint] = rotation.as_rotvec()


def _rx(deg: float) -> Rotation:
    return Rotation.from_euler("x", deg, degrees=True)


def body_pose_from_params(params: dict[str, float]) -> np.ndarray:
    """Return the (69,) float64 SMPL ``body_pose`` (axis-angle, radians) of named angles in degrees.

    Missing names are 0; ``pelvis_tilt`` is ignored here (it is a global rotation).
    """
    unknown = set(params) - set(PARAM_NAMES)
    if unknown:
        raise InputError(f"params: unknown names {sorted(unknown)}; expected some of {PARAM_NAMES}")
    p = {name: float(params.get(name, 0.0)) for name in PARAM_NAMES}
    pose = np.zeros(NUM_BODY_POSE)
    spine = Rotation.from_euler("yx", [p["spine_twist"] / 3, p["spine_flex"] / 3], degrees=True)
    for joint in (_SPINE1, _SPINE2, _SPINE3):
        _set(pose, joint, spine)
    _set(pose, _NECK, _rx(p["head_flex"] / 2))
    _set(pose, _HEAD, Rotation.from_euler("yx", [p["head_turn"], p["head_flex"] / 2], degrees=True))
    for side, hip, knee, ankle, sign in (("l", _L_HIP, _L_KNEE, _L_ANKLE, 1.0), ("r", _R_HIP, _R_KNEE, _R_ANKLE, -1.0)):
        abduct = Rotation.from_euler("z", sign * p["hip_abduct"], degrees=True)
        _set(pose, hip, _rx(-p[f"{side}_hip_flex"]) * abduct)
        _set(pose, knee, _rx(p[f"{side}_knee"]))
        _set(pose, ankle, _rx(-p[f"{side}_ankle"]))
    for side, shoulder, elbow, sign in (("l", _L_SHOULDER, _L_ELBOW, -1.0), ("r", _R_SHOULDER, _R_ELBOW, 1.0)):
        down = Rotation.from_euler("z", sign * p[f"{side}_arm_down"], degrees=True)
        _set(pose, shoulder, _rx(-p[f"{side}_arm_fwd"]) * down)
        _set(pose, elbow, Rotation.from_rotvec([0.0, sign * np.deg2rad(p[f"{side}_elbow"]), 0.0]))
    return pose


def walking_params(base: dict[str, float], phase: float, hip_amplitude: float, knee_amplitude: float,
                   arm_swing: float) -> dict[str, float]:
    """Angles of a walking pose at gait ``phase`` (radians; one cycle = two steps), from ``base``'s other angles.

    The hips swing by ``+-hip_amplitude`` degrees in opposition, the knee of the swinging leg bends by
    up to ``knee_amplitude`` degrees, the arms swing against the legs (``arm_swing`` times the hip
    angle). Returns a new dict; ``base`` is not changed.
    """
    p = dict(base)
    for s, sign in (("l", 1.0), ("r", -1.0)):
        p[f"{s}_hip_flex"] = sign * hip_amplitude * np.sin(phase)
        p[f"{s}_knee"] = 5 + knee_amplitude * max(0.0, -sign * np.cos(phase))
        p[f"{s}_arm_fwd"] = -arm_swing * p[f"{s}_hip_flex"]
        p[f"{s}_ankle"] = 0.5 * (p[f"{s}_knee"] - p[f"{s}_hip_flex"])
    return p


def _arms(rng, down=(70, 85), fwd=(-5, 20), elbow=(5, 35)) -> dict[str, float]:
    return {f"{s}_{k}": rng.uniform(*r) for s in "lr" for k, r in (("arm_down", down), ("arm_fwd", fwd),
                                                                   ("elbow", elbow))}


def _head(rng) -> dict[str, float]:
    return {"head_flex": rng.uniform(-10, 20), "head_turn": rng.uniform(-30, 30)}


def _flat_feet(p: dict[str, float]) -> dict[str, float]:
    for s in "lr":
        p[f"{s}_ankle"] = p[f"{s}_knee"] - p[f"{s}_hip_flex"] + p.get("pelvis_tilt", 0.0)
    return p


def sample_pose_params(category: str, rng: np.random.Generator) -> dict[str, float]:
    """Random joint angles (degrees, :data:`PARAM_NAMES`) of a pose of ``category``.

    Also returns the pose's variant where it has one: ``"lying_side"`` in {0 back, 1 left side,
    2 right side, 3 front} for :data:`LYING`, and ``"hand"`` (0 left, 1 right) for :data:`HAND_ON_SURFACE`;
    these keys are not joint angles (the placement pops them).
    """
    p: dict[str, float] = {"spine_flex": rng.uniform(-5, 10), "spine_twist": rng.uniform(-10, 10),
                           "hip_abduct": rng.uniform(0, 6), **_head(rng), **_arms(rng)}
    if category in (STANDING, LEANING_WALL):
        hip, knee = rng.uniform(-3, 5), rng.uniform(0, 8)
        for s in "lr":
            p[f"{s}_hip_flex"], p[f"{s}_knee"] = hip + rng.uniform(-2, 2), knee + rng.uniform(-2, 2)
        if category == LEANING_WALL:
            p.update(pelvis_tilt=-rng.uniform(3, 10), spine_flex=rng.uniform(-5, 5), **_arms(rng, fwd=(-15, 5)))
        return _flat_feet(p)
    if category == WALKING:
        phase, amplitude, knee_amp = rng.uniform(0, 2 * np.pi), rng.uniform(*GAIT_HIP_AMPLITUDE_DEG), \
            rng.uniform(*GAIT_KNEE_AMPLITUDE_DEG)
        swing = rng.uniform(*GAIT_ARM_SWING)
        return walking_params(p, phase, amplitude, knee_amp, swing)
    if category in (SITTING, SITTING_BACK):
        tilt = -rng.uniform(8, 20) if category == SITTING_BACK else rng.uniform(-3, 10)
        hip = 90.0 + tilt - rng.uniform(5, 20)  # thighs 5..20 degrees below horizontal (seats below knee height)
        p.update(pelvis_tilt=tilt, spine_flex=rng.uniform(-5, 20) if category == SITTING else rng.uniform(-5, 5))
        for s in "lr":
            p[f"{s}_hip_flex"], p[f"{s}_knee"] = hip + rng.uniform(-4, 4), 90.0  # knee: solved by the placement
            p[f"{s}_ankle"] = rng.uniform(-5, 15)
        p.update(_arms(rng, down=(75, 88), fwd=(10, 35), elbow=(20, 50)))  # hands towards the thighs
        return p
    if category == LYING:
        side = int(rng.choice(4, p=[0.55, 0.175, 0.175, 0.1]))
        p.update(lying_side=side, spine_flex=rng.uniform(-5, 10), head_flex=rng.uniform(-5, 15))
        knees_up = side in (1, 2) or rng.random() < 0.3
        for s in "lr":
            p[f"{s}_hip_flex"] = rng.uniform(30, 70) if knees_up else rng.uniform(0, 10)
            p[f"{s}_knee"] = rng.uniform(40, 100) if knees_up else rng.uniform(0, 15)
            p[f"{s}_ankle"] = rng.uniform(-10, 10)
        p.update(_arms(rng, down=(60, 88), fwd=(-10, 30), elbow=(0, 60)))
        return p
    if category in (LEANING_TABLE, HAND_ON_SURFACE):
        tilt = rng.uniform(10, 30) if category == LEANING_TABLE else rng.uniform(0, 10)
        p.update(pelvis_tilt=tilt, spine_flex=rng.uniform(0, 15) if category == LEANING_TABLE else rng.uniform(10, 35))
        for s in "lr":
            p[f"{s}_hip_flex"], p[f"{s}_knee"] = tilt + rng.uniform(-3, 3), rng.uniform(0, 8)
        _flat_feet(p)
        if category == LEANING_TABLE:
            down, elbow = rng.uniform(75, 90), rng.uniform(0, 15)
            for s in "lr":  # both arms alike, nearly straight; the forward angle is solved by the placement
                p[f"{s}_arm_down"], p[f"{s}_elbow"], p[f"{s}_arm_fwd"] = down, elbow, 30.0
            p["spine_twist"] = rng.uniform(-3, 3)
        else:
            hand = int(rng.integers(2))
            s = "lr"[hand]
            p.update({"hand": hand, f"{s}_arm_down": rng.uniform(70, 88), f"{s}_elbow": rng.uniform(5, 40),
                      f"{s}_arm_fwd": 30.0})
        return p
    if category == CROUCHING:
        hip, knee = rng.uniform(95, 120), rng.uniform(110, 140)
        for s in "lr":
            p[f"{s}_hip_flex"], p[f"{s}_knee"] = hip + rng.uniform(-5, 5), knee + rng.uniform(-5, 5)
        p.update(spine_flex=rng.uniform(10, 35), hip_abduct=rng.uniform(5, 20),
                 **_arms(rng, down=(55, 80), fwd=(20, 70), elbow=(20, 70)))
        return _flat_feet(p)
    raise InputError(f"category: expected one of {CATEGORIES}, got {category!r}")
