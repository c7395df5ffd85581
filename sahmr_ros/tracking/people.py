"""What the node's core calls once per frame: people in, tracked people (raw and smoothed) out.

:class:`PeopleTracker` runs the :class:`~sahmr_ros.tracking.tracker.Tracker` on the frame's persons
(their boxes, map-frame roots and detection ids) and, per track, the
:class:`~sahmr_ros.tracking.smoothing.PoseSmoother`. Time is the image stamp, so a replayed bag and
the live camera give the same result for the same frames. Both versions of each person are kept:
:attr:`TrackedPerson.raw` (the pipeline's estimate of this frame) and :attr:`TrackedPerson.smoothed`;
``publish_smoothed`` says which one the node publishes.

A person whose estimate is not finite (flag ``non_finite_output``), or who comes in a frame that is
not newer than the previous one, is passed through untracked (track id ``""``, smoothed = raw).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from sahmr_ros.constants import FLAG_NON_FINITE
from sahmr_ros.errors import InputError
from sahmr_ros.tracking.params import TrackingParams
from sahmr_ros.tracking.smoothing import PoseSmoother, person_arrays_finite
from sahmr_ros.tracking.tracker import Tracker

__all__ = ["TrackedPerson", "TrackedFrame", "PeopleTracker"]


@dataclass
class TrackedPerson:
    """One person of a frame with its track.

    Attributes:
        track_id: the track's id (the detector's id, or ``t<n>``); ``""`` when untracked.
        marker_id: stable int32 marker id of the track; None when untracked.
        raw: the pipeline's estimate (:class:`~sahmr_ros.pipeline.PersonResult`).
        smoothed: the smoothed estimate (the same object as ``raw`` when not smoothed).
        is_smoothed: whether ``smoothed`` went through the filters (False for untracked persons,
            with smoothing off; True for a track's first frame, whose values equal ``raw``).
    """

    track_id: str
    marker_id: int | None
    raw: Any
    smoothed: Any
    is_smoothed: bool = False

    def chosen(self, smoothed: bool) -> Any:
        """Return :attr:`smoothed` when ``smoothed`` is true, else :attr:`raw`."""
        return self.smoothed if smoothed else self.raw


@dataclass
class TrackedFrame:
    """The tracked people of one frame, in the order of the persons passed in, and the tracker's events.

    ``root_outliers``: roots the robust Kalman update down-weighted; the others as
    :class:`~sahmr_ros.tracking.tracker.TrackerStep`.
    """

    persons: list[TrackedPerson] = field(default_factory=list)
    born: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    reset: str = ""
    stale: bool = False
    root_outliers: int = 0


class PeopleTracker:
    """Tracks and smooths people frame after frame (module docstring).

    Args:
        params: :class:`~sahmr_ros.tracking.params.TrackingParams`.

    Not thread-safe: call :meth:`update` from one thread (the node's worker).
    """

    def __init__(self, params: TrackingParams = TrackingParams()):
        self.params = params
        self.tracker = Tracker(params)
        self._smoothers: dict[int, tuple[Any, PoseSmoother]] = {}  # id(track) -> (track, smoother)
        self.stale_frames = 0

    @property
    def active_tracks(self) -> int:
        """Number of live tracks."""
        return len(self.tracker.tracks)

    @property
    def resets(self) -> int:
        """Number of times a time jump reset every track."""
        return self.tracker.resets

    def reset(self) -> None:
        """Drop every track."""
        self.tracker.reset()
        self._smoothers.clear()

    def update(self, stamp_ns: int, persons: Sequence[Any], detection_ids: Sequence[str] | None = None) -> TrackedFrame:
        """Track and smooth the persons of the frame stamped ``stamp_ns`` (nanoseconds).

        Args:
            stamp_ns: the image stamp.
            persons: :class:`~sahmr_ros.pipeline.PersonResult` (map frame), any number.
            detection_ids: the detection id of each person (``""``: none); None: no ids.

        Raises:
            InputError: ``detection_ids`` of another length than ``persons``.
        """
        persons = list(persons)
        if detection_ids is not None and len(detection_ids) != len(persons):
            raise InputError(f"detection_ids: expected one per person ({len(persons)}), got {len(detection_ids)}")
        usable = [FLAG_NON_FINITE not in tuple(getattr(p, "flags", ())) and person_arrays_finite(p) for p in persons]
        boxes = np.full((len(persons), 4), np.nan)
        roots = np.full((len(persons), 3), np.nan)
        for i, (person, ok) in enumerate(zip(persons, usable)):
            if ok:
                box = np.asarray(getattr(person, "box_xyxy", np.full(4, np.nan)), dtype=np.float64).reshape(-1)
                boxes[i] = box if box.shape == (4,) else np.nan
                roots[i] = np.asarray(person.root_map, dtype=np.float64)
        step = self.tracker.update(stamp_ns, boxes, roots, detection_ids)
        self.stale_frames += int(step.stale)
        live = {id(t) for t in self.tracker.tracks.values()}
        self._smoothers = {k: v for k, v in self._smoothers.items() if k in live}
        out = TrackedFrame(born=step.born, ended=step.ended, reset=step.reset, stale=step.stale,
                           root_outliers=step.root_outliers)
        for person, track, dt in zip(persons, step.tracks, step.dt_s):
            if track is None:
                out.persons.append(TrackedPerson("", None, person, person))
                continue
            if not self.params.smoothing:
                out.persons.append(TrackedPerson(track.track_id, track.marker_id, person, person))
                continue
            entry = self._smoothers.get(id(track))
            if entry is None or entry[0] is not track:
                entry = self._smoothers[id(track)] = (track, PoseSmoother(self.params))
            smoothed = entry[1](person, track.root_filter.position, dt)
            out.persons.append(TrackedPerson(track.track_id, track.marker_id, person, smoothed, True))
        return out
