"""Temporal filters with variable time steps: a constant-velocity Kalman filter and a One-Euro filter.

Both take the time step of each update from the caller (seconds between image stamps), so the same
stamps give the same output whether a bag is replayed or the camera is live. State is float64.
"""

from __future__ import annotations

import math

import numpy as np

from sahmr_ros.errors import InputError

__all__ = ["ConstantVelocityKalman", "OneEuroFilter", "smoothing_factor", "HUBER_K"]

# 99 % of the norms of 3-D Gaussian innovations lie within 3.37 standard deviations (chi, 3 degrees of
# freedom): beyond that, a measurement is down-weighted as an outlier (Huber).
HUBER_K = 3.37


def smoothing_factor(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    """Exponential smoothing factor of a first-order low-pass with cut-off ``cutoff_hz`` over ``dt_s``.

    ``alpha = r / (r + 1)`` with ``r = 2 pi f_c dt`` (Casiez et al., 2012): 1 passes the new value,
    0 keeps the old one.
    """
    r = 2.0 * math.pi * np.asarray(cutoff_hz, dtype=np.float64) * dt_s
    return r / (r + 1.0)


class OneEuroFilter:
    """One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) over an array of points, vectorised.

    Each point (row of ``(..., D)``) gets its own adaptive cut-off ``min_cutoff_hz + beta * |v|``,
    where ``|v|`` is the norm of its low-passed velocity (all ``D`` coordinates of a point share one
    cut-off, so a point is not distorted across axes).

    Args:
        min_cutoff_hz: cut-off at rest (Hz).
        beta: cut-off increase per unit of speed (Hz per unit/s).
        d_cutoff_hz: cut-off of the velocity estimate (Hz).
    """

    def __init__(self, min_cutoff_hz: float, beta: float, d_cutoff_hz: float):
        self.min_cutoff_hz, self.beta, self.d_cutoff_hz = float(min_cutoff_hz), float(beta), float(d_cutoff_hz)
        self.value: np.ndarray | None = None  # (..., D) float64, the last output
        self.velocity: np.ndarray | None = None  # (..., D) float64, the last low-passed velocity

    def reset(self) -> None:
        """Forget the past: the next value passes unfiltered."""
        self.value = self.velocity = None

    def __call__(self, x: np.ndarray, dt_s: float) -> np.ndarray:
        """Filter ``x`` (``(..., D)``), ``dt_s`` seconds after the previous call; returns float64.

        The first call (or one after :meth:`reset`, or with a new shape) returns ``x`` itself.

        Raises:
            InputError: ``dt_s`` not finite and > 0 after the first call.
        """
        x = np.asarray(x, dtype=np.float64)
        if self.value is None or self.value.shape != x.shape:
            self.value, self.velocity = x.copy(), np.zeros_like(x)
            return self.value.copy()
        if not (math.isfinite(dt_s) and dt_s > 0):
            raise InputError(f"dt_s: expected a finite time step > 0, got {dt_s}")
        raw_velocity = (x - self.value) / dt_s
        # x_prev + alpha (x - x_prev), not alpha x + (1 - alpha) x_prev: a constant input stays bit-exact
        self.velocity += smoothing_factor(self.d_cutoff_hz, dt_s) * (raw_velocity - self.velocity)
        speed = np.linalg.norm(self.velocity, axis=-1, keepdims=True)
        alpha = smoothing_factor(self.min_cutoff_hz + self.beta * speed, dt_s)
        self.value += alpha * (x - self.value)
        return self.value.copy()


class ConstantVelocityKalman:
    """Kalman filter of a 3-D point moving at constant velocity, with white-noise acceleration.

    State: position and velocity (metres, m/s). Process noise: piecewise-constant acceleration of
    standard deviation ``accel_noise`` (m/s^2) per step, ``Q = s^2 [[dt^4/4, dt^3/2], [dt^3/2, dt^2]]``
    per axis; measurement: the position, with standard deviation ``measurement_noise`` (m). Every
    matrix is isotropic, so the three axes share one 2x2 covariance and are filtered together.

    Robust update (Huber): a measurement whose innovation ``d`` (m) exceeds ``huber_k`` innovation
    standard deviations ``sqrt(S)`` counts with its variance scaled by ``d / (huber_k sqrt(S))``, the
    Huber weight of iteratively reweighted least squares. A depth estimate that jumps by a metre moves
    the root by centimetres; a person who really is elsewhere pulls the filter there within a few frames.

    Args:
        position: (3,) the first measurement.
        accel_noise: m/s^2.
        measurement_noise: m.
        initial_speed_std: prior standard deviation of the unknown initial velocity (m/s).
        huber_k: outlier threshold in innovation standard deviations; None: plain Kalman updates.
    """

    def __init__(self, position: np.ndarray, accel_noise: float, measurement_noise: float,
                 initial_speed_std: float = 2.0, huber_k: float | None = HUBER_K):
        position = np.asarray(position, dtype=np.float64).reshape(3)
        if not np.isfinite(position).all():
            raise InputError(f"position: expected a finite (3,) point, got {position.tolist()}")
        self.accel_var = float(accel_noise) ** 2
        self.measurement_var = float(measurement_noise) ** 2
        self.huber_k = huber_k
        self.last_weight = 1.0  # Huber weight of the last measurement (1: not an outlier)
        self.state = np.stack([position, np.zeros(3)])  # (2, 3): position row, velocity row
        self.cov = np.diag([self.measurement_var, float(initial_speed_std) ** 2])  # (2, 2), the same per axis

    @property
    def position(self) -> np.ndarray:
        """The filtered position, (3,) float64, metres."""
        return self.state[0].copy()

    @property
    def velocity(self) -> np.ndarray:
        """The filtered velocity, (3,) float64, m/s."""
        return self.state[1].copy()

    def _predicted(self, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        F = np.array([[1.0, dt_s], [0.0, 1.0]])
        Q = self.accel_var * np.array([[dt_s**4 / 4, dt_s**3 / 2], [dt_s**3 / 2, dt_s**2]])
        return F @ self.state, F @ self.cov @ F.T + Q

    def predict_position(self, dt_s: float) -> np.ndarray:
        """(3,) position expected ``dt_s`` seconds after the last update; the state is not changed."""
        return self._predicted(max(float(dt_s), 0.0))[0][0]

    def update(self, measurement: np.ndarray, dt_s: float) -> np.ndarray:
        """Predict ``dt_s`` seconds ahead, then correct with ``measurement`` (3,); returns the position.

        Raises:
            InputError: a non-finite measurement, or ``dt_s`` not finite and >= 0.
        """
        z = np.asarray(measurement, dtype=np.float64).reshape(3)
        if not np.isfinite(z).all():
            raise InputError(f"measurement: expected a finite (3,) point, got {z.tolist()}")
        if not (math.isfinite(dt_s) and dt_s >= 0):
            raise InputError(f"dt_s: expected a finite time step >= 0, got {dt_s}")
        state, cov = self._predicted(float(dt_s))
        measurement_var = self.measurement_var
        distance = float(np.linalg.norm(z - state[0]))
        limit = None if self.huber_k is None else self.huber_k * math.sqrt(cov[0, 0] + measurement_var)
        self.last_weight = 1.0 if limit is None or distance <= limit else limit / distance
        measurement_var /= self.last_weight
        innovation_var = cov[0, 0] + measurement_var
        gain = cov[:, 0] / innovation_var  # (2,)
        # x + K (z - x): a measurement equal to the prediction leaves the state bit-exact
        self.state = state + gain[:, None] * (z - state[0])[None, :]
        self.cov = cov - np.outer(gain, cov[0])
        return self.position
