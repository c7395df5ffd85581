"""Lighter mesh markers: the published mesh level and a per-track marker rate (imports no ROS).

RViz slows down under one 41,328-point TRIANGLE_LIST per person per frame. Two knobs, both node
parameters:

* ``mesh_level``: 6890 (the full body) or 1723 (the network's middle level, its triangles from
  ``mesh_downsampling.npz``; :mod:`sahmr_ros.body.mesh_levels`): a quarter of the points and bytes.
* ``mesh_every_n``: publish each person's mesh marker on every Nth frame of its track (1: every frame).
  RViz keeps showing a marker until it is replaced, deleted or its lifetime ends, so with N > 1 the
  array carries no DELETEALL: it holds the ADD markers due this frame and an explicit DELETE for each
  marker id seen before but gone now. Set ``marker_lifetime_s`` above N frame periods (or 0).

``HumanMeshArray`` always carries every person's full 6890-vertex mesh on every frame: the knobs
only thin out what RViz draws.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from sahmr_ros.errors import InputError
from sahmr_ros.ros.conversions import marker_id, mesh_markers

__all__ = ["MeshMarkerSchedule", "build_mesh_markers", "level_persons"]

_MARKER_DELETE = 2


class MeshMarkerSchedule:
    """Which marker ids are due this frame: each id's first frame, then every ``every_n``-th of its frames.

    An id absent from a frame is forgotten (and reported for deletion); if it comes back it is due
    at once. Not thread-safe: one frame worker calls it.

    Args:
        every_n: >= 1; 1 makes every id due on every frame.
    """

    def __init__(self, every_n: int = 1):
        if isinstance(every_n, bool) or not isinstance(every_n, int) or every_n < 1:
            raise InputError(f"mesh_every_n: expected an integer >= 1 (1: every frame), got {every_n!r}")
        self.every_n = every_n
        self._age: dict[int, int] = {}  # id -> frames since its last publish

    def select(self, ids: Sequence[int]) -> tuple[list[bool], list[int]]:
        """Advance one frame with the marker ids present in it.

        Returns:
            ``(due, gone)``: one bool per id (publish its marker now), and the ids of earlier frames
            absent from this one, in increasing order.
        """
        present = [int(i) for i in ids]
        gone = sorted(set(self._age) - set(present))
        for i in gone:
            del self._age[i]
        due = []
        for i in present:
            age = self._age.get(i)
            publish = age is None or age + 1 >= self.every_n
            self._age[i] = 0 if publish else age + 1
            due.append(publish)
        return due, gone

    def reset(self) -> None:
        """Forget every id (a time jump restarted the tracks)."""
        self._age.clear()


def level_persons(persons: Sequence[Any], level) -> list[Any]:
    """Return the persons with ``vertices_map`` cut to ``level`` (:class:`~sahmr_ros.body.mesh_levels.MeshLevel`)."""
    if level.vertex_index is None:
        return list(persons)
    return [dataclasses.replace(p, vertices_map=level.vertices(p.vertices_map)) for p in persons]


def build_mesh_markers(factory: Any, header: Any, persons: Sequence[Any], level, schedule: MeshMarkerSchedule,
                       lifetime_s: float = 0.0, ids: Sequence[str] | None = None,
                       marker_ids: Sequence[int | None] | None = None, ns: str = "sahmr_meshes") -> Any:
    """``visualization_msgs/msg/MarkerArray`` of the persons' meshes at ``level``, thinned by ``schedule``.

    With ``schedule.every_n == 1`` this is :func:`~sahmr_ros.ros.conversions.mesh_markers` at the level
    (DELETEALL, then every person). Otherwise: the markers due this frame, then a DELETE per id gone.

    Args:
        factory: message backend; header: of every marker (image stamp, map frame).
        persons: :class:`~sahmr_ros.pipeline.PersonResult` with 6890-vertex ``vertices_map``.
        level: the :class:`~sahmr_ros.body.mesh_levels.MeshLevel` to publish.
        schedule: the node's :class:`MeshMarkerSchedule` (state across frames).
        lifetime_s, ids, marker_ids, ns: as :func:`~sahmr_ros.ros.conversions.mesh_markers`.
    """
    persons = level_persons(persons, level)
    if schedule.every_n == 1:
        return mesh_markers(factory, header, persons, level.faces, lifetime_s=lifetime_s, ns=ns, ids=ids,
                            marker_ids=marker_ids)
    det_ids = list(ids) if ids is not None else [""] * len(persons)
    given = list(marker_ids) if marker_ids is not None else [None] * len(persons)
    if len(det_ids) != len(persons) or len(given) != len(persons):
        raise InputError(f"ids / marker_ids: expected one per person ({len(persons)})")
    mids = [marker_id(d, i) if g is None else int(g) for i, (d, g) in enumerate(zip(det_ids, given))]
    due, gone = schedule.select(mids)
    keep = [i for i, d in enumerate(due) if d]
    array = mesh_markers(factory, header, [persons[i] for i in keep], level.faces, lifetime_s=lifetime_s, ns=ns,
                         ids=[det_ids[i] for i in keep], marker_ids=[mids[i] for i in keep])
    deletes = [factory.make("visualization_msgs/msg/Marker", header=header, ns=ns, id=int(i), action=_MARKER_DELETE)
               for i in gone]
    return factory.make("visualization_msgs/msg/MarkerArray", markers=list(array.markers[1:]) + deletes)
