"""Motion for the generator's sequence mode: walking paths with a gait phase, and a moving camera.

Frames: map (REP-103, z up), metres, seconds. A walker goes back and forth along a straight floor
segment with a smooth speed profile (``s(t) = L/2 (1 - cos(w t + phi))``: peak speed in the middle,
slowing down to turn at each end), turning on the spot at each end over a short phase window; its
gait phase advances with the distance walked. The camera (a robot moving while it looks) sways along
a horizontal line, ``eye(t) = eye0 + A sin(2 pi t / period + phi) d``, looking at the people's
centre. :func:`sahmr_ros.data.placement.place_walker` poses the body along a :class:`WalkPath`;
:mod:`sahmr_ros.data.synth` puts the pieces together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["CameraPath", "WalkPath", "sample_camera_path", "sample_walk_path"]

WALK_PEAK_SPEED_MPS = (1.1, 1.5)  # mean speed over a back-and-forth: 2/pi of the peak, about 0.7-1.0 m/s
WALK_PATH_M = (1.5, 5.0)  # length of a walker's segment
GAIT_CYCLE_M = (1.2, 1.5)  # distance of one gait cycle (two steps)
WALK_FLOOR_MARGIN_M = 0.4  # the path keeps its pelvis this far inside the floor's edges
WALK_CLEARANCE_M = 0.3  # ... and this far from every solid (furniture, walls) at body heights
WALK_PERSON_CLEARANCE_M = 0.8  # ... and from the pelvis of anyone standing or sitting still
TURN_HALF_WINDOW_RAD = 0.5  # a walker turns around within this profile phase of each end
CAMERA_PEAK_SPEED_MPS = (0.1, 0.4)
CAMERA_SWAY_PERIOD_S = (6.0, 12.0)
_PATH_TRIES = 60
_CLEARANCE_HEIGHTS_M = (0.5, 0.9, 1.4)  # above the floor by more than the clearance


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _cos_variation(theta: np.ndarray) -> np.ndarray:
    """Total variation of cos over [0, theta] (theta >= 0): 2 per half turn."""
    k = np.floor(theta / np.pi)
    return 2.0 * k + 1.0 - np.cos(theta - k * np.pi)


@dataclass(frozen=True)
class WalkPath:
    """A walker's back-and-forth along a floor segment (module docstring).

    Attributes:
        start, end: (2,) ends of the segment (pelvis x, y), map frame.
        omega: rad/s of the speed profile (peak speed ``omega * length / 2``); phase0: its phase at t = 0.
        gait_cycle_m: metres per gait cycle; gait_phase0: the gait phase at t = 0 (radians).
    """

    start: np.ndarray
    end: np.ndarray
    omega: float
    phase0: float
    gait_cycle_m: float
    gait_phase0: float

    @property
    def length(self) -> float:
        """Length of the segment (m)."""
        return float(np.linalg.norm(self.end - self.start))

    def at(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pelvis position, body heading and gait phase at ``times`` (T,) seconds.

        Returns:
            ``xy`` (T, 2) map frame; ``yaw`` (T,) radians of the body's front about +z; ``gait`` (T,)
            gait phase in radians (for :func:`sahmr_ros.data.poses.walking_params`).
        """
        t = np.asarray(times, dtype=np.float64)
        direction = (self.end - self.start) / self.length
        theta = self.omega * t + self.phase0
        along = self.length / 2 * (1.0 - np.cos(theta))
        xy = self.start[None] + along[:, None] * direction[None]
        # facing the end while sin(theta) > 0, the start while < 0; turning by +pi around each end
        u = np.mod(theta - np.pi / 2, 2 * np.pi) + np.pi / 2  # in [pi/2, 5pi/2): both turns inside
        w = TURN_HALF_WINDOW_RAD
        heading = float(np.arctan2(direction[1], direction[0]))
        yaw = heading + np.pi * (_smoothstep((u - np.pi + w) / (2 * w)) + _smoothstep((u - 2 * np.pi + w) / (2 * w)))
        walked = self.length / 2 * (_cos_variation(theta) - _cos_variation(np.asarray(self.phase0)))
        gait = self.gait_phase0 + 2 * np.pi * walked / self.gait_cycle_m
        return xy, yaw, gait


def sample_walk_path(room, rng: np.random.Generator, avoid_xy: Sequence[np.ndarray] = ()) -> WalkPath | None:
    """Draw a walker's segment on the floor, clear of furniture and of the people in ``avoid_xy``.

    Args:
        room: a :class:`~sahmr_ros.data.rooms.Room` (``supports[0]`` is its floor).
        rng: seeded generator.
        avoid_xy: (2,) pelvis positions of people standing or sitting still.

    Returns:
        A :class:`WalkPath`, or None when no segment fits within a few tries (a crowded room).
    """
    floor = room.supports[0]
    half = np.asarray(room.size, dtype=np.float64) / 2 - WALK_FLOOR_MARGIN_M
    for _ in range(_PATH_TRIES):
        start, end = floor.center[:2] + rng.uniform(-1, 1, (2, 2)) * half
        length = float(np.linalg.norm(end - start))
        if not WALK_PATH_M[0] <= length <= WALK_PATH_M[1]:
            continue
        along = np.linspace(0.0, 1.0, max(8, int(length / 0.1)))
        line = start[None] + along[:, None] * (end - start)[None]
        probes = np.concatenate([np.column_stack([line, np.full(len(line), z)]) for z in _CLEARANCE_HEIGHTS_M])
        if room.sdf(probes, cutoff=WALK_CLEARANCE_M).min() < WALK_CLEARANCE_M:
            continue
        if any(np.linalg.norm(line - np.asarray(p)[None, :2], axis=1).min() < WALK_PERSON_CLEARANCE_M
               for p in avoid_xy):
            continue
        peak = rng.uniform(*WALK_PEAK_SPEED_MPS)
        return WalkPath(start=start, end=end, omega=2 * peak / length, phase0=rng.uniform(0, 2 * np.pi),
                        gait_cycle_m=rng.uniform(*GAIT_CYCLE_M), gait_phase0=rng.uniform(0, 2 * np.pi))
    return None


@dataclass(frozen=True)
class CameraPath:
    """A camera swaying along a horizontal line (module docstring).

    Attributes:
        eye0: (3,) centre of the sway; direction: (3,) unit horizontal direction.
        amplitude_m: half the sway; omega: rad/s; phase0: phase at t = 0.
        aim_offset: (3,) added to the people's centre the camera looks at.
    """

    eye0: np.ndarray
    direction: np.ndarray
    amplitude_m: float
    omega: float
    phase0: float
    aim_offset: np.ndarray

    def eyes(self, times: np.ndarray) -> np.ndarray:
        """(T, 3) camera centres at ``times`` (T,) seconds, map frame."""
        s = self.amplitude_m * np.sin(self.omega * np.asarray(times, dtype=np.float64) + self.phase0)
        return self.eye0[None] + s[:, None] * self.direction[None]


def sample_camera_path(eye0: np.ndarray, aim_offset: np.ndarray, rng: np.random.Generator) -> CameraPath:
    """Draw the sway of a camera centred at ``eye0`` (speed, period, direction, phase)."""
    angle = rng.uniform(-np.pi, np.pi)
    omega = 2 * np.pi / rng.uniform(*CAMERA_SWAY_PERIOD_S)
    return CameraPath(eye0=np.asarray(eye0, dtype=np.float64), direction=np.array([np.cos(angle), np.sin(angle), 0.0]),
                      amplitude_m=rng.uniform(*CAMERA_PEAK_SPEED_MPS) / omega, omega=omega,
                      phase0=rng.uniform(0, 2 * np.pi), aim_offset=np.asarray(aim_offset, dtype=np.float64))
