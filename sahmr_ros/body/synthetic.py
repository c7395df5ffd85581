"""A synthetic body in SMPL's file format, for tests and the demo. It is NOT SMPL.

SMPL itself is licensed per user, so tests and the embedded demo run on this stand-in: a procedural
person with the same *format* as the SMPL neutral model (6890 vertices, 13776 faces, SMPL's 24-joint
kinematic tree, linear blend skinning with shape and pose blend shapes) and synthetic versions of
the three small official SA-HMR files for the same topology. Nothing here is derived from SMPL data;
networks trained on SMPL give meaningless output on it.

Frame of the body model (as SMPL's): metres, y up, the body faces +z, +x is the body's left.
T-pose, about 1.73 m tall, pelvis joint at y = -0.22 m (SMPL-like).

Construction (deterministic, no randomness):

1. The torso is a modulated superellipsoid, a radial embedding of the unit sphere. The head and
   the four limbs are tubes along smoothed bone chains, each closed by an ellipsoidal cap; each
   starts at a "hole" of the torso, a spherical cap on the unit sphere.
2. Torso vertices are latitude rings (spacing = target edge length on the body) outside the
   caps; limb vertices are rings across the tube.
3. Topology: the convex hull of the torso points plus each hole's boundary ring plus one apex per
   hole, all on the unit sphere, triangulates a sphere; the apex fans are replaced by the tubes'
   ring strips. So the surface is closed, genus 0 and consistently oriented by construction.
4. The target edge length is searched so that there are at least 6890 vertices; the few extra
   torso points are dropped (spread out).

Public: :func:`write_synthetic_model_dir` (a model directory), :func:`make_synthetic_body` (the
arrays in memory) and the synthetic versions of the official files (``synthetic_*``).
"""

from __future__ import annotations

import contextlib
import functools
import pickle
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.interpolate
import scipy.ndimage
import scipy.optimize
import scipy.sparse
import scipy.spatial

from sahmr_ros import constants as C

__all__ = [
    "REGION_NAMES",
    "SyntheticBody",
    "make_synthetic_body",
    "synthetic_h36m_regressor",
    "synthetic_mesh_downsampling",
    "synthetic_part_ids",
    "temporary_synthetic_model_dir",
    "write_synthetic_model_dir",
]

# --- design skeleton: SMPL joint order, metres, y up, +x = body's left, +z = forward ---------------
_JOINTS = np.array([
    [0.000, -0.220, 0.000],   # 0 pelvis
    [0.085, -0.320, 0.000],   # 1 L hip
    [-0.085, -0.320, 0.000],  # 2 R hip
    [0.000, -0.110, -0.010],  # 3 spine1
    [0.100, -0.715, 0.005],   # 4 L knee
    [-0.100, -0.715, 0.005],  # 5 R knee
    [0.000, 0.020, -0.010],   # 6 spine2
    [0.090, -1.085, -0.030],  # 7 L ankle
    [-0.090, -1.085, -0.030],  # 8 R ankle
    [0.000, 0.090, 0.000],    # 9 spine3
    [0.100, -1.140, 0.100],   # 10 L foot
    [-0.100, -1.140, 0.100],  # 11 R foot
    [0.000, 0.285, -0.010],   # 12 neck
    [0.080, 0.200, -0.010],   # 13 L collar
    [-0.080, 0.200, -0.010],  # 14 R collar
    [0.000, 0.380, 0.015],    # 15 head
    [0.170, 0.215, -0.020],   # 16 L shoulder
    [-0.170, 0.215, -0.020],  # 17 R shoulder
    [0.430, 0.210, -0.035],   # 18 L elbow
    [-0.430, 0.210, -0.035],  # 19 R elbow
    [0.690, 0.210, -0.035],   # 20 L wrist
    [-0.690, 0.210, -0.035],  # 21 R wrist
    [0.775, 0.205, -0.035],   # 22 L hand
    [-0.775, 0.205, -0.035],  # 23 R hand
])

# Regions (ids stored in SyntheticBody.region).
REGION_NAMES = ("torso", "head", "left_arm", "right_arm", "left_leg", "right_leg")

# --- torso: superellipsoid (exponent _TORSO_EXP) stretched between these heights --------------------
_TORSO_BOTTOM, _TORSO_TOP = -0.405, 0.300
_TORSO_EXP_XZ = 2.4  # cross-sections: rounded rectangles
_TORSO_EXP_TOP, _TORSO_EXP_BOTTOM = 3.5, 6.0  # flat bottom where the legs attach
_TORSO_KNOTS_Y = np.array([-0.405, -0.33, -0.22, -0.08, 0.06, 0.16, 0.24, 0.300])
_TORSO_HALF_WIDTH = scipy.interpolate.PchipInterpolator(
    _TORSO_KNOTS_Y, [0.180, 0.180, 0.172, 0.148, 0.158, 0.185, 0.205, 0.210], extrapolate=True)
_TORSO_HALF_DEPTH = scipy.interpolate.PchipInterpolator(
    _TORSO_KNOTS_Y, [0.100, 0.105, 0.108, 0.098, 0.110, 0.115, 0.100, 0.090], extrapolate=True)
_TORSO_Z_OFFSET = scipy.interpolate.PchipInterpolator(
    _TORSO_KNOTS_Y, [-0.010, -0.012, -0.010, 0.005, 0.012, 0.012, -0.005, -0.010], extrapolate=True)


@dataclass(frozen=True)
class _LimbSpec:
    """A tube: hole on the torso near ``hole_target``, then through ``points`` with radii."""

    region: int
    hole_target: tuple[float, float, float]
    points: tuple[tuple[float, float, float], ...]
    radii: tuple[tuple[float, float], ...]  # (r1, r2) at the hole and at each point
    tip_length: float  # length of the closing cap beyond the last point
    n1: tuple[float, float, float]  # reference for the first cross-section axis


def _mirror(spec: _LimbSpec, region: int) -> _LimbSpec:
    flip = lambda p: (-p[0], p[1], p[2])  # noqa: E731
    return _LimbSpec(region, flip(spec.hole_target), tuple(flip(p) for p in spec.points), spec.radii,
                     spec.tip_length, spec.n1)


_HEAD = _LimbSpec(
    region=1, hole_target=(0.0, 0.30, -0.01),
    points=((0.0, 0.335, -0.005), (0.0, 0.37, 0.005), (0.0, 0.42, 0.015), (0.0, 0.46, 0.010)),
    radii=((0.072, 0.066), (0.061, 0.062), (0.064, 0.070), (0.088, 0.100), (0.092, 0.104)),
    tip_length=0.095, n1=(1.0, 0.0, 0.0))
_LEFT_ARM = _LimbSpec(
    region=2, hole_target=(0.20, 0.212, -0.02),
    points=((0.26, 0.212, -0.025), (0.43, 0.210, -0.035), (0.56, 0.210, -0.035), (0.69, 0.210, -0.035),
            (0.75, 0.206, -0.035), (0.85, 0.202, -0.035)),
    radii=((0.056, 0.056), (0.050, 0.048), (0.038, 0.036), (0.040, 0.036), (0.031, 0.022), (0.046, 0.016),
           (0.042, 0.012)),
    tip_length=0.025, n1=(0.0, 0.0, 1.0))
_LEFT_LEG = _LimbSpec(
    region=4, hole_target=(0.092, -0.40, 0.0),
    points=((0.096, -0.50, 0.002), (0.100, -0.715, 0.005), (0.096, -0.86, -0.010), (0.090, -1.07, -0.030),
            (0.093, -1.125, -0.005), (0.097, -1.143, 0.060), (0.102, -1.148, 0.150)),
    radii=((0.084, 0.084), (0.076, 0.080), (0.052, 0.054), (0.054, 0.060), (0.036, 0.040), (0.040, 0.034),
           (0.046, 0.030), (0.042, 0.022)),
    tip_length=0.03, n1=(1.0, 0.0, 0.0))
_LIMBS = (_HEAD, _LEFT_ARM, _mirror(_LEFT_ARM, 3), _LEFT_LEG, _mirror(_LEFT_LEG, 5))

_BLEND_M = 0.035  # limb surfaces blend into the torso over this length
_NOSE = (np.array([0.0, 0.415, 0.115]), 0.022, 0.016)  # centre, radius, height of the nose bump


@dataclass(frozen=True)
class SyntheticBody:
    """The synthetic body's arrays (SMPL conventions). Not SMPL.

    Attributes:
        vertices: (6890, 3) float64 template (T-pose), metres.
        faces: (13776, 3) int64, counter-clockwise seen from outside.
        joints: (24, 3) float64, ``j_regressor @ vertices``.
        parents: (24,) int64, SMPL kinematic tree (-1 for the root).
        weights: (6890, 24) float64 skinning weights, rows sum to 1.
        j_regressor: (24, 6890) scipy.sparse.csc_matrix, rows sum to 1.
        shapedirs: (6890, 3, 10) float64 shape blend shapes.
        posedirs: (6890, 3, 207) float64 pose blend shapes (small).
        region: (6890,) int64 index into :data:`REGION_NAMES`.
        sphere: (6890, 3) float64 unit-sphere embedding used to triangulate (any subset's convex hull
            is a genus-0 triangulation of it).
    """

    vertices: np.ndarray
    faces: np.ndarray
    joints: np.ndarray
    parents: np.ndarray
    weights: np.ndarray
    j_regressor: scipy.sparse.csc_matrix
    shapedirs: np.ndarray
    posedirs: np.ndarray
    region: np.ndarray
    sphere: np.ndarray


# --- torso ----------------------------------------------------------------------------------------
def _torso(p: np.ndarray) -> np.ndarray:
    """Map unit directions (N, 3) -> torso surface points (N, 3). An embedding of the sphere."""
    n = _TORSO_EXP_XZ
    m = np.where(p[..., 1] < 0, _TORSO_EXP_BOTTOM, _TORSO_EXP_TOP)
    horizontal = (np.abs(p[..., 0]) ** n + np.abs(p[..., 2]) ** n) ** (m / n)
    rho = (horizontal + np.abs(p[..., 1]) ** m) ** (-1.0 / m)
    s = p * rho[..., None]
    half_h = 0.5 * (_TORSO_TOP - _TORSO_BOTTOM)
    y = 0.5 * (_TORSO_TOP + _TORSO_BOTTOM) + half_h * s[..., 1]
    x = s[..., 0] * _TORSO_HALF_WIDTH(y)
    z = s[..., 2] * _TORSO_HALF_DEPTH(y) + _TORSO_Z_OFFSET(y)
    return np.stack([x, y, z], axis=-1)


def _latlon(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return np.stack(np.broadcast_arrays(np.cos(lat) * np.cos(lon), np.sin(lat), np.cos(lat) * np.sin(lon)), -1)


def _cap_frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = ref - ref.dot(axis) * axis
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)  # e1 x e2 = axis: azimuth runs counter-clockwise seen from outside


def _on_cap(axis, e1, e2, phi, psi) -> np.ndarray:
    phi, psi = np.broadcast_arrays(np.asarray(phi, float), np.asarray(psi, float))
    return (np.cos(phi)[..., None] * axis
            + np.sin(phi)[..., None] * (np.cos(psi)[..., None] * e1 + np.sin(psi)[..., None] * e2))


def _hole_axis(target: np.ndarray) -> np.ndarray:
    """Find the unit direction whose torso point is nearest to ``target``."""
    def cost(a):
        return float(np.sum((_torso(_latlon(a[0], a[1])) - target) ** 2))
    d = target - np.array([0.0, 0.5 * (_TORSO_TOP + _TORSO_BOTTOM), 0.0])
    start = np.array([np.arcsin(np.clip(d[1] / np.linalg.norm(d), -1, 1)), np.arctan2(d[2], d[0])])
    res = scipy.optimize.minimize(cost, start, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-14})
    return _latlon(res.x[0], res.x[1])


def _hole_angle(axis, e1, e2, radius: float) -> float:
    """Cap angle whose torso boundary ring has mean distance ``radius`` from the hole centre."""
    psi = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    centre = _torso(axis)
    lo, hi = 1e-4, 1.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        r = np.linalg.norm(_torso(_on_cap(axis, e1, e2, mid, psi)) - centre, axis=-1).mean()
        lo, hi = (mid, hi) if r < radius else (lo, mid)
    return 0.5 * (lo + hi)


# --- limbs ----------------------------------------------------------------------------------------
def _chaikin(points: np.ndarray, iterations: int = 4) -> np.ndarray:
    for _ in range(iterations):
        q = 0.75 * points[:-1] + 0.25 * points[1:]
        r = 0.25 * points[:-1] + 0.75 * points[1:]
        mid = np.stack([q, r], axis=1).reshape(-1, 3)
        points = np.concatenate([points[:1], mid[1:-1], points[-1:]])
    return points


@dataclass
class _Limb:
    spec: _LimbSpec
    axis: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    theta: float  # cap angle on the unit sphere
    m: np.ndarray  # (S,) profile arclength of the fine samples (tube then cap)
    centre: np.ndarray  # (S, 3)
    frame: np.ndarray  # (S, 3, 3) rows: N1, N2, tangent
    r: np.ndarray  # (S, 2)
    cap_offset: np.ndarray  # (S,) distance along the tangent beyond the centre (cap part)
    cap_scale: np.ndarray  # (S,) cross-section shrink (cap part)
    delta: float  # azimuth offset between the sphere cap frame and the tube frame
    perimeter: np.ndarray = None  # (S,) cross-section perimeter (the hole's at m = 0)


def _build_limb(spec: _LimbSpec) -> _Limb:
    target = np.array(spec.hole_target)
    mirror = np.array([-1.0 if target[0] < 0 else 1.0, 1.0, 1.0])  # left/right exactly symmetric
    axis = _hole_axis(target * mirror) * mirror
    e1, e2 = _cap_frame(axis)
    theta = _hole_angle(axis, e1, e2, float(np.mean(spec.radii[0])))
    ctrl = np.concatenate([_torso(axis)[None], np.array(spec.points)])
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1))])
    curve = _chaikin(ctrl)
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    s_curve = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.linspace(0.0, s_curve[-1], max(int(s_curve[-1] / 0.002), 50))
    centre = np.stack([np.interp(s, s_curve, curve[:, k]) for k in range(3)], -1)
    radii = np.array(spec.radii)
    u = s / s[-1] * chord[-1]
    r = np.stack([np.interp(u, chord, radii[:, k]) for k in range(2)], -1)
    r = scipy.ndimage.gaussian_filter1d(r, sigma=0.02 / (s[1] - s[0]), axis=0, mode="nearest")
    tangent = np.gradient(centre, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    n1 = np.empty_like(tangent)
    prev = np.array(spec.n1, dtype=float)
    for i, t in enumerate(tangent):  # rotation-minimising frame by projection
        prev = prev - prev.dot(t) * t
        prev /= np.linalg.norm(prev)
        n1[i] = prev
    n2 = np.cross(tangent, n1)
    frame = np.stack([n1, n2, tangent], axis=1)
    dm = np.hypot(np.diff(s), np.diff(r.mean(1)))
    m_tube = np.concatenate([[0.0], np.cumsum(dm)])
    # closing cap: quarter ellipse, angle alpha in (0, pi/2]
    alpha = np.linspace(0, np.pi / 2, 60)[1:]
    cap_off = spec.tip_length * np.sin(alpha)
    cap_scale = np.cos(alpha)
    cap_pts = np.stack([cap_off, r[-1].mean() * cap_scale], -1)
    m_cap = m_tube[-1] + np.cumsum(np.linalg.norm(np.diff(np.vstack([[0.0, r[-1].mean()], cap_pts]), axis=0), axis=1))
    n_cap = len(alpha)
    limb = _Limb(
        spec=spec, axis=axis, e1=e1, e2=e2, theta=theta,
        m=np.concatenate([m_tube, m_cap]),
        centre=np.concatenate([centre, np.repeat(centre[-1:], n_cap, 0)]),
        frame=np.concatenate([frame, np.repeat(frame[-1:], n_cap, 0)]),
        r=np.concatenate([r, np.repeat(r[-1:], n_cap, 0)]),
        cap_offset=np.concatenate([np.zeros(len(s)), cap_off]),
        cap_scale=np.concatenate([np.ones(len(s)), cap_scale]),
        delta=0.0,
    )
    # align the tube azimuth with the torso hole's boundary ring
    psi = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    ring = _torso(_on_cap(axis, e1, e2, theta, psi)) - ctrl[0]
    ang = np.arctan2(ring @ frame[0, 1], ring @ frame[0, 0])
    limb.delta = float(np.angle(np.mean(np.exp(1j * (ang - psi)))))
    psi = np.linspace(0, 2 * np.pi, 128, endpoint=False)
    limb.perimeter = np.array([_ring_perimeter(_tube_points(limb, m, psi)) for m in limb.m])
    limb.perimeter[0] = _ring_perimeter(_torso(_on_cap(axis, e1, e2, theta, psi)))
    return limb


def _tube_points(limb: _Limb, m: float, psi: np.ndarray) -> np.ndarray:
    i = int(np.clip(np.searchsorted(limb.m, m) - 1, 0, len(limb.m) - 2))
    w = np.clip((m - limb.m[i]) / (limb.m[i + 1] - limb.m[i]), 0.0, 1.0)
    lerp = lambda a: (1 - w) * a[i] + w * a[i + 1]  # noqa: E731
    n1, n2, t = lerp(limb.frame)
    a = psi + limb.delta
    scale = lerp(limb.cap_scale)
    r1, r2 = lerp(limb.r) * scale
    return (lerp(limb.centre) + lerp(limb.cap_offset) * t
            + r1 * np.cos(a)[:, None] * n1 + r2 * np.sin(a)[:, None] * n2)


def _limb_rings(limb: _Limb, h: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Rings (body points (n, 3), sphere points (n, 3), azimuths (n,)), hole boundary first, tip last."""
    r_root = float(np.mean(limb.spec.radii[0]))
    rings = []
    offset = 0.0
    for m, n in zip(*_limb_ring_layout(limb, h)):
        phi = limb.theta * (1.0 - m / limb.m[-1])
        if n == 1:  # tip
            rings.append((_tube_points(limb, m, np.zeros(1)), limb.axis[None].copy(), np.zeros(1)))
            break
        offset += np.pi / n
        psi = np.sort(np.mod(offset + 2 * np.pi * np.arange(n) / n, 2 * np.pi))
        sphere = _on_cap(limb.axis, limb.e1, limb.e2, phi, psi)
        torso_pt = _torso(_on_cap(limb.axis, limb.e1, limb.e2, limb.theta * max(1.0 - m / r_root, 0.2), psi))
        beta = _smoothstep(m / _BLEND_M)
        body = (1 - beta) * torso_pt + beta * _tube_points(limb, m, psi)
        rings.append((body, sphere, psi))
    return rings


def _limb_ring_layout(limb: _Limb, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Profile positions (K+1,) and vertex counts (K+1,) of the rings; the last ring is the tip (1)."""
    total = limb.m[-1]
    k_rings = max(int(round(total / (0.866 * h))), 4)
    m = total * np.arange(k_rings + 1) / k_rings
    n = np.maximum(np.round(np.interp(m, limb.m, limb.perimeter) / h).astype(int), 5)
    n[-1] = 1
    return m, n


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def _ring_perimeter(points: np.ndarray) -> float:
    return float(np.linalg.norm(points - np.roll(points, 1, axis=0), axis=1).sum())


# --- torso points ---------------------------------------------------------------------------------
def _torso_points(h: float, limbs: list[_Limb]) -> np.ndarray:
    """Unit-sphere positions of the torso vertices (latitude rings outside the holes)."""
    lat, dm_dlat, perimeter = _torso_tables()
    # Ring spacing on the body: 0.866 h (equilateral), widened where the sphere's rings would be
    # closer than half the along-ring spacing, so that the hull (a Delaunay triangulation on the
    # sphere) joins adjacent rings instead of skipping one.
    spacing = h * np.maximum(0.866, 0.55 * 2 * np.pi * np.cos(lat) * dm_dlat / perimeter)
    rings, la = [], -np.pi / 2
    while True:
        la += float(np.interp(la, lat, spacing / dm_dlat))
        if la >= np.pi / 2:
            break
        rings.append(la)
    out = [_latlon(np.array([-np.pi / 2]), 0.0)]
    for j, la in enumerate(rings, start=1):
        n = max(int(round(float(np.interp(la, lat, perimeter)) / h)), 3)
        lon = 2 * np.pi * (np.arange(n) + 0.5 * (j % 2)) / n
        out.append(_latlon(np.full(n, la), lon))
    pts = np.concatenate(out)
    keep = np.ones(len(pts), bool)
    for limb in limbs:
        margin = 0.6 * h * limb.theta / float(np.mean(limb.spec.radii[0]))
        keep &= pts @ limb.axis < np.cos(limb.theta + margin)
    return pts[keep]


@functools.lru_cache(maxsize=1)
def _torso_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latitudes (L,), mean meridian speed d(arclength)/d(latitude) (L,), ring perimeters (L,)."""
    lat = np.linspace(-np.pi / 2, np.pi / 2, 721)
    lon = np.linspace(0, 2 * np.pi, 256, endpoint=False)
    pts = _torso(_latlon(lat[:, None], lon[None, :]))  # (L, 256, 3)
    speed = np.linalg.norm(np.gradient(pts, lat, axis=0), axis=-1).mean(axis=1)
    perimeter = np.linalg.norm(pts - np.roll(pts, 1, axis=1), axis=-1).sum(axis=1)
    return lat, np.maximum(speed, 1e-6), np.maximum(perimeter, 1e-6)


def _zip_rings(a: np.ndarray, psi_a: np.ndarray, b: np.ndarray, psi_b: np.ndarray) -> list[tuple[int, int, int]]:
    """Triangle strip between an outer ring ``a`` and an inner ring ``b`` (ids, sorted azimuths)."""
    na, nb = len(a), len(b)
    ang_a = np.append(np.mod(psi_a - psi_a[0], 2 * np.pi), 2 * np.pi)
    rel_b = np.mod(psi_b - psi_a[0] + np.pi, 2 * np.pi) - np.pi
    j0 = int(np.argmin(np.abs(rel_b)))
    order = np.roll(np.arange(nb), -j0)
    ang_b = rel_b[j0] + np.mod(psi_b[order] - psi_b[j0], 2 * np.pi)
    ang_b = np.append(ang_b, ang_b[0] + 2 * np.pi)
    b = b[order]
    faces, i, j = [], 0, 0
    while i < na or j < nb:
        if j == nb or (i < na and ang_a[i + 1] <= ang_b[j + 1]):
            faces.append((a[i], a[(i + 1) % na], b[j % nb]))
            i += 1
        else:
            faces.append((a[i % na], b[(j + 1) % nb], b[j]))
            j += 1
    return faces


def _count(h: float, limbs: list[_Limb]) -> int:
    return len(_torso_points(h, limbs)) + sum(int(_limb_ring_layout(limb, h)[1].sum()) for limb in limbs)


def _surface() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vertices (V, 3), faces (F, 3), region (V,), sphere (V, 3)) with V = 6890."""
    limbs = [_build_limb(spec) for spec in _LIMBS]
    lo, hi = 0.01, 0.04  # edge length search: count(lo) >= V > count(hi)
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _count(mid, limbs) >= C.NUM_VERTICES else (lo, mid)
    h = lo
    torso_sphere = _torso_points(h, limbs)
    rings = [_limb_rings(limb, h) for limb in limbs]
    extra = len(torso_sphere) + sum(len(r[0]) for rs in rings for r in rs) - C.NUM_VERTICES
    assert 0 <= extra < len(torso_sphere) // 4, extra
    if extra:
        drop = np.round(np.linspace(0, len(torso_sphere) - 1, extra + 2)[1:-1]).astype(int)
        torso_sphere = np.delete(torso_sphere, drop, axis=0)

    # hull of torso points + hole rings + apexes -> sphere triangulation; apex fans removed
    n_t = len(torso_sphere)
    hull_pts = [torso_sphere] + [rs[0][1] for rs in rings] + [np.stack([limb.axis for limb in limbs])]
    ring0_ids, start = [], n_t
    for rs in rings:
        ring0_ids.append(np.arange(start, start + len(rs[0][1])))
        start += len(rs[0][1])
    apex_ids = np.arange(start, start + len(limbs))
    hull_pts = np.concatenate(hull_pts)
    simplices = scipy.spatial.ConvexHull(hull_pts).simplices
    simplices = _orient_outward(simplices, hull_pts)
    fan = np.isin(simplices, apex_ids).any(axis=1)
    for limb_i, rs in enumerate(rings):
        assert np.isin(simplices[fan], apex_ids[limb_i]).any(axis=1).sum() == len(rs[0][1])
    faces = [simplices[~fan]]

    # vertices: torso, then per limb its rings (ring 0 keeps the ids assigned above)
    vertices = [_torso(torso_sphere)]
    sphere = [torso_sphere]
    region = [np.zeros(n_t, np.int64)]
    for rs in rings:
        vertices.append(rs[0][0])
        sphere.append(rs[0][1])
    next_id = start  # apex ids are dropped: limb rings continue from here
    region += [np.full(len(rs[0][0]), limb.spec.region) for limb, rs in zip(limbs, rings)]
    for limb, rs, r0 in zip(limbs, rings, ring0_ids):
        prev_ids, prev_psi = r0, rs[0][2]
        for body, sph, psi in rs[1:]:
            ids = np.arange(next_id, next_id + len(body))
            next_id += len(body)
            vertices.append(body)
            sphere.append(sph)
            region.append(np.full(len(body), limb.spec.region))
            if len(ids) == 1:
                faces.append(np.array([(prev_ids[i], prev_ids[(i + 1) % len(prev_ids)], ids[0])
                                       for i in range(len(prev_ids))]))
            else:
                faces.append(np.array(_zip_rings(prev_ids, prev_psi, ids, psi)))
            prev_ids, prev_psi = ids, psi
    faces = np.concatenate(faces)
    vertices, sphere, region = np.concatenate(vertices), np.concatenate(sphere), np.concatenate(region)
    return vertices, faces.astype(np.int64), region, sphere


def _orient_outward(faces: np.ndarray, sphere: np.ndarray) -> np.ndarray:
    tri = sphere[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    flip = np.einsum("ij,ij->i", normal, tri.mean(axis=1)) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    return faces


# --- skinning, regressors, blend shapes ----------------------------------------------------------
# Bones each region may be skinned to (SMPL joint ids), in REGION_NAMES order.
_REGION_BONES = (
    (0, 1, 2, 3, 6, 9, 12, 13, 14, 16, 17),
    (12, 15),
    (13, 16, 18, 20, 22),
    (14, 17, 19, 21, 23),
    (0, 1, 4, 7, 10),
    (0, 2, 5, 8, 11),
)
_SKIN_SIGMA_M = 0.03  # skinning falloff: weight exp(-((d - d_nearest) / sigma)^2)

# H36M 17 joints (official order) as target points on the synthetic body, and the SMPL joint whose
# regions may carry each one.
_H36M_TARGETS = (
    ((0.000, -0.235, 0.000), 0), ((-0.095, -0.335, 0.000), 2), ((-0.100, -0.715, 0.005), 5),
    ((-0.090, -1.085, -0.030), 8), ((0.095, -0.335, 0.000), 1), ((0.100, -0.715, 0.005), 4),
    ((0.090, -1.085, -0.030), 7), ((0.000, 0.000, -0.010), 6), ((0.000, 0.225, -0.010), 12),
    ((0.000, 0.405, 0.060), 15), ((0.000, 0.470, 0.010), 15), ((0.180, 0.215, -0.020), 16),
    ((0.430, 0.210, -0.035), 18), ((0.690, 0.210, -0.035), 20), ((-0.180, 0.215, -0.020), 17),
    ((-0.430, 0.210, -0.035), 19), ((-0.690, 0.210, -0.035), 21),
)


def _bone_segments(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start (24, 3), end (24, 3)): each joint's bone towards its children (leaves: fixed tips)."""
    parents = np.array(C.SMPL_PARENTS)
    end = np.empty_like(joints)
    for j in range(len(joints)):
        children = np.flatnonzero(parents == j)
        end[j] = joints[children].mean(axis=0) if len(children) else joints[j]
    end[0] = joints[0] + (0.0, -0.14, 0.0)  # the pelvis bone reaches down between the hips
    end[15] = joints[15] + (0.0, 0.16, 0.0)
    end[22] = joints[22] + (0.09, 0.0, 0.0)
    end[23] = joints[23] - (0.09, 0.0, 0.0)
    end[10] = joints[10] + (0.0, 0.0, 0.06)
    end[11] = joints[11] + (0.0, 0.0, 0.06)
    return joints.copy(), end


def _segment_closest(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Closest points (N, B, 3) on B segments to N points."""
    d = end - start
    t = np.einsum("nbk,bk->nb", points[:, None] - start[None], d) / np.maximum((d * d).sum(-1), 1e-12)
    return start[None] + np.clip(t, 0, 1)[..., None] * d[None]


def _skinning_weights(vertices: np.ndarray, region: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(V, 24) weights: nearest allowed bones, Gaussian falloff in the extra distance; rows sum to 1."""
    start, end = _bone_segments(joints)
    dist = np.linalg.norm(vertices[:, None] - _segment_closest(vertices, start, end), axis=-1)
    allowed = np.zeros((len(REGION_NAMES), len(joints)), bool)
    for r, bones in enumerate(_REGION_BONES):
        allowed[r, list(bones)] = True
    dist = np.where(allowed[region], dist, np.inf)
    w = np.exp(-(((dist - dist.min(axis=1, keepdims=True)) / _SKIN_SIGMA_M) ** 2))
    w[w < 1e-3] = 0.0
    return w / w.sum(axis=1, keepdims=True)


def _fit_regressor(vertices: np.ndarray, region: np.ndarray, targets: np.ndarray,
                   carriers: list[int]) -> scipy.sparse.csc_matrix:
    """Sparse (J, V), rows >= 0 summing to 1, with ``row @ vertices`` ~= target (within 0.1 mm).

    Candidates for target j: among the vertices of the regions skinned to SMPL joint
    ``carriers[j]``, the nearest one in each of 32 directions around the target (so the target
    lies inside their hull). Non-negative least squares with a small ridge term spreads the
    weights over them.
    """
    directions = _fibonacci_sphere(32)
    rows, cols, vals = [], [], []
    for j, (target, carrier) in enumerate(zip(targets, carriers)):
        idx = np.flatnonzero(np.isin(region, [r for r, bones in enumerate(_REGION_BONES) if carrier in bones]))
        offset = vertices[idx] - target
        dist = np.linalg.norm(offset, axis=1)
        sector = np.argmax(offset @ directions.T, axis=1)
        cand = np.array([idx[sector == k][np.argmin(dist[sector == k])] for k in np.unique(sector)])
        x = vertices[cand]
        a = np.vstack([x.T, np.full((1, len(cand)), 10.0), 1e-2 * np.eye(len(cand))])
        w, _ = scipy.optimize.nnls(a, np.concatenate([target, [10.0], np.zeros(len(cand))]))
        keep = w > 1e-4 * w.max()
        rows += [j] * int(keep.sum())
        cols += cand[keep].tolist()
        vals += (w[keep] / w[keep].sum()).tolist()
    return scipy.sparse.csc_matrix((vals, (rows, cols)), shape=(len(targets), len(vertices)))


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    lat = np.arcsin(1 - 2 * i / n)
    return _latlon(lat, np.pi * (1 + 5 ** 0.5) * i)


def _shapedirs(vertices: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(V, 3, 10) smooth shape directions (per unit beta, metres)."""
    v = vertices
    x, y, z = v.T
    start, end = _bone_segments(joints)
    closest = np.einsum("nb,nbk->nk", weights, _segment_closest(v, start, end))
    radial = v - closest  # from the skeleton out to the surface
    pelvis, hip_y, neck_y = joints[0], joints[1, 1], joints[12, 1]
    sole_y, sx = v[:, 1].min(), np.sign(x)
    clip = lambda a: np.clip(a, 0.0, 1.0)  # noqa: E731
    torso_w = weights[:, [0, 3, 6, 9]].sum(axis=1)
    d = np.zeros((len(v), 3, 10))
    d[:, :, 0] = 0.05 * (v - pelvis)  # overall size
    d[:, :, 1] = 0.15 * radial  # girth
    d[:, 1, 2] = -0.06 * clip((hip_y - y) / (hip_y - sole_y))  # leg length
    d[:, 0, 3] = 0.03 * sx * clip((np.abs(x) - 0.05) / 0.15) * clip((y + 0.05) / 0.25)  # shoulder width
    d[:, 1, 4] = 0.05 * clip((y - pelvis[1]) / (neck_y - pelvis[1]))  # torso length
    d[:, 0, 5] = 0.05 * sx * clip((np.abs(x) - 0.17) / 0.7)  # arm length
    d[:, 2, 6] = 0.04 * torso_w * clip(z / 0.1) * np.exp(-(((y + 0.05) / 0.12) ** 2))  # belly
    d[:, 0, 7] = 0.03 * sx * clip(np.abs(x) / 0.15) * np.exp(-(((y - hip_y) / 0.15) ** 2))  # hip width
    d[:, :, 8] = 0.08 * weights[:, 15:16] * (v - joints[15])  # head size
    d[:, 1, 9] = 0.03 * weights[:, 15]  # neck length
    return d


def _posedirs(vertices: np.ndarray, weights: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(V, 3, 207) small pose correctives: skinned vertices bulge along their radial direction."""
    start, end = _bone_segments(joints)
    closest = _segment_closest(vertices, start, end)[np.arange(len(vertices)), weights.argmax(1)]
    radial = vertices - closest
    radial /= np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)
    pattern = 0.002 * np.cos(1.7 * np.arange(9))
    p = weights[:, 1:, None, None] * pattern[None, None, :, None] * radial[:, None, None, :]  # (V, 23, 9, 3)
    return np.ascontiguousarray(p.reshape(len(vertices), 207, 3).transpose(0, 2, 1))


@functools.lru_cache(maxsize=1)
def make_synthetic_body() -> SyntheticBody:
    """Build the synthetic body (deterministic; about a second; cached in memory, read-only)."""
    vertices, faces, region, sphere = _surface()
    centre, radius, height = _NOSE
    bump = height * np.exp(-np.sum((vertices - centre) ** 2, axis=1) / (2 * radius ** 2))
    vertices = vertices + (region == 1)[:, None] * bump[:, None] * np.array([0.0, 0.0, 1.0])
    weights = _skinning_weights(vertices, region, _JOINTS)
    j_regressor = _fit_regressor(vertices, region, _JOINTS, list(range(len(_JOINTS))))
    joints = j_regressor @ vertices
    body = SyntheticBody(
        vertices=vertices, faces=faces, joints=joints, parents=np.array(C.SMPL_PARENTS, np.int64),
        weights=weights, j_regressor=j_regressor, shapedirs=_shapedirs(vertices, weights, joints),
        posedirs=_posedirs(vertices, weights, joints), region=region, sphere=sphere)
    for value in vars(body).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return body


def synthetic_h36m_regressor(body: SyntheticBody) -> np.ndarray:
    """(17, 6890) float64 H36M-style regressor for the synthetic body, rows sum to 1."""
    targets = np.array([t for t, _ in _H36M_TARGETS])
    return _fit_regressor(body.vertices, body.region, targets, [c for _, c in _H36M_TARGETS]).toarray()


# --- mesh down-sampling and contact parts ----------------------------------------------------------
def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def synthetic_part_ids(body: SyntheticBody) -> np.ndarray:
    """(6890,) int64 contact part per vertex (0 none, 1..7 as the official ``predefined_segparts``)."""
    v, j, reg = body.vertices, body.joints, body.region
    back = _vertex_normals(v, body.faces)[:, 2]  # < 0: facing backwards
    y = v[:, 1]
    part = np.zeros(len(v), np.int64)
    part[(reg == 4) & (y < j[7, 1])] = 1  # left foot
    part[(reg == 5) & (y < j[8, 1])] = 2  # right foot
    part[(reg == 2) & (v[:, 0] > j[20, 0])] = 3  # left hand
    part[(reg == 3) & (v[:, 0] < j[21, 0])] = 4  # right hand
    part[(reg == 0) & (back < -0.5) & (y > j[3, 1]) & (y < j[16, 1])] = 5  # back
    part[np.isin(reg, (0, 4, 5)) & (back < -0.3) & (y > j[1, 1] - 0.16) & (y < j[0, 1] + 0.02)] = 6  # gluteus
    part[np.isin(reg, (4, 5)) & (back < -0.5) & (y > j[4, 1] + 0.1) & (y <= j[1, 1] - 0.16)] = 7  # thighs
    return part


def _farthest_points(points: np.ndarray, seeds: list[int], count: int) -> np.ndarray:
    chosen = list(seeds)
    dist = np.min(np.linalg.norm(points[:, None] - points[chosen][None], axis=-1), axis=1)
    while len(chosen) < count:
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(points - points[i], axis=1))
    return np.sort(np.array(chosen))


def _adjacency(faces: np.ndarray, n: int) -> scipy.sparse.csc_matrix:
    """Vertex adjacency counted per face edge (2 for a closed surface), as the official matrices."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    return scipy.sparse.csc_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)) * 1.0


def synthetic_mesh_downsampling(body: SyntheticBody, part_ids: np.ndarray) -> dict[str, list]:
    """Keys A (3 adjacency), U (2 up-sampling), D (2 selections), F (3 face arrays); no ``M``.

    The selections are farthest-point samples seeded with one vertex per contact part, so every
    part keeps vertices at 431; coarse faces are the convex hulls of the selected sphere points.
    """
    seeds = []
    for p in range(1, C.NUM_CONTACT_CLASSES):
        ids = np.flatnonzero(part_ids == p)
        seeds.append(int(ids[np.argmin(np.linalg.norm(body.vertices[ids] - body.vertices[ids].mean(0), axis=1))]))
    idx1 = _farthest_points(body.vertices, seeds, C.NUM_VERTICES_MID)
    idx2 = _farthest_points(body.vertices[idx1], [int(np.searchsorted(idx1, s)) for s in seeds],
                            C.NUM_VERTICES_COARSE)
    levels = [np.arange(C.NUM_VERTICES), idx1, idx1[idx2]]
    faces = [body.faces.astype(np.uint32)]
    for sel in levels[1:]:
        hull = scipy.spatial.ConvexHull(body.sphere[sel]).simplices
        faces.append(_orient_outward(hull, body.sphere[sel]).astype(np.uint32))
    points = [body.vertices[sel] for sel in levels]
    A = [_adjacency(f.astype(np.int64), len(p)) for f, p in zip(faces, points)]
    D, U = [], []
    for lvl, sub in enumerate((idx1, idx2)):
        n_fine, n_coarse = len(points[lvl]), len(sub)
        D.append(scipy.sparse.csc_matrix((np.ones(n_coarse), (np.arange(n_coarse), sub)), shape=(n_coarse, n_fine)))
        dist, nn = scipy.spatial.cKDTree(points[lvl + 1]).query(points[lvl], k=3)
        w = 1.0 / np.maximum(dist, 1e-9)
        w /= w.sum(axis=1, keepdims=True)
        U.append(scipy.sparse.csc_matrix((w.ravel(), (np.repeat(np.arange(n_fine), 3), nn.ravel())),
                                         shape=(n_fine, n_coarse)))
    return {"A": A, "U": U, "D": D, "F": faces}


# --- files ----------------------------------------------------------------------------------------
_CHUMPY_LOCK = threading.Lock()


@contextlib.contextmanager
def _fake_chumpy():
    """Temporarily register a module ``chumpy.ch`` with a class ``Ch`` (state: dict with ``x``).

    Pickling an instance then writes the same class reference (``chumpy.ch Ch``) as SMPL's own
    files, so reading it exercises the restricted unpickler's chumpy path. chumpy is not needed.
    """
    class Ch:
        def __init__(self, x):
            self.x = x
            self._dirty_vars = set()

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    package, module = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    module.Ch, package.ch = Ch, module
    with _CHUMPY_LOCK:
        saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
        sys.modules.update({"chumpy": package, "chumpy.ch": module})
        try:
            yield Ch
        finally:
            for k, old in saved.items():
                if old is None:
                    sys.modules.pop(k, None)
                else:
                    sys.modules[k] = old


def _object_array(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


_MARKER_TEXT = """SYNTHETIC BODY - NOT SMPL

Every file in this directory was generated by sahmr_ros.body.synthetic.write_synthetic_model_dir:
a procedural person in SMPL's file format (6890 vertices, 13776 faces, SMPL's 24-joint tree) and
synthetic stand-ins for the official SA-HMR files J_regressor_h36m_correct.npy,
mesh_downsampling.npz and seg_part_info.npy for the same topology. No SMPL data was used.

It exists so that tests and the demo run without the licensed SMPL model. Networks trained on
SMPL (e.g. the official SA-HMR checkpoints) give meaningless results with it. For real use,
get SMPL from https://smpl.is.tue.mpg.de and the official files from
https://github.com/zju3dv/SA-HMR (see models/README.md).
"""


@contextlib.contextmanager
def temporary_synthetic_model_dir(prefix: str = "sahmr_synthetic_body_"):
    """Write the synthetic body into a temporary model directory; yield its path, removed afterwards.

    The directory's name starts with ``prefix``.
    For callers that load it at once (:func:`~sahmr_ros.body.assets.load_body_assets` reads every file into
    memory): the 42 MB of files are not needed afterwards.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield write_synthetic_model_dir(tmp)


def write_synthetic_model_dir(out_dir: str | Path) -> Path:
    """Write the synthetic body as a model directory; returns ``out_dir``.

    Layout (the same as for real files)::

        out_dir/smpl/SMPL_NEUTRAL.pkl          SMPL's pickle layout (shapedirs a chumpy.ch.Ch)
        out_dir/J_regressor_h36m_correct.npy   (17, 6890) float64
        out_dir/mesh_downsampling.npz          A, U, D, F as pickled object arrays (no M)
        out_dir/seg_part_info.npy              pickled dict
        out_dir/SYNTHETIC_BODY.txt             marker: loaders report is_synthetic=True
    """
    out = Path(out_dir)
    (out / C.SMPL_SUBDIR).mkdir(parents=True, exist_ok=True)
    body = make_synthetic_body()
    kintree = np.stack([np.where(body.parents < 0, 4294967295, body.parents), np.arange(C.NUM_SMPL_JOINTS)])
    with _fake_chumpy() as Ch:
        payload = {
            "v_template": np.array(body.vertices), "f": body.faces.astype(np.uint32),
            "J_regressor": body.j_regressor.copy(), "weights": np.array(body.weights),
            "kintree_table": kintree.astype(np.int64), "J": np.array(body.joints),
            "shapedirs": Ch(np.array(body.shapedirs)), "posedirs": np.array(body.posedirs),
            "bs_style": "lbs", "bs_type": "lrotmin",
        }
        data = pickle.dumps(payload, protocol=2)
    (out / C.SMPL_SUBDIR / C.SMPL_NEUTRAL_FILENAMES[0]).write_bytes(data)
    np.save(out / C.H36M_REGRESSOR_FILENAME, synthetic_h36m_regressor(body))
    part_ids = synthetic_part_ids(body)
    mesh = synthetic_mesh_downsampling(body, part_ids)
    np.savez(out / C.MESH_DOWNSAMPLING_FILENAME, **{k: _object_array(v) for k, v in mesh.items()})
    idx = mesh["D"][0].tocsr().indices[mesh["D"][1].tocsr().indices]
    seg = {"predefined_segparts": list(C.SEG_PART_NAMES), "verts431_pids": part_ids[idx].astype(np.float64),
           "verts6890_pids": part_ids.astype(np.float64)}
    np.save(out / C.SEG_PART_INFO_FILENAME, np.array(seg, dtype=object), allow_pickle=True)
    (out / C.SYNTHETIC_MARKER_FILENAME).write_text(_MARKER_TEXT, encoding="utf-8")
    return out
