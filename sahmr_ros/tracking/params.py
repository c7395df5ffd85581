"""Parameters of tracking and temporal smoothing: one frozen dataclass and its descriptions.

The node declares each field as the ROS parameter ``tracking.<name>`` (a nested parameter: in a
params file, a ``tracking:`` mapping under ``ros__parameters``), with the text of
:data:`TRACKING_PARAMETERS` as its description; ``sahmr bag`` offers each as ``--tracking-<name>``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from sahmr_ros.constants import TIME_JUMP_BACK_S
from sahmr_ros.errors import InputError

__all__ = ["PARAMETER_PREFIX", "TRACKING_PARAMETERS", "TrackingParams"]

PARAMETER_PREFIX = "tracking"


@dataclass(frozen=True)
class TrackingParams:
    """How people are tracked and smoothed (see :data:`TRACKING_PARAMETERS` for each field's meaning).

    Units: seconds, metres, hertz. The One-Euro cut-off of a vertex is ``min_cutoff_hz + beta * speed``
    (speed in m/s of the vertex relative to the root), so ``beta`` is in Hz per m/s.
    """

    smoothing: bool = True
    publish_smoothed: bool = True
    min_cutoff_hz: float = 1.0
    beta: float = 1.0
    d_cutoff_hz: float = 1.0
    root_accel_noise: float = 2.0
    root_measurement_noise_m: float = 0.1
    track_timeout_s: float = 1.0
    gate_root_m: float = 1.0
    gate_iou: float = 0.3
    time_jump_s: float = TIME_JUMP_BACK_S

    def __post_init__(self):
        for name in ("smoothing", "publish_smoothed"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{PARAMETER_PREFIX}.{name}: expected true or false, got {getattr(self, name)!r}")
        positive = ("min_cutoff_hz", "d_cutoff_hz", "root_accel_noise", "root_measurement_noise_m",
                    "track_timeout_s", "gate_root_m", "time_jump_s")
        for name in (*positive, "beta", "gate_iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{PARAMETER_PREFIX}.{name}: expected a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in positive:
            if getattr(self, name) <= 0:
                raise InputError(f"{PARAMETER_PREFIX}.{name}: must be > 0, got {getattr(self, name)}")
        if self.beta < 0:
            raise InputError(f"{PARAMETER_PREFIX}.beta: must be >= 0, got {self.beta}")
        if not 0.0 <= self.gate_iou <= 1.0:
            raise InputError(f"{PARAMETER_PREFIX}.gate_iou: must lie in [0, 1], got {self.gate_iou}")

    @classmethod
    def from_mapping(cls, values: dict) -> "TrackingParams":
        """From ``{name: value}`` (names with or without the ``tracking.`` prefix; unknown names refused)."""
        known = {f.name for f in fields(cls)}
        plain = {str(k).removeprefix(f"{PARAMETER_PREFIX}."): v for k, v in values.items()}
        unknown = sorted(set(plain) - known)
        if unknown:
            raise InputError(f"{PARAMETER_PREFIX} parameters: unknown {unknown}; known: {sorted(known)}")
        return cls(**plain)


TRACKING_PARAMETERS: dict[str, str] = {
    "smoothing": "smooth each track over time (constant-velocity Kalman filter on the root, One-Euro filter "
                 "on the root-relative vertices and joints); false: track identities only",
    "publish_smoothed": "publish the smoothed meshes (false: the per-frame estimates; both are computed)",
    "min_cutoff_hz": "One-Euro minimum cut-off frequency of the root-relative vertices and joints (Hz); "
                     "lower: less jitter at rest, more lag",
    "beta": "One-Euro speed coefficient (Hz per m/s of a vertex's speed relative to the root); higher: less lag "
            "in fast motion",
    "d_cutoff_hz": "One-Euro cut-off frequency of the speed estimate (Hz)",
    "root_accel_noise": "Kalman process noise: standard deviation of the root's acceleration (m/s^2)",
    "root_measurement_noise_m": "Kalman measurement noise: standard deviation of the estimated root (m)",
    "track_timeout_s": "a track not seen for this long ends (seconds of image stamps); a forward jump of the "
                       "stamps by more than this ends every track",
    "gate_root_m": "a detection may continue a track when its root is within this distance of the track's "
                   "predicted root (m, map frame) ...",
    "gate_iou": "... or when its box overlaps the track's last box by at least this IoU",
    "time_jump_s": "image stamps going back by more than this reset every track (seconds)",
}
