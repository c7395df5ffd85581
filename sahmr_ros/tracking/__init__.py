"""People over time: track identities and temporal smoothing in the map frame (imports no ROS).

* :mod:`~sahmr_ros.tracking.params` -- :class:`TrackingParams`, the parameters (node: ``tracking.*``).
* :mod:`~sahmr_ros.tracking.filters` -- constant-velocity Kalman and One-Euro filters (variable time steps).
* :mod:`~sahmr_ros.tracking.tracker` -- :class:`Tracker`: detector ids, else Hungarian assignment over
  map-frame roots and boxes with gates; births, misses, timeouts, time jumps.
* :mod:`~sahmr_ros.tracking.smoothing` -- :class:`PoseSmoother`: a track's root-relative pose.
* :mod:`~sahmr_ros.tracking.people` -- :class:`PeopleTracker`: what the node's core calls per frame.

Frames: everything is in the map frame (REP-103, z up), metres; boxes in image pixels; time from the
image stamps (nanoseconds).

::

    from sahmr_ros.tracking import PeopleTracker, TrackingParams
    tracker = PeopleTracker(TrackingParams(min_cutoff_hz=1.0, beta=1.0))
    frame = tracker.update(stamp_ns, result.persons, detection_ids)   # per image, in stamp order
    for person in frame.persons:
        person.track_id, person.marker_id, person.raw, person.smoothed
"""

from sahmr_ros.tracking.filters import ConstantVelocityKalman, OneEuroFilter
from sahmr_ros.tracking.params import PARAMETER_PREFIX, TRACKING_PARAMETERS, TrackingParams
from sahmr_ros.tracking.people import PeopleTracker, TrackedFrame, TrackedPerson
from sahmr_ros.tracking.smoothing import PoseSmoother
from sahmr_ros.tracking.tracker import Track, Tracker, TrackerStep, box_iou, id_to_marker

__all__ = [
    "PARAMETER_PREFIX",
    "TRACKING_PARAMETERS",
    "ConstantVelocityKalman",
    "OneEuroFilter",
    "PeopleTracker",
    "PoseSmoother",
    "Track",
    "TrackedFrame",
    "TrackedPerson",
    "Tracker",
    "TrackerStep",
    "TrackingParams",
    "box_iou",
    "id_to_marker",
]
