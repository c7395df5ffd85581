"""Track identities over frames: the detector's ids when it gives them, else boxes and map-frame roots.

Per frame (:meth:`Tracker.update`, image stamp in nanoseconds):

1. **Time.** Stamps going back by more than ``time_jump_s``, or forward by more than
   ``track_timeout_s``, reset every track (a bag replayed in a loop, a sim-time reset, a long pause).
   A frame not newer than the last one (a duplicate or out-of-order stamp within ``time_jump_s``) is
   not tracked: its people get no track and no state changes.
2. **Timeouts.** Tracks not seen for more than ``track_timeout_s`` end.
3. **Detector ids.** A detection with a non-empty id (a vision_msgs tracking id) continues the track
   of that id, or starts it; the id is the track id. A repeated id within a frame is used once only
   (the later detections are treated as id-less).
4. **Assignment.** The other detections are assigned to the tracks this tracker started, by the
   Hungarian method (``scipy.optimize.linear_sum_assignment``) on the cost
   ``min(d / gate_root_m, 1) + (1 - IoU)``, where ``d`` is the distance (m, map frame) between the
   detection's root and the track's root predicted to this stamp by its constant-velocity Kalman
   filter, and IoU is that of the detection's box with the track's last box. A pair is allowed only
   when ``d <= gate_root_m`` or ``IoU >= gate_iou`` (the gates), so a person who moved little in the
   map but far in the image (the camera turned), or little in the image but whose root estimate
   jumped, keeps the track. Detections left over start tracks ``t1``, ``t2``, ... (numbering restarts
   after a reset).

A track's root filter is updated with each detection assigned to it; misses leave it untouched (its
prediction covers the gap). The update is robust: a root far from the prediction (a depth estimate
that jumped, admitted by the box) is down-weighted (:class:`~sahmr_ros.tracking.filters.ConstantVelocityKalman`).
Roots and boxes that are not finite are never tracked.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from sahmr_ros.constants import NS_PER_S
from sahmr_ros.errors import InputError
from sahmr_ros.tracking.filters import ConstantVelocityKalman
from sahmr_ros.tracking.params import TrackingParams

__all__ = ["Track", "TrackerStep", "Tracker", "box_iou", "id_to_marker", "TRACKER_ID_PREFIX"]

TRACKER_ID_PREFIX = "t"  # ids of tracks this tracker starts: t1, t2, ...
_INADMISSIBLE = 1e6  # cost of a pair outside both gates (never kept)
_INT32_LIMIT = 2**31


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of boxes.

    Args:
        a: (N, 4) ``x1, y1, x2, y2`` pixels. b: (M, 4).

    Returns:
        (N, M) float64 in [0, 1]; 0 for empty boxes.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0, None)
    inter = w * h
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0.0, None) * np.clip(x[..., 3] - x[..., 1], 0.0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def id_to_marker(track_id: str) -> int:
    """Stable int32 marker id of a non-empty id (the rule of :func:`sahmr_ros.ros.conversions.marker_id`).

    A decimal id in [0, 2**31) is used as is; any other id maps to ``zlib.crc32(id) & 0x7fffffff``,
    stable across runs and processes.
    """
    text = str(track_id).strip()
    if text.isdigit() and text.isascii() and int(text) < _INT32_LIMIT:
        return int(text)
    return zlib.crc32(text.encode("utf-8")) & 0x7FFFFFFF


@dataclass(eq=False)
class Track:
    """One person over time.

    Attributes:
        track_id: the detector's id, or ``t<n>`` for a track this tracker started.
        marker_id: stable int32 marker id (``n`` for ``t<n>``; :func:`id_to_marker` of a detector id).
        from_detector: whether the identity comes from the detector.
        root_filter: constant-velocity Kalman filter of the root (map frame, metres).
        box: (4,) the last box (pixels).
        born_ns, last_seen_ns: stamps of the first and the last detection.
        hits: detections so far.
    """

    track_id: str
    marker_id: int
    from_detector: bool
    root_filter: ConstantVelocityKalman
    box: np.ndarray
    born_ns: int
    last_seen_ns: int
    hits: int = 1

    def seconds_since_seen(self, stamp_ns: int) -> float:
        """Seconds from the last detection to ``stamp_ns``."""
        return (int(stamp_ns) - self.last_seen_ns) / NS_PER_S


@dataclass
class TrackerStep:
    """What one :meth:`Tracker.update` did.

    Attributes:
        tracks: per detection, its :class:`Track` (None: not tracked, e.g. a non-finite root).
        dt_s: per detection, seconds since its track's previous detection (0 for a new track).
        born, ended: track ids started and ended at this step.
        root_outliers: detections whose root the robust update down-weighted.
        reset: why every track was dropped first (``"time_jump_back"``, ``"time_jump_forward"``), or "".
        stale: the frame was not newer than the previous one and was not tracked.
    """

    tracks: list
    dt_s: list
    born: list
    ended: list
    root_outliers: int = 0
    reset: str = ""
    stale: bool = False


class Tracker:
    """Identities of people over frames (module docstring).

    Args:
        params: :class:`~sahmr_ros.tracking.params.TrackingParams` (gates, timeout, time jump, Kalman noise).
    """

    def __init__(self, params: TrackingParams = TrackingParams()):
        self.params = params
        self.tracks: dict[tuple[bool, str], Track] = {}  # (from_detector, track_id) -> Track
        self.last_stamp_ns: int | None = None
        self._next_number = 1
        self.resets = 0

    def reset(self) -> list[str]:
        """Drop every track and restart the numbering; returns the ended track ids."""
        ended = [t.track_id for t in self.tracks.values()]
        self.tracks.clear()
        self.last_stamp_ns = None
        self._next_number = 1
        return ended

    def update(self, stamp_ns: int, boxes: np.ndarray, roots: np.ndarray,
               detection_ids: Sequence[str] | None = None) -> TrackerStep:
        """Assign this frame's detections to tracks (module docstring).

        Args:
            stamp_ns: the image stamp (nanoseconds).
            boxes: (N, 4) ``x1, y1, x2, y2`` pixels.
            roots: (N, 3) estimated roots, map frame, metres.
            detection_ids: (N,) the detector's ids (``""``: none); None: no ids.

        Returns:
            :class:`TrackerStep`.

        Raises:
            InputError: shapes that do not match (``boxes`` (N, 4), ``roots`` (N, 3), N ids).
        """
        boxes = np.asarray(boxes, dtype=np.float64)
        roots = np.asarray(roots, dtype=np.float64)
        n = boxes.shape[0] if boxes.ndim == 2 else -1
        if boxes.shape != (n, 4) or roots.shape != (n, 3):
            raise InputError(f"boxes, roots: expected (N, 4) and (N, 3), got {boxes.shape} and {roots.shape}")
        ids = [""] * n if detection_ids is None else [str(i).strip() for i in detection_ids]
        if len(ids) != n:
            raise InputError(f"detection_ids: expected {n} ids (one per box), got {len(ids)}")
        stamp_ns = int(stamp_ns)
        step = TrackerStep([None] * n, [0.0] * n, [], [])
        p = self.params
        if self.last_stamp_ns is not None:
            dt = (stamp_ns - self.last_stamp_ns) / NS_PER_S
            if dt < -p.time_jump_s or dt > p.track_timeout_s:
                step.reset = "time_jump_back" if dt < 0 else "time_jump_forward"
                step.ended += self.reset()
                self.resets += 1
            elif dt <= 0:
                step.stale = True
                return step
        self.last_stamp_ns = stamp_ns
        for key, track in list(self.tracks.items()):
            if track.seconds_since_seen(stamp_ns) > p.track_timeout_s:
                step.ended.append(track.track_id)
                del self.tracks[key]

        usable = np.isfinite(boxes).all(axis=1) & np.isfinite(roots).all(axis=1)
        free = []  # detections for the assignment
        seen_ids: set[str] = set()
        for i in np.flatnonzero(usable):
            if ids[i] and ids[i] not in seen_ids:
                seen_ids.add(ids[i])
                self._assign(step, i, (True, ids[i]), boxes[i], roots[i], stamp_ns)
            else:
                free.append(int(i))
        if free:
            self._hungarian(step, free, boxes, roots, stamp_ns)
        return step

    # -- internals -----------------------------------------------------------------------------------
    def _assign(self, step: TrackerStep, i: int, key: tuple[bool, str], box, root, stamp_ns: int) -> None:
        track = self.tracks.get(key)
        if track is None:
            track = self._start(key, box, root, stamp_ns)
            step.born.append(track.track_id)
        else:
            step.dt_s[i] = track.seconds_since_seen(stamp_ns)
            track.root_filter.update(root, step.dt_s[i])
            step.root_outliers += int(track.root_filter.last_weight < 1.0)
            track.box, track.last_seen_ns, track.hits = box.copy(), stamp_ns, track.hits + 1
        step.tracks[i] = track

    def _start(self, key: tuple[bool, str], box, root, stamp_ns: int) -> Track:
        from_detector, track_id = key
        if from_detector:
            marker = id_to_marker(track_id)
        else:
            number = self._next_number
            self._next_number = number + 1 if number + 1 < _INT32_LIMIT else 1
            track_id, marker = f"{TRACKER_ID_PREFIX}{number}", number
            key = (False, track_id)
        track = Track(track_id, marker, from_detector, self._root_filter(root), box.copy(), stamp_ns, stamp_ns)
        self.tracks[key] = track
        return track

    def _root_filter(self, root: np.ndarray) -> ConstantVelocityKalman:
        return ConstantVelocityKalman(root, self.params.root_accel_noise, self.params.root_measurement_noise_m)

    def _hungarian(self, step: TrackerStep, free: list[int], boxes, roots, stamp_ns: int) -> None:
        own = [t for (from_detector, _), t in self.tracks.items() if not from_detector]
        matched: dict[int, Track] = {}
        if own:
            p = self.params
            predicted = np.stack([t.root_filter.predict_position(t.seconds_since_seen(stamp_ns)) for t in own])
            distance = np.linalg.norm(predicted[:, None, :] - roots[free][None, :, :], axis=-1)  # (T, M)
            iou = box_iou(np.stack([t.box for t in own]), boxes[free])  # (T, M)
            allowed = (distance <= p.gate_root_m) | (iou >= p.gate_iou)
            cost = np.minimum(distance / p.gate_root_m, 1.0) + (1.0 - iou)
            cost = np.where(allowed, cost, _INADMISSIBLE)
            for r, c in zip(*linear_sum_assignment(cost)):
                if allowed[r, c]:
                    matched[free[c]] = own[r]
        for i in free:  # in detection order, so new tracks are numbered left to right in the message
            track = matched.get(i)
            self._assign(step, i, (False, track.track_id) if track else (False, ""), boxes[i], roots[i], stamp_ns)
