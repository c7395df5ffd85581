"""Smoothing of one tracked person in the map frame: the root by its Kalman filter, the pose by One-Euro.

The mesh is split into the root (the refined pelvis, ``root_map``) and the root-relative vertices and
joints. The root is the track's constant-velocity Kalman estimate (:class:`~sahmr_ros.tracking.tracker.Track`
keeps that filter, as it also predicts the root for the assignment); the root-relative vertices and
joints go through one vectorised :class:`~sahmr_ros.tracking.filters.OneEuroFilter` (each point its own
speed-adaptive cut-off). Arithmetic is float64; the outputs are float32 like the pipeline's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sahmr_ros.tracking.filters import OneEuroFilter
from sahmr_ros.tracking.params import TrackingParams

__all__ = ["PoseSmoother", "person_arrays_finite"]


def person_arrays_finite(person: Any) -> bool:
    """Tell whether a person's map-frame root, joints and vertices are all finite, of shapes (3,), (J, 3), (V, 3)."""
    try:
        root = np.asarray(person.root_map, dtype=np.float64)
        joints = np.asarray(person.joints14_map, dtype=np.float64)
        vertices = np.asarray(person.vertices_map, dtype=np.float64)
    except (AttributeError, TypeError, ValueError):
        return False
    shapes_ok = root.shape == (3,) and joints.ndim == 2 and joints.shape[1] == 3 and vertices.ndim == 2 \
        and vertices.shape[1] == 3
    return shapes_ok and bool(np.isfinite(root).all() and np.isfinite(joints).all() and np.isfinite(vertices).all())


class PoseSmoother:
    """The smoothed copy of one track's person, frame after frame.

    Args:
        params: the One-Euro parameters (``min_cutoff_hz``, ``beta``, ``d_cutoff_hz``).
    """

    def __init__(self, params: TrackingParams):
        self._filter = OneEuroFilter(params.min_cutoff_hz, params.beta, params.d_cutoff_hz)

    def __call__(self, person: Any, smoothed_root: np.ndarray, dt_s: float) -> Any:
        """Return a copy of ``person`` with smoothed ``root_map``, ``joints14_map`` and ``vertices_map``.

        Args:
            person: a :class:`~sahmr_ros.pipeline.PersonResult` (any dataclass with those map-frame
                fields: (3,), (J, 3), (V, 3), metres), finite (:func:`person_arrays_finite`).
            smoothed_root: (3,) the track's filtered root, map frame, metres.
            dt_s: seconds since the track's previous detection; 0 for a new track (the pose passes
                unfiltered).

        The other fields (box, contacts, camera-frame roots, flags) are the person's own.
        """
        root = np.asarray(person.root_map, dtype=np.float64)
        joints = np.asarray(person.joints14_map, dtype=np.float64)
        vertices = np.asarray(person.vertices_map, dtype=np.float64)
        if dt_s <= 0:
            self._filter.reset()
        # float32 values differ exactly in float64, so a pose that does not change comes back bit-exact
        relative = np.concatenate([vertices, joints]) - root  # (V + J, 3)
        smoothed = self._filter(relative, dt_s) + np.asarray(smoothed_root, dtype=np.float64)
        count = len(vertices)
        return dataclasses.replace(
            person,
            root_map=np.asarray(smoothed_root, dtype=np.float64).astype(np.float32),
            vertices_map=smoothed[:count].astype(np.float32),
            joints14_map=smoothed[count:].astype(np.float32),
        )
