"""The furniture people touch, each built from boxes with random dimensions and materials.

Every builder takes a seeded ``numpy.random.Generator`` and returns an :class:`Item` in its own
local frame: metres, z up, the footprint centred on the origin, the *front* (where a person sits
down, stands or approaches from) along local +x. Wall furniture (sofa, bed, desk, counter) has
its back, local -x, against the wall. :func:`sahmr_ros.data.rooms.make_room` turns items by a yaw
and moves them into the room.

Semantic labels (one per box, and so per mesh face) are the ``LABEL_*`` integers; ``LABEL_NAMES``
gives their names. Support kinds (``KIND_*``) say what a person can do with a surface.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --- semantic labels of the room's faces ------------------------------------------------------------
LABEL_NAMES = ("none", "floor", "wall", "chair_seat", "chair_back", "chair_leg", "stool_seat", "stool_leg",
               "sofa_seat", "sofa_back", "sofa_arm", "bed", "bed_frame", "table_top", "table_leg", "desk_top",
               "desk_leg", "counter_top", "counter_body", "step")
(LABEL_NONE, LABEL_FLOOR, LABEL_WALL, LABEL_CHAIR_SEAT, LABEL_CHAIR_BACK, LABEL_CHAIR_LEG, LABEL_STOOL_SEAT,
 LABEL_STOOL_LEG, LABEL_SOFA_SEAT, LABEL_SOFA_BACK, LABEL_SOFA_ARM, LABEL_BED, LABEL_BED_FRAME, LABEL_TABLE_TOP,
 LABEL_TABLE_LEG, LABEL_DESK_TOP, LABEL_DESK_LEG, LABEL_COUNTER_TOP, LABEL_COUNTER_BODY,
 LABEL_STEP) = range(len(LABEL_NAMES))

# --- kinds of support: what a person can do with a surface -------------------------------------------
KIND_FLOOR = "floor"  # stand, walk, crouch, lie
KIND_SEAT = "seat"  # sit (chairs, stools, sofas); a sofa seat also to lie on
KIND_BACKREST = "backrest"  # lean the back on (belongs to a seat)
KIND_BED = "bed"  # lie on, sit on its edge
KIND_TABLE_TOP = "table_top"  # hands on it, lean on it (tables and desks)
KIND_COUNTER_TOP = "counter_top"  # hands on it, lean on it
KIND_WALL = "wall"  # lean on
KIND_STEP = "step"  # stand on
SUPPORT_KINDS = (KIND_FLOOR, KIND_SEAT, KIND_BACKREST, KIND_BED, KIND_TABLE_TOP, KIND_COUNTER_TOP, KIND_WALL,
                 KIND_STEP)

# --- materials: base colours (RGB) a piece picks from ------------------------------------------------
WOODS = ((150, 80, 50), (120, 90, 60), (186, 150, 105), (95, 65, 45), (205, 175, 130), (70, 50, 40))
FABRICS = ((70, 100, 150), (150, 60, 60), (90, 120, 80), (160, 150, 135), (60, 60, 70), (190, 120, 60))
PAINTS = ((235, 235, 230), (60, 60, 60), (200, 60, 50), (70, 120, 170), (220, 200, 90), (120, 130, 140))
LINENS = ((235, 235, 240), (200, 210, 230), (230, 215, 200), (180, 200, 180))
STONES = ((225, 225, 220), (80, 80, 85), (190, 180, 165), (140, 140, 150))


@dataclass(frozen=True)
class LocalBox:
    """A box of an item, in the item's frame.

    ``center`` (3,), ``half_extents`` (3,) metres, semantic ``label``, RGB ``color``.
    """

    center: tuple[float, float, float]
    half_extents: tuple[float, float, float]
    label: int
    color: tuple[int, int, int]


@dataclass(frozen=True)
class LocalSupport:
    """A usable rectangle of an item, in the item's frame (see :class:`sahmr_ros.data.rooms.Support`).

    ``backrest`` is the index of the seat's backrest among the item's supports, -1 if none.
    """

    kind: str
    label: int
    center: tuple[float, float, float]
    axis_u: tuple[float, float, float]
    axis_v: tuple[float, float, float]
    half_extents: tuple[float, float]
    normal: tuple[float, float, float]
    facing: tuple[float, float, float] = (0.0, 0.0, 0.0)
    backrest: int = -1


@dataclass(frozen=True)
class Item:
    """One piece of furniture in its local frame (front = +x).

    Attributes:
        name: ``"chair"``, ``"stool"``, ``"sofa"``, ``"bed"``, ``"table"``, ``"desk"``, ``"counter"``, ``"step"``.
        half_size: (hx, hy) half footprint along local x and y, metres.
        clearance: free floor kept around the footprint, metres: (front (+x), back (-x), sides (+-y)).
        against_wall: whether its back goes against a wall.
        boxes, supports: its solids and usable surfaces.
    """

    name: str
    half_size: tuple[float, float]
    clearance: tuple[float, float, float]
    against_wall: bool
    boxes: list[LocalBox] = field(default_factory=list)
    supports: list[LocalSupport] = field(default_factory=list)


def _pick(rng: np.random.Generator, palette) -> tuple[int, int, int]:
    """Pick a colour of ``palette`` with a little random tint."""
    base = np.asarray(palette[rng.integers(len(palette))], dtype=np.float64)
    return tuple(int(c) for c in np.clip(np.round(base * rng.uniform(0.9, 1.1, 3)), 0, 255))


def _box(x0, x1, y0, y1, z0, z1, label, color) -> LocalBox:
    return LocalBox(((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2), ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2),
                    label, color)


def _legs(hx, hy, leg, height, label, color) -> list[LocalBox]:
    """Four square legs of side ``leg`` at the corners of the footprint (hx, hy), from the floor to ``height``."""
    return [_box(sx * hx - (sx > 0) * leg, sx * hx + (sx < 0) * leg, sy * hy - (sy > 0) * leg,
                 sy * hy + (sy < 0) * leg, 0.0, height, label, color) for sx in (-1, 1) for sy in (-1, 1)]


def _top(kind, label, x0, x1, y0, y1, z, facing=(0.0, 0.0, 0.0), backrest=-1) -> LocalSupport:
    """Make a horizontal support rectangle [x0, x1] x [y0, y1] at height z (u = +x, v = +y, normal +z)."""
    return LocalSupport(kind, label, ((x0 + x1) / 2, (y0 + y1) / 2, z), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0),
                        ((x1 - x0) / 2, (y1 - y0) / 2), (0.0, 0.0, 1.0), facing, backrest)


def _backrest(label, x, y0, y1, z0, z1) -> LocalSupport:
    """Make a vertical backrest face at local x facing +x, spanning [y0, y1] x [z0, z1] (u = +y, v = +z)."""
    return LocalSupport(KIND_BACKREST, label, (x, (y0 + y1) / 2, (z0 + z1) / 2), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0),
                        ((y1 - y0) / 2, (z1 - z0) / 2), (1.0, 0.0, 0.0))


def chair(rng: np.random.Generator) -> Item:
    """Build a chair: seat, four legs and a backrest at the back (-x); the sitter faces +x."""
    depth, width = rng.uniform(0.40, 0.48), rng.uniform(0.40, 0.50)
    height, seat_t, leg = rng.uniform(0.42, 0.48), rng.uniform(0.03, 0.05), rng.uniform(0.03, 0.045)
    back_h, back_t = rng.uniform(0.35, 0.50), rng.uniform(0.025, 0.04)
    color = _pick(rng, WOODS if rng.random() < 0.7 else PAINTS)
    hx, hy = depth / 2, width / 2
    boxes = [_box(-hx, hx, -hy, hy, height - seat_t, height, LABEL_CHAIR_SEAT, color)]
    boxes += _legs(hx, hy, leg, height - seat_t, LABEL_CHAIR_LEG, color)
    boxes.append(_box(-hx, -hx + back_t, -hy, hy, height, height + back_h, LABEL_CHAIR_BACK, color))
    supports = [_top(KIND_SEAT, LABEL_CHAIR_SEAT, -hx + back_t, hx, -hy, hy, height, (1.0, 0.0, 0.0), backrest=1),
                _backrest(LABEL_CHAIR_BACK, -hx + back_t, -hy, hy, height, height + back_h)]
    return Item("chair", (hx, hy), (0.55, 0.05, 0.1), False, boxes, supports)


def stool(rng: np.random.Generator) -> Item:
    """Build a stool: a square seat on four legs, no backrest."""
    half, height = rng.uniform(0.15, 0.2), rng.uniform(0.42, 0.65)
    seat_t, leg = rng.uniform(0.03, 0.05), rng.uniform(0.025, 0.04)
    color = _pick(rng, WOODS if rng.random() < 0.5 else PAINTS)
    boxes = [_box(-half, half, -half, half, height - seat_t, height, LABEL_STOOL_SEAT, color)]
    boxes += _legs(half, half, leg, height - seat_t, LABEL_STOOL_LEG, color)
    supports = [_top(KIND_SEAT, LABEL_STOOL_SEAT, -half, half, -half, half, height, (1.0, 0.0, 0.0))]
    return Item("stool", (half, half), (0.55, 0.3, 0.3), False, boxes, supports)


def sofa(rng: np.random.Generator) -> Item:
    """Build a sofa against a wall: seat block, full-width backrest at -x and two arms."""
    width, depth = rng.uniform(1.4, 2.2), rng.uniform(0.8, 0.95)
    seat_h, back_h, back_t = rng.uniform(0.38, 0.45), rng.uniform(0.75, 0.9), rng.uniform(0.15, 0.25)
    arm_w, arm_h = rng.uniform(0.12, 0.2), rng.uniform(0.55, 0.65)
    color = _pick(rng, FABRICS)
    hx, hy = depth / 2, width / 2
    x_back = -hx + back_t
    boxes = [_box(x_back, hx, -hy + arm_w, hy - arm_w, 0.0, seat_h, LABEL_SOFA_SEAT, color),
             _box(-hx, x_back, -hy, hy, 0.0, back_h, LABEL_SOFA_BACK, color),
             _box(x_back, hx, -hy, -hy + arm_w, 0.0, arm_h, LABEL_SOFA_ARM, color),
             _box(x_back, hx, hy - arm_w, hy, 0.0, arm_h, LABEL_SOFA_ARM, color)]
    supports = [_top(KIND_SEAT, LABEL_SOFA_SEAT, x_back, hx, -hy + arm_w, hy - arm_w, seat_h, (1.0, 0.0, 0.0),
                     backrest=1),
                _backrest(LABEL_SOFA_BACK, x_back, -hy + arm_w, hy - arm_w, seat_h, back_h)]
    return Item("sofa", (hx, hy), (0.6, 0.0, 0.1), True, boxes, supports)


def bed(rng: np.random.Generator) -> Item:
    """Build a bed with its headboard against a wall (-x): frame, mattress and headboard; lie along +x."""
    length, width = rng.uniform(1.95, 2.15), rng.uniform(0.9, 1.8)
    height, mattress_t = rng.uniform(0.45, 0.6), rng.uniform(0.15, 0.25)
    head_t, head_h = rng.uniform(0.04, 0.08), rng.uniform(0.9, 1.2)
    frame, linen = _pick(rng, WOODS), _pick(rng, LINENS)
    hx, hy = length / 2, width / 2
    x_head = -hx + head_t
    boxes = [_box(-hx, x_head, -hy, hy, 0.0, head_h, LABEL_BED_FRAME, frame),
             _box(x_head, hx, -hy, hy, 0.0, height - mattress_t, LABEL_BED_FRAME, frame),
             _box(x_head, hx, -hy, hy, height - mattress_t, height, LABEL_BED, linen)]
    supports = [_top(KIND_BED, LABEL_BED, x_head, hx, -hy, hy, height)]
    return Item("bed", (hx, hy), (0.5, 0.0, 0.5), True, boxes, supports)


def table(rng: np.random.Generator) -> Item:
    """Build a table: a top on four legs, free-standing."""
    length, width = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0)
    height, top_t, leg = rng.uniform(0.72, 0.78), rng.uniform(0.03, 0.05), rng.uniform(0.04, 0.07)
    color = _pick(rng, WOODS if rng.random() < 0.8 else PAINTS)
    hx, hy = length / 2, width / 2
    inset = rng.uniform(0.0, 0.08)
    boxes = [_box(-hx, hx, -hy, hy, height - top_t, height, LABEL_TABLE_TOP, color)]
    boxes += _legs(hx - inset, hy - inset, leg, height - top_t, LABEL_TABLE_LEG, color)
    supports = [_top(KIND_TABLE_TOP, LABEL_TABLE_TOP, -hx, hx, -hy, hy, height)]
    return Item("table", (hx, hy), (0.55, 0.55, 0.55), False, boxes, supports)


def desk(rng: np.random.Generator) -> Item:
    """Build a desk against a wall: a top on two side panels; used from the front (+x)."""
    depth, width = rng.uniform(0.55, 0.75), rng.uniform(1.0, 1.6)
    height, top_t, panel = rng.uniform(0.72, 0.76), rng.uniform(0.025, 0.04), rng.uniform(0.02, 0.035)
    color = _pick(rng, WOODS if rng.random() < 0.6 else PAINTS)
    hx, hy = depth / 2, width / 2
    boxes = [_box(-hx, hx, -hy, hy, height - top_t, height, LABEL_DESK_TOP, color),
             _box(-hx, hx, -hy, -hy + panel, 0.0, height - top_t, LABEL_DESK_LEG, color),
             _box(-hx, hx, hy - panel, hy, 0.0, height - top_t, LABEL_DESK_LEG, color)]
    supports = [_top(KIND_TABLE_TOP, LABEL_DESK_TOP, -hx, hx, -hy, hy, height)]
    return Item("desk", (hx, hy), (0.6, 0.0, 0.1), True, boxes, supports)


def counter(rng: np.random.Generator) -> Item:
    """Build a kitchen counter against a wall: a solid body and a top overhanging the front by 3 cm."""
    depth, width = rng.uniform(0.55, 0.65), rng.uniform(1.2, 3.0)
    height, top_t = rng.uniform(0.88, 0.95), rng.uniform(0.03, 0.05)
    body, top = _pick(rng, PAINTS), _pick(rng, STONES)
    hx, hy = depth / 2, width / 2
    boxes = [_box(-hx, hx - 0.03, -hy, hy, 0.0, height - top_t, LABEL_COUNTER_BODY, body),
             _box(-hx, hx, -hy, hy, height - top_t, height, LABEL_COUNTER_TOP, top)]
    supports = [_top(KIND_COUNTER_TOP, LABEL_COUNTER_TOP, -hx, hx, -hy, hy, height)]
    return Item("counter", (hx, hy), (0.7, 0.0, 0.1), True, boxes, supports)


def step(rng: np.random.Generator) -> Item:
    """Build a low platform to stand on."""
    depth, width, height = rng.uniform(0.35, 0.6), rng.uniform(0.6, 1.2), rng.uniform(0.12, 0.25)
    color = _pick(rng, WOODS if rng.random() < 0.5 else STONES)
    hx, hy = depth / 2, width / 2
    boxes = [_box(-hx, hx, -hy, hy, 0.0, height, LABEL_STEP, color)]
    supports = [_top(KIND_STEP, LABEL_STEP, -hx, hx, -hy, hy, height)]
    return Item("step", (hx, hy), (0.5, 0.3, 0.3), False, boxes, supports)


BUILDERS = {"chair": chair, "stool": stool, "sofa": sofa, "bed": bed, "table": table, "desk": desk,
            "counter": counter, "step": step}
