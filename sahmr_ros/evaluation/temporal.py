"""Metrics of estimates over time: acceleration error and the lag of a trajectory.

Inputs are per-frame sequences of one person, in metres, ``(T, J, 3)`` (joints) or ``(T, 3)``
(roots), sampled at the sequence's frame rate; outputs are in millimetres per frame squared (the unit
of the HMR literature: HMMR, Kanazawa et al. 2019; VIBE, Kocabas et al. 2020) or in frames.
"""

from __future__ import annotations

import numpy as np

from sahmr_ros.errors import InputError

__all__ = ["acceleration", "acceleration_error", "trajectory_lag"]


def _sequence(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3 or a.shape[-1] != 3:
        raise InputError(f"{name}: expected (T, J, 3) or (T, 3) points in metres, got shape {a.shape}")
    return a


def _second_difference(x: np.ndarray) -> np.ndarray:
    return x[:-2] - 2.0 * x[1:-1] + x[2:]  # (T - 2, J, 3)


def acceleration(pred) -> np.ndarray:
    """Mean over joints of the norm of the second finite difference, per frame.

    Args:
        pred: (T, J, 3) or (T, 3), metres.

    Returns:
        (T - 2,) mm/frame^2 (frame ``t`` of the output is centred on input frame ``t + 1``).
    """
    x = _sequence(pred, "pred")
    return 1000.0 * np.linalg.norm(_second_difference(x), axis=-1).mean(axis=-1)


def acceleration_error(pred, gt) -> np.ndarray:
    """Acceleration error: mean over joints of ``|a_pred - a_gt|``, ``a`` the second finite difference.

    ``a[t] = x[t - 1] - 2 x[t] + x[t + 1]``, the definition of HMMR and VIBE (``compute_error_accel``).

    Args:
        pred, gt: (T, J, 3) or (T, 3) of the same shape, metres, consecutive frames.

    Returns:
        (T - 2,) mm/frame^2; empty when T < 3.
    """
    p, g = _sequence(pred, "pred"), _sequence(gt, "gt")
    if p.shape != g.shape:
        raise InputError(f"pred and gt: expected the same shape, got {p.shape} and {g.shape}")
    return 1000.0 * np.linalg.norm(_second_difference(p) - _second_difference(g), axis=-1).mean(axis=-1)


def trajectory_lag(pred, gt, max_lag_frames: float = 5.0, resolution_frames: float = 0.01) -> float:
    """Delay of ``pred`` behind ``gt``, in frames: the shift that best aligns the two trajectories.

    Finds ``tau`` minimising the mean squared distance between ``pred[t]`` and ``gt`` at ``t - tau``
    (``gt`` linearly interpolated between frames) over the frames where both exist. A filter that
    delays its input by ``d`` frames gives ``tau = d``; ``tau`` is the time-domain counterpart of the
    cross-correlation peak and also works on trajectories that are not zero-mean.

    Args:
        pred, gt: (T, J, 3) or (T, 3) metres, consecutive frames, a trajectory that moves.
        max_lag_frames: search ``[-max, max]``.
        resolution_frames: step of the search.

    Returns:
        ``tau`` in frames (positive: ``pred`` lags behind). NaN when fewer than 3 frames overlap.
    """
    p, g = _sequence(pred, "pred"), _sequence(gt, "gt")
    if p.shape != g.shape:
        raise InputError(f"pred and gt: expected the same shape, got {p.shape} and {g.shape}")
    t = np.arange(len(g), dtype=np.float64)
    best, best_cost = float("nan"), np.inf
    for tau in np.arange(-max_lag_frames, max_lag_frames + resolution_frames / 2, resolution_frames):
        src = t - tau
        ok = (src >= 0) & (src <= len(g) - 1)
        if ok.sum() < 3:
            continue
        lo = np.floor(src[ok]).astype(int)
        hi = np.minimum(lo + 1, len(g) - 1)
        w = (src[ok] - lo)[:, None, None]
        shifted = (1.0 - w) * g[lo] + w * g[hi]
        cost = float(np.mean(np.sum((p[ok] - shifted) ** 2, axis=-1)))
        if cost < best_cost - 1e-15:
            best, best_cost = float(tau), cost
    return best
