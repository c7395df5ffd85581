"""People posed in contact with a procedural room, not penetrating it, not touching each other.

Contact: feet on the floor, gluteus on the seat, back on the backrest, hands on a table, a lying body
on the bed; no vertex deeper in the room's solids than ``PENETRATION_TOLERANCE_M``.

Frames: the body model's (SMPL) frame has y up, the body facing +z, +x its left; the map frame
(REP-103) has z up, metres. The placed body is ``R @ v + t`` of the model's vertices ``v`` for
zero global orientation and translation; ``PlacedPerson.global_orient`` / ``transl`` are the same
motion in smplx's parameters (smplx turns about the root joint ``J0``: ``transl = t + R J0 - J0``),
so ``model(betas, body_pose, global_orient, transl)`` gives ``PlacedPerson.vertices``.

A placement draws a pose (:mod:`sahmr_ros.data.poses`) and a body shape (betas ~ N(0, 1) clipped
to +-``BETA_CLIP``), solves one joint angle over a batch of candidates (the knees of a sitter so
that the soles reach the floor, the shoulders so that the hands reach the top), puts the contact
vertices on the support and checks the result with the room's SDF; it resamples up to
``MAX_ATTEMPTS`` times before giving up with :class:`PlacementError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from sahmr_ros.constants import NUM_BETAS, NUM_SMPL_JOINTS, NUM_VERTICES
from sahmr_ros.data import poses as P
from sahmr_ros.data.rooms import Room
from sahmr_ros.errors import InputError, SahmrError

__all__ = ["CONTACT_THRESHOLD_M", "PENETRATION_TOLERANCE_M", "PlacedPerson", "PlacementError", "place_person",
           "place_walker", "sample_person", "supports_for"]

PENETRATION_TOLERANCE_M = 0.02  # no vertex deeper than this inside the room's solids
CONTACT_THRESHOLD_M = 0.03  # a vertex is in contact where |sdf| < this (RICH-like body-scene contact)
PERSON_CLEARANCE_M = 0.05  # vertices of two people stay at least this far apart
WALKER_SEPARATION_M = 0.7  # the pelvises of two walkers stay at least this far apart at every frame
BETA_CLIP = 2.0  # body shapes: betas ~ N(0, 1) clipped to +-BETA_CLIP
MAX_ATTEMPTS = 12
SDF_CUTOFF_M = 0.1  # the placement only needs the SDF below this
FLOOR_MARGIN_M = 0.3  # a person on the floor keeps the pelvis this far inside the floor's edges
_CANDIDATES = 11  # candidate angles of the solved joint per attempt
_CHECK_STRIDE = 3  # candidates are checked for penetration on every third vertex
_FEET, _L_HAND, _R_HAND, _BACK, _GLUTEUS = (1, 2), (3,), (4,), (5,), (6,)
# SMPL frame -> map frame for a body facing map +x: SMPL +z (forward) -> +x, +x (left) -> +y, +y (up) -> +z.
_R_MAP_SMPL = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
# Lying bodies (head along map +x before the yaw): SMPL (x, y, z) axes -> map, per lying side.
_R_LYING = {0: np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),  # on the back, face up
            1: np.array([[0.0, 1.0, 0.0], [0.0, 0.0, -1.0], [-1.0, 0.0, 0.0]]),  # on the left side
            2: np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),  # on the right side
            3: np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])}  # on the front, face down


class PlacementError(SahmrError, RuntimeError):
    """No placement satisfied the contact and penetration constraints within ``MAX_ATTEMPTS``."""


@dataclass(frozen=True)
class PlacedPerson:
    """One person in the room, map frame (metres).

    Attributes:
        vertices: (6890, 3) float64 mesh.
        joints: (24, 3) float64 SMPL joints; pelvis: (3,) SMPL joint 0.
        betas: (10,) shape; body_pose: (69,) axis-angle; global_orient: (3,) axis-angle;
            transl: (3,): the smplx parameters that give ``vertices`` (float32 precision).
        category: one of ``poses.CATEGORIES``; support: index into ``room.supports``.
        vertex_contact: (6890,) bool, ``|room.sdf(vertex)| < CONTACT_THRESHOLD_M``.
        min_sdf: the deepest vertex's signed distance (>= -PENETRATION_TOLERANCE_M).
    """

    vertices: np.ndarray
    joints: np.ndarray
    pelvis: np.ndarray
    betas: np.ndarray
    body_pose: np.ndarray
    global_orient: np.ndarray
    transl: np.ndarray
    category: str
    support: int
    vertex_contact: np.ndarray
    min_sdf: float


def supports_for(room: Room, category: str) -> list[int]:
    """Return the indices of ``room.supports`` a person of ``category`` can use."""
    if category not in P.CATEGORIES:
        raise InputError(f"category: expected one of {P.CATEGORIES}, got {category!r}")
    out = []
    for i, s in enumerate(room.supports):
        if s.kind not in P.CATEGORY_SUPPORTS[category]:
            continue
        if category == P.SITTING_BACK and s.backrest < 0:
            continue
        if category == P.LYING and s.kind == "seat" and s.half_extents[1] < 0.5:
            continue  # lie on sofas, not on chairs
        out.append(i)
    return out


def _forward(model, betas: np.ndarray, body_poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (B, 6890, 3) and joints (B, 24, 3), float64, SMPL frame, zero orientation and translation."""
    dtype = model.v_template.dtype
    b = len(body_poses)
    with torch.no_grad():
        out = model(betas=torch.as_tensor(np.repeat(betas[None], b, 0), dtype=dtype),
                    body_pose=torch.as_tensor(body_poses, dtype=dtype), global_orient=torch.zeros(b, 3, dtype=dtype),
                    transl=torch.zeros(b, 3, dtype=dtype))
    return out.vertices.double().numpy(), out.joints[:, :NUM_SMPL_JOINTS].double().numpy()


def _yaw(yaw: float) -> np.ndarray:
    return Rotation.from_euler("z", yaw).as_matrix()


def _mask(part_ids: np.ndarray, parts) -> np.ndarray:
    return np.isin(part_ids, parts)


def _solve(model, betas, params, keys, values, evaluate):
    """Solve one angle over a batch of candidates.

    The angles ``keys`` take each of ``values``; the candidate whose measure is closest to 0 among the
    valid ones wins, refined by linear interpolation across a sign change.

    Args:
        evaluate: ``(vertices (V, 3), joints (24, 3)) -> (measure, valid)`` for one candidate (SMPL frame).

    Returns:
        ``(params, vertices, joints, residual)``, or None if no candidate is valid.
    """
    batch = [P.body_pose_from_params({**params, **{k: v for k in keys}}) for v in values]
    verts, joints = _forward(model, betas, np.array(batch))
    m, ok = np.array([evaluate(v, j) for v, j in zip(verts, joints)], dtype=np.float64).T
    ok = ok > 0
    if not ok.any():
        return None
    best = int(np.flatnonzero(ok)[np.argmin(np.abs(m[ok]))])
    for i in sorted((i for i in (best - 1, best) if 0 <= i < len(values) - 1 and ok[i] and ok[i + 1]
                     and np.sign(m[i]) != np.sign(m[i + 1]))):
        value = values[i] + (values[i + 1] - values[i]) * m[i] / (m[i] - m[i + 1])
        refined = {**params, **{k: value for k in keys}}
        verts1, joints1 = _forward(model, betas, P.body_pose_from_params(refined)[None])
        residual, valid = evaluate(verts1[0], joints1[0])
        if valid and abs(residual) <= abs(m[best]):
            return refined, verts1[0], joints1[0], float(residual)
    return {**params, **{k: values[best] for k in keys}}, verts[best], joints[best], float(m[best])


def _rotation(params: dict, yaw: float, lying_side: int | None) -> np.ndarray:
    """SMPL frame -> map frame: the yaw (heading of the body's front, or of the head when lying) and the tilt."""
    if lying_side is not None:
        return _yaw(yaw) @ _R_LYING[lying_side]
    return _yaw(yaw) @ _R_MAP_SMPL @ Rotation.from_euler("x", params.get("pelvis_tilt", 0.0), degrees=True).as_matrix()


def _heading(direction: np.ndarray) -> float:
    return float(np.arctan2(direction[1], direction[0]))


def _place_upright(model, betas, params, room, support, rng, parts, category):
    """Place a standing, walking, crouching or wall-leaning body: lowest vertex on the floor or step."""
    if category == P.LEANING_WALL:
        yaw = _heading(support.normal)
    else:
        yaw = rng.uniform(-np.pi, np.pi)
    verts, joints = _forward(model, betas, P.body_pose_from_params(params)[None])
    R = _rotation(params, yaw, None)
    v, j = verts[0] @ R.T, joints[0] @ R.T
    if category == P.LEANING_WALL:
        # Back to the wall: the rearmost vertex on the wall plane, standing on the floor in front of it.
        normal = support.normal
        along = rng.uniform(-1, 1) * max(support.half_extents[0] - 0.4, 0.0)
        base = support.center + along * support.axis_u
        t = base - normal * (v @ normal).min()
        t[2] = -v[:, 2].min()
        return R, t, verts[0], joints[0]
    if support.kind == "floor":
        xy = support.center[:2] + rng.uniform(-1, 1, 2) * np.maximum(support.half_extents - FLOOR_MARGIN_M, 0.0)
        t = np.array([*(xy - j[0, :2]), support.center[2] - v[:, 2].min()])
        return R, t, verts[0], joints[0]
    # a step: both soles on its top
    feet = _mask(parts, _FEET)
    centre = v[feet].mean(axis=0)
    slack = np.maximum(support.half_extents - 0.12, 0.0) * rng.uniform(-1, 1, 2)
    target = support.center + slack[0] * support.axis_u + slack[1] * support.axis_v
    t = np.array([*(target[:2] - centre[:2]), support.center[2] - v[:, 2].min()])
    return R, t, verts[0], joints[0]


def _place_sitting(model, betas, params, room, support, rng, parts, category):
    """Gluteus on the seat (or the bed's edge), feet towards the floor, back on the backrest (SITTING_BACK)."""
    if support.kind == "bed":
        side = 1.0 if rng.random() < 0.5 else -1.0
        facing = side * support.axis_v
        front = support.center + facing * support.half_extents[1]
        lateral, half_lateral = support.axis_u, support.half_extents[0]
        depth = rng.uniform(0.3, 0.45)
    else:
        facing = support.facing if np.any(support.facing) else support.axis_u
        front = support.center + support.axis_u * support.half_extents[0]
        lateral, half_lateral = support.axis_v, support.half_extents[1]
        depth = rng.uniform(0.28, max(0.3, min(2 * support.half_extents[0], 0.5)))
    yaw = _heading(facing) + (np.deg2rad(rng.normal(0, 8)) if support.backrest >= 0 or support.kind == "bed"
                              else rng.uniform(-np.pi, np.pi))
    R = _rotation(params, yaw, None)
    glute, feet = _mask(parts, _GLUTEUS), _mask(parts, _FEET)
    rear_parts = _mask(parts, _GLUTEUS + _BACK)
    seat_z = support.center[2]
    offset = rng.uniform(-1, 1) * max(half_lateral - 0.22, 0.0)
    if category == P.SITTING_BACK:
        back = room.supports[support.backrest]
        rest_top = back.center[2] + back.half_extents[1]

    def translation(v, pelvis):
        t = np.zeros(3)
        t[2] = seat_z - v[glute, 2].min()
        if category == P.SITTING_BACK:
            z = v[:, 2] + t[2]
            rear_pos, rear = back.center @ facing, v[(z <= rest_top + 0.02) & (z >= seat_z)]
        else:
            rear_pos = front @ facing - depth
            rear = v[rear_parts & (v[:, 2] < v[glute, 2].min() + 0.15)]
        t += (rear_pos - (rear @ facing).min()) * facing
        t += (lateral @ front + offset - pelvis @ lateral) * lateral
        return t

    def evaluate(verts, joints):
        v = verts @ R.T
        t = translation(v, joints[0] @ R.T)
        deepest = room.sdf(v[::_CHECK_STRIDE] + t, cutoff=SDF_CUTOFF_M).min()
        return v[feet, 2].min() + t[2], deepest >= -PENETRATION_TOLERANCE_M

    solved = _solve(model, betas, params, ("l_knee", "r_knee"), np.linspace(10, 130, _CANDIDATES), evaluate)
    if solved is None:
        return None
    params.update(solved[0])  # the caller's params: the solved knees
    verts, joints = solved[1], solved[2]
    return R, translation(verts @ R.T, joints[0] @ R.T), verts, joints


def _place_lying(model, betas, params, room, support, rng, parts, side):
    if support.kind == "bed":
        head_dir, long_axis, short_axis = -support.axis_u, support.axis_u, support.axis_v
        half_long, half_short = support.half_extents
    elif support.kind == "seat":
        sign = 1.0 if rng.random() < 0.5 else -1.0
        head_dir, long_axis, short_axis = sign * support.axis_v, support.axis_v, support.axis_u
        half_short, half_long = support.half_extents
    else:
        angle = rng.uniform(-np.pi, np.pi)
        head_dir = np.array([np.cos(angle), np.sin(angle), 0.0])
        half_long = half_short = None
        long_axis, short_axis = head_dir, np.array([-head_dir[1], head_dir[0], 0.0])
    R = _rotation(params, _heading(head_dir), side)
    verts, joints = _forward(model, betas, P.body_pose_from_params(params)[None])
    v = verts[0] @ R.T
    s_long, s_short = v @ long_axis, v @ short_axis
    if half_long is None:  # the floor: anywhere inside the room
        centre = support.center + (rng.uniform(-1, 1, 3) * [*np.maximum(support.half_extents - 1.0, 0.0), 0.0])
        target_long, target_short = centre @ long_axis, centre @ short_axis
        t = target_long * long_axis + target_short * short_axis
        t -= (s_long.min() + s_long.max()) / 2 * long_axis + (s_short.min() + s_short.max()) / 2 * short_axis
    else:
        c_long, c_short = support.center @ long_axis, support.center @ short_axis
        slack_long = half_long - (s_long.max() - s_long.min()) / 2
        slack_short = half_short - (s_short.max() - s_short.min()) / 2
        if slack_long < -0.05 or slack_short < -0.05:
            return None
        shift_long = c_long - (s_long.min() + s_long.max()) / 2 + rng.uniform(-1, 1) * max(slack_long, 0.0)
        shift_short = c_short - (s_short.min() + s_short.max()) / 2 + rng.uniform(-1, 1) * max(slack_short, 0.0)
        t = shift_long * long_axis + shift_short * short_axis
    t[2] = support.center[2] - v[:, 2].min()
    return R, t, verts[0], joints[0]


def _place_hands(model, betas, params, room, support, rng, parts, category, hand):
    """Stand at an edge of a top (table, desk, counter) with one or both hands on it.

    Both hands (LEANING_TABLE): facing the edge, the shoulders' forward angle solved. One hand
    (HAND_ON_SURFACE): facing the edge, or (half of the time) side-on with the arm lowered sideways
    onto the top, the shoulder's abduction solved (a low table is reached at the side of the body).
    """
    # an edge with free floor in front of it (inside the room, no furniture), else any
    stands = np.array([support.center + s * support.half_extents[e // 2] * a + 0.35 * s * a
                       for e, (a, s) in enumerate([(support.axis_u, 1.0), (support.axis_u, -1.0),
                                                   (support.axis_v, 1.0), (support.axis_v, -1.0)])])
    stands[:, 2] = 0.5
    free = np.flatnonzero((np.abs(stands[:, :2]) < room.size / 2 - 0.2).all(axis=1) & (room.sdf(stands) > 0.15))
    edge = int(rng.choice(free)) if len(free) else int(rng.integers(4))
    axis = (support.axis_u, support.axis_v)[edge // 2]
    sign = 1.0 if edge % 2 == 0 else -1.0
    half_edge, half_along = support.half_extents[edge // 2], support.half_extents[1 - edge // 2]
    along_axis = (support.axis_v, support.axis_u)[edge // 2]
    outward = sign * axis
    top_z = support.center[2]
    side_on = hand is not None and rng.random() < 0.5
    yaw = _heading(-outward)
    if side_on:  # the hand's side towards the top: the body's left (hand 0) or right faces -outward
        yaw += -np.pi / 2 if hand == 0 else np.pi / 2
        params.update({f"{'lr'[hand]}_arm_fwd": rng.uniform(-5, 15), f"{'lr'[hand]}_elbow": rng.uniform(0, 20),
                       "pelvis_tilt": 0.0, "spine_flex": rng.uniform(-5, 10)})
        for s in "lr":
            params[f"{s}_hip_flex"] = rng.uniform(-2, 2)
            params[f"{s}_ankle"] = params[f"{s}_knee"] - params[f"{s}_hip_flex"]
    R = _rotation(params, yaw, None)
    hands = _mask(parts, _L_HAND + _R_HAND) if hand is None else _mask(parts, (_L_HAND, _R_HAND)[hand])
    keys = ("l_arm_fwd", "r_arm_fwd") if hand is None else (("l_arm_fwd",), ("r_arm_fwd",))[hand]
    values = np.linspace(0, 100, _CANDIDATES)
    if side_on:
        keys, values = (f"{'lr'[hand]}_arm_down",), np.linspace(20, 95, _CANDIDATES)

    def evaluate(verts, joints):
        v = verts @ R.T
        return v[hands, 2].min() - v[:, 2].min() - top_z, True

    solved = _solve(model, betas, params, keys, values, evaluate)
    if solved is None or abs(solved[3]) > 0.01:
        return None
    params.update(solved[0])
    verts, joints = solved[1], solved[2]
    v = verts @ R.T
    # Along the outward normal: the hands' centre 3..20 cm inside the edge, the hips and legs outside it.
    edge_pos = support.center @ outward + half_edge
    lower = v[:, 2] - v[:, 2].min() < top_z - PENETRATION_TOLERANCE_M  # would hit the top's edge or the body under it
    a_min = edge_pos + 0.02 - (v[lower] @ outward).min()
    hands_mean = (v[hands] @ outward).mean()
    a = max(edge_pos - rng.uniform(0.03, 0.2) - hands_mean, a_min)
    if hands_mean + a > edge_pos - 0.03:
        return None  # the hands cannot reach over the top while the body stays outside
    target_along = support.center @ along_axis + rng.uniform(-1, 1) * max(half_along - 0.25, 0.0)
    t = a * outward + (target_along - (v[hands] @ along_axis).mean()) * along_axis
    t[2] = -v[:, 2].min()
    return R, t, verts, joints


def _contact_ok(category, support, v, sdf, parts, hand) -> bool:
    """Check the contact the category promises, within CONTACT_THRESHOLD_M of the support's surface."""
    def near(mask, count=3):
        return np.count_nonzero(np.abs(sdf[mask]) < CONTACT_THRESHOLD_M) >= count

    if category in (P.STANDING, P.WALKING, P.CROUCHING, P.LEANING_TABLE, P.HAND_ON_SURFACE, P.LEANING_WALL):
        if not near(_mask(parts, _FEET)):
            return False
    if category in (P.SITTING, P.SITTING_BACK):
        return near(_mask(parts, _GLUTEUS))
    if category == P.LEANING_TABLE:
        return near(_mask(parts, _L_HAND)) and near(_mask(parts, _R_HAND))
    if category == P.HAND_ON_SURFACE:
        return near(_mask(parts, (_L_HAND, _R_HAND)[hand]))
    if category == P.LEANING_WALL:
        return near(_mask(parts, _BACK + _GLUTEUS))
    if category == P.LYING:
        return np.count_nonzero(np.abs(sdf) < CONTACT_THRESHOLD_M) >= 30
    return True


def place_person(body_model, room: Room, support: int, category: str, rng: np.random.Generator, *,
                 part_ids: np.ndarray, others: Sequence[PlacedPerson] = ()) -> PlacedPerson:
    """Pose a random person of ``category`` on ``room.supports[support]``, in contact, not penetrating.

    Args:
        body_model: an ``smplx.SMPL`` (``sahmr_ros.body.load_body_model``).
        room: the room.
        support: index into ``room.supports`` (see :func:`supports_for`).
        category: one of ``poses.CATEGORIES``.
        rng: seeded generator (pose, shape, position).
        part_ids: (6890,) contact part of each vertex (``BodyAssets.part_ids_6890``).
        others: people already in the room; the new one keeps ``PERSON_CLEARANCE_M`` from them.

    Returns:
        The placed person.

    Raises:
        PlacementError: no attempt met the constraints.
    """
    if not 0 <= support < len(room.supports):
        raise InputError(f"support: expected an index into room.supports (0..{len(room.supports) - 1}), got {support}")
    if support not in supports_for(room, category):
        raise InputError(f"support: {room.supports[support].kind!r} support {support} cannot host a "
                         f"{category!r} person; use supports_for(room, {category!r})")
    parts = np.asarray(part_ids)
    if parts.shape != (NUM_VERTICES,):
        raise InputError(f"part_ids: expected shape ({NUM_VERTICES},), got {parts.shape}")
    s = room.supports[support]
    trees = [cKDTree(o.vertices) for o in others]
    for _ in range(MAX_ATTEMPTS):
        betas = np.clip(rng.normal(0.0, 1.0, NUM_BETAS), -BETA_CLIP, BETA_CLIP)
        params = P.sample_pose_params(category, rng)
        side = params.pop("lying_side", None)
        hand = params.pop("hand", None)
        if category in (P.SITTING, P.SITTING_BACK):
            placed = _place_sitting(body_model, betas, params, room, s, rng, parts, category)
        elif category == P.LYING:
            placed = _place_lying(body_model, betas, params, room, s, rng, parts, int(side))
        elif category in (P.LEANING_TABLE, P.HAND_ON_SURFACE):
            placed = _place_hands(body_model, betas, params, room, s, rng, parts, category,
                                  None if hand is None else int(hand))
        else:
            placed = _place_upright(body_model, betas, params, room, s, rng, parts, category)
        if placed is None:
            continue
        R, t, rest_vertices, rest_joints = placed
        vertices, joints = rest_vertices @ R.T + t, rest_joints @ R.T + t
        if (np.abs(vertices[:, :2]) > room.size / 2).any():
            continue  # partly outside the room (past an open side)
        sdf = room.sdf(vertices, cutoff=SDF_CUTOFF_M)
        if sdf.min() < -PENETRATION_TOLERANCE_M or not _contact_ok(category, s, vertices, sdf, parts, hand):
            continue
        if any(t.query(vertices, distance_upper_bound=PERSON_CLEARANCE_M)[0].min() < PERSON_CLEARANCE_M
               for t in trees):
            continue
        return _result(betas, params, R, t, rest_joints, vertices, joints, category, support, sdf)
    raise PlacementError(f"could not place a {category!r} person on support {support} ({s.kind}) of room "
                         f"{room.seed} in {MAX_ATTEMPTS} attempts")


def _result(betas, params, R, t, rest_joints, vertices, joints, category, support, sdf) -> PlacedPerson:
    j0 = rest_joints[0]  # smplx turns the body about the rest-pose root joint
    return PlacedPerson(
        vertices=vertices, joints=joints, pelvis=joints[0].copy(), betas=betas,
        body_pose=P.body_pose_from_params(params),
        global_orient=Rotation.from_matrix(R).as_rotvec(), transl=t + R @ j0 - j0, category=category,
        support=int(support), vertex_contact=np.abs(sdf) < CONTACT_THRESHOLD_M, min_sdf=float(sdf.min()))


def sample_person(body_model, room: Room, rng: np.random.Generator, *, part_ids: np.ndarray,
                  others: Sequence[PlacedPerson] = (), categories: Sequence[str] = P.CATEGORIES,
                  tries: int = 6) -> PlacedPerson:
    """Place a person of a random category (among ``categories``) on a random support that fits it.

    Raises:
        PlacementError: ``tries`` category / support draws all failed.
    """
    usable = [(c, supports_for(room, c)) for c in categories]
    usable = [(c, s) for c, s in usable if s]
    if not usable:
        raise PlacementError(f"room {room.seed} has no support for any of {list(categories)}")
    for _ in range(tries):
        category, supports = usable[rng.integers(len(usable))]
        try:
            return place_person(body_model, room, int(supports[rng.integers(len(supports))]), category, rng,
                                part_ids=part_ids, others=others)
        except PlacementError:
            continue
    raise PlacementError(f"could not place anyone in room {room.seed} in {tries} draws")


def place_walker(body_model, room: Room, path, times: np.ndarray, rng: np.random.Generator, *,
                 part_ids: np.ndarray, others: Sequence[PlacedPerson] = (),
                 walkers: Sequence[Sequence[PlacedPerson]] = ()) -> list[PlacedPerson]:
    """Pose a random person walking along ``path`` (a :class:`~sahmr_ros.data.motion.WalkPath`) at ``times``.

    One body shape and one set of arm, spine and head angles for the whole walk; per frame the gait
    phase of the path (:func:`~sahmr_ros.data.poses.walking_params`), the body turned to the path's
    heading, the pelvis over the path and the lowest vertex on the floor.

    Args:
        body_model: an ``smplx.SMPL``.
        room: the room.
        path: the walk; times: (T,) seconds.
        rng: seeded generator (shape, gait amplitudes, arms).
        part_ids: (6890,) contact part of each vertex.
        others: people standing or sitting still (``PERSON_CLEARANCE_M`` from them at every frame).
        walkers: the frames of the walkers placed before (pelvises ``WALKER_SEPARATION_M`` apart).

    Returns:
        One :class:`PlacedPerson` per time (category ``walking``, support 0, the floor).

    Raises:
        PlacementError: the walk penetrates the room, leaves it or comes too close to someone.
    """
    parts = np.asarray(part_ids)
    if parts.shape != (NUM_VERTICES,):
        raise InputError(f"part_ids: expected shape ({NUM_VERTICES},), got {parts.shape}")
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    betas = np.clip(rng.normal(0.0, 1.0, NUM_BETAS), -BETA_CLIP, BETA_CLIP)
    base = P.sample_pose_params(P.WALKING, rng)  # spine, head and arms; the legs follow the gait below
    gait = (rng.uniform(*P.GAIT_HIP_AMPLITUDE_DEG), rng.uniform(*P.GAIT_KNEE_AMPLITUDE_DEG),
            rng.uniform(*P.GAIT_ARM_SWING))
    xy, yaw, phase = path.at(times)
    params = [P.walking_params(base, float(ph), *gait) for ph in phase]
    rest_vertices, rest_joints = _forward(body_model, betas, np.array([P.body_pose_from_params(p) for p in params]))
    floor_z = room.supports[0].center[2]
    trees = [cKDTree(o.vertices[::_CHECK_STRIDE]) for o in others]
    out = []
    for k in range(len(times)):
        R = _rotation({}, float(yaw[k]), None)
        v, j = rest_vertices[k] @ R.T, rest_joints[k] @ R.T
        t = np.array([*(xy[k] - j[0, :2]), floor_z - v[:, 2].min()])
        vertices, joints = v + t, j + t
        if (np.abs(vertices[:, :2]) > room.size / 2).any():
            raise PlacementError(f"walker leaves room {room.seed} at t = {times[k]:.2f} s")
        sdf = room.sdf(vertices, cutoff=SDF_CUTOFF_M)
        if sdf.min() < -PENETRATION_TOLERANCE_M:
            raise PlacementError(f"walker penetrates room {room.seed} by {-sdf.min():.3f} m at t = {times[k]:.2f} s")
        if any(tree.query(vertices[::_CHECK_STRIDE], distance_upper_bound=PERSON_CLEARANCE_M)[0].min()
               < PERSON_CLEARANCE_M for tree in trees):
            raise PlacementError(f"walker touches a person in room {room.seed} at t = {times[k]:.2f} s")
        if any(np.linalg.norm(w[k].pelvis[:2] - joints[0, :2]) < WALKER_SEPARATION_M for w in walkers):
            raise PlacementError(f"two walkers meet in room {room.seed} at t = {times[k]:.2f} s")
        out.append(_result(betas, params[k], R, t, rest_joints[k], vertices, joints, P.WALKING, 0, sdf))
    return out
