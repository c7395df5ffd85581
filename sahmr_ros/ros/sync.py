"""Message synchronisation and a tf2-like transform buffer, in plain Python (no ROS imports).

Both classes are message-type agnostic and deterministic, so the ROS node and the offline bag tool
share them:

* :class:`ApproximateSynchronizer` groups messages of N streams (the node: image, camera_info,
  detections) whose header stamps lie within ``slop_s`` of each other.
* :class:`TransformBuffer` stores static and dynamic transforms of a frame tree (what ``/tf`` and
  ``/tf_static`` carry) and answers ``lookup(target, source, stamp)`` like ``tf2_ros.Buffer``.

Time is integer nanoseconds everywhere (``sec * 10**9 + nanosec``; see :func:`stamp_to_ns`).
Transforms are (4, 4) float64 homogeneous matrices; ``T_parent_child`` maps points expressed in the
child frame into the parent frame (``p_parent = R p_child + t``), which is what a
``geometry_msgs/TransformStamped`` with ``header.frame_id = parent`` and ``child_frame_id = child``
describes.
"""

from __future__ import annotations

import bisect
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from sahmr_ros.constants import NS_PER_S, TIME_JUMP_BACK_S
from sahmr_ros.errors import InputError, SahmrError
from sahmr_ros.geometry import check_pose, check_translation

__all__ = [
    "ApproximateSynchronizer",
    "TransformBuffer",
    "TransformUnavailable",
    "stamp_to_ns",
    "tf2_extrapolation_reason",
]


def _seconds(value: Any, name: str, positive: bool) -> float:
    """``value`` as finite seconds (> 0 when ``positive``, else >= 0)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        raise InputError(f"{name}: expected a finite number of seconds {'>' if positive else '>='} 0, got {value!r}")
    return seconds


def _as_ns(value: Any, name: str) -> int:
    """``value`` as a Python int of nanoseconds (>= 0); bools and floats are rejected."""
    if isinstance(value, bool):
        raise InputError(f"{name}: expected integer nanoseconds, got bool {value!r}")
    try:
        ns = operator.index(value)
    except TypeError:
        raise InputError(
            f"{name}: expected integer nanoseconds, got {type(value).__name__} {value!r}; "
            "convert a builtin_interfaces/Time with stamp_to_ns(stamp)"
        ) from None
    if ns < 0:
        raise InputError(f"{name}: stamps must be >= 0 ns, got {ns}")
    return int(ns)


def stamp_to_ns(stamp: Any) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/Time`` (duck-typed: ``.sec``, ``.nanosec``).

    Raises:
        InputError: missing attributes, negative values or ``nanosec >= 1e9``.
    """
    try:
        sec, nanosec = stamp.sec, stamp.nanosec
    except AttributeError:
        raise InputError(
            f"stamp: expected a builtin_interfaces/Time with .sec and .nanosec, got {type(stamp).__name__}"
        ) from None
    sec = _as_ns(sec, "stamp.sec")
    nanosec = _as_ns(nanosec, "stamp.nanosec")
    if nanosec >= NS_PER_S:
        raise InputError(f"stamp.nanosec: must be < 1e9, got {nanosec}; carry whole seconds into stamp.sec")
    return sec * NS_PER_S + nanosec


# ================================================================================================
# approximate time synchronisation
# ================================================================================================
class ApproximateSynchronizer:
    """Group one message per stream whose stamps lie within ``slop_s`` of each other.

    Feed every received message with :meth:`add`; it returns the sets completed by that message
    (usually zero or one), each a tuple with one message per stream in stream order.

    **Emission rule** (evaluated after every :meth:`add`, repeated while it emits):

    1. Nothing happens while any stream's queue is empty.
    2. The *pivot* is the newest (largest-stamp) queued message of the stream whose newest stamp
       is the oldest (ties: lowest stream index). It is the freshest message every other stream
       has already caught up with, so waiting longer cannot bring a fresher complete set.
    3. Candidates are the sets of one queued message per stream that contain the pivot and whose
       stamps all lie within ``slop_s`` of each other (``max - min <= slop``, inclusive).
    4. If there is none, nothing is emitted (the pivot waits for its stream's next message or for
       a late partner). Otherwise the candidate with the smallest total ``|stamp - pivot stamp|``
       is emitted; ties go to the newer messages (larger stamp sum, then larger stamps in stream
       order). Exact stamps therefore always win: when every stream holds a message with the
       pivot's stamp, exactly those are emitted.
    5. In every stream the emitted message is removed, and the queued messages older than it are
       dropped and counted in :attr:`dropped`. Messages arriving later with a stamp at or before
       the last emitted stamp of their stream are dropped (and counted) on arrival, so each
       stream's emitted stamps strictly increase and emitted sets come out in stamp order.

    **Time jumps back.** A message stamped more than ``jump_back_s`` before the newest message seen
    on its stream means that stream's time jumped back (a bag replayed with ``--loop``, a sim-time
    reset, or real stamps again after a clock glitch stamped messages far in the future). That
    stream then starts over before the message is queued: its queue, last emitted and newest
    stamps are forgotten (counted in :attr:`time_jumps`). The other streams keep what they hold;
    each starts over when its own time jumps (a bag loop reaches them one by one). So a far-future
    stamp blocks at most until its stream's next message, and a glitch on one stream costs no frame
    of the others.

    Other details: queues are kept sorted by stamp, so out-of-order arrival within a stream is
    fine; a queue longer than ``queue_size`` drops its oldest message (counted); a message whose
    stamp equals a queued one of the same stream replaces it (the replaced one is counted).
    With every stream delivering the same stamps in order (any interleaving across streams) and
    queues large enough, every stamp is emitted exactly once as an exact set.

    Args:
        n_streams: number of input streams (>= 1).
        slop_s: largest allowed stamp difference within a set, seconds (>= 0).
        queue_size: per-stream queue bound (>= 1).
        jump_back_s: how far behind its stream's newest message a stamp must be to count as a
            jump back in time, seconds (> 0).
    """

    def __init__(self, n_streams: int = 3, slop_s: float = 0.1, queue_size: int = 10,
                 jump_back_s: float = TIME_JUMP_BACK_S):
        if isinstance(n_streams, bool) or not isinstance(n_streams, int) or n_streams < 1:
            raise InputError(f"n_streams: expected an int >= 1, got {n_streams!r}")
        slop = _seconds(slop_s, "slop_s", positive=False)
        self.jump_back_ns = int(round(_seconds(jump_back_s, "jump_back_s", positive=True) * NS_PER_S))
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise InputError(f"queue_size: expected an int >= 1, got {queue_size!r}")
        self.n_streams = n_streams
        self.slop_s = slop
        self.slop_ns = int(round(slop * NS_PER_S))
        self.queue_size = queue_size
        self.dropped = [0] * n_streams
        """Per stream: messages discarded without being emitted (stale, overflow, replaced)."""
        self.emitted = 0
        """Number of sets emitted so far."""
        self.last_emitted_ns: list[int | None] = [None] * n_streams
        """Per stream: stamp of the message in the last emitted set (None before the first)."""
        self.time_jumps = 0
        """Number of jumps back in time detected (each reset the synchroniser)."""
        self._newest_ns: list[int | None] = [None] * n_streams  # newest stamp seen per stream
        self._stamps: list[list[int]] = [[] for _ in range(n_streams)]
        self._msgs: list[list[Any]] = [[] for _ in range(n_streams)]

    # -- public ----------------------------------------------------------------------------------
    def add(self, stream_index: int, stamp_ns: int, msg: Any) -> list[tuple]:
        """Queue ``msg`` of stream ``stream_index`` stamped ``stamp_ns``; return the emitted sets.

        Args:
            stream_index: 0 .. n_streams - 1.
            stamp_ns: header stamp, integer nanoseconds.
            msg: any object; it is returned unchanged inside an emitted tuple.

        Returns:
            Emitted sets in stamp order, each a tuple of ``n_streams`` messages in stream order.
        """
        if isinstance(stream_index, bool) or not isinstance(stream_index, (int, np.integer)) \
                or not 0 <= stream_index < self.n_streams:
            raise InputError(
                f"stream_index: expected an int in [0, {self.n_streams - 1}], got {stream_index!r}"
            )
        i = int(stream_index)
        stamp = _as_ns(stamp_ns, "stamp_ns")
        newest = self._newest_ns[i]
        if newest is not None and stamp < newest - self.jump_back_ns:
            self._reset_stream(i)
            self.time_jumps += 1
            newest = None
        self._newest_ns[i] = stamp if newest is None else max(stamp, newest)
        last = self.last_emitted_ns[i]
        if last is not None and stamp <= last:
            self.dropped[i] += 1
            return []
        stamps, msgs = self._stamps[i], self._msgs[i]
        k = bisect.bisect_left(stamps, stamp)
        if k < len(stamps) and stamps[k] == stamp:
            msgs[k] = msg
            self.dropped[i] += 1
        else:
            stamps.insert(k, stamp)
            msgs.insert(k, msg)
            if len(stamps) > self.queue_size:
                del stamps[0], msgs[0]
                self.dropped[i] += 1
        out = []
        while True:
            chosen = self._select()
            if chosen is None:
                return out
            out.append(self._emit(chosen))

    def queued(self, stream_index: int) -> list[int]:
        """Stamps (ns, ascending) currently queued for ``stream_index``."""
        return list(self._stamps[stream_index])

    def reset(self) -> None:
        """Forget every queued message and the last emitted stamps (e.g. after a time jump).

        The queued messages are counted in :attr:`dropped`; the :attr:`emitted` and
        :attr:`time_jumps` counters are kept.
        """
        for i in range(self.n_streams):
            self._reset_stream(i)

    # -- internals -------------------------------------------------------------------------------
    def _reset_stream(self, i: int) -> None:
        self.dropped[i] += len(self._stamps[i])
        self._stamps[i].clear()
        self._msgs[i].clear()
        self.last_emitted_ns[i] = None
        self._newest_ns[i] = None

    def _select(self) -> list[int] | None:
        """Queue positions (one per stream) of the set to emit, or None (rule in the class doc)."""
        if any(not s for s in self._stamps):
            return None
        newest = [s[-1] for s in self._stamps]
        p_stream = min(range(self.n_streams), key=lambda j: (newest[j], j))
        p = newest[p_stream]
        slop = self.slop_ns
        best_key, best = None, None
        # every candidate lies in a window [a, a + slop] that holds the pivot (a in [p - slop, p])
        # and whose lower end a is one of the candidate's stamps; inside one window each stream
        # independently takes the stamp closest to p (ties: newer), which is optimal for the key.
        starts = sorted({t for s in self._stamps for t in s if p - slop <= t <= p})
        for a in starts:
            pick = []
            for j, s in enumerate(self._stamps):
                if j == p_stream:
                    pick.append(len(s) - 1)
                    continue
                lo = bisect.bisect_left(s, a)
                hi = bisect.bisect_right(s, a + slop)
                if lo == hi:
                    break
                # closest to p inside s[lo:hi]; ties -> the newer one
                k = bisect.bisect_left(s, p, lo, hi)
                cands = [c for c in (k - 1, k) if lo <= c < hi]
                pick.append(min(cands, key=lambda c: (abs(s[c] - p), -s[c])))
            else:
                ts = [self._stamps[j][c] for j, c in enumerate(pick)]
                key = (sum(abs(t - p) for t in ts), -sum(ts), tuple(-t for t in ts))
                if best_key is None or key < best_key:
                    best_key, best = key, pick
        return best

    def _emit(self, pick: Sequence[int]) -> tuple:
        out = []
        for j, c in enumerate(pick):
            out.append(self._msgs[j][c])
            self.last_emitted_ns[j] = self._stamps[j][c]
            self.dropped[j] += c
            del self._stamps[j][:c + 1], self._msgs[j][:c + 1]
        self.emitted += 1
        return tuple(out)


# ================================================================================================
# transform buffer
# ================================================================================================
class TransformUnavailable(SahmrError):
    """A transform lookup failed.

    Attributes:
        target_frame, source_frame: the frames of the request.
        stamp_ns: requested time (0 = latest common time).
        reason: one of ``TransformUnavailable.REASONS`` (``"unknown_frame"``, ``"not_connected"``,
            ``"too_old"``, ``"future"``).
    """

    UNKNOWN_FRAME = "unknown_frame"
    NOT_CONNECTED = "not_connected"
    TOO_OLD = "too_old"
    FUTURE = "future"
    REASONS = (UNKNOWN_FRAME, NOT_CONNECTED, TOO_OLD, FUTURE)

    def __init__(self, target_frame: str, source_frame: str, stamp_ns: int, reason: str, detail: str):
        self.target_frame = target_frame
        self.source_frame = source_frame
        self.stamp_ns = stamp_ns
        self.reason = reason
        when = "the latest common time" if stamp_ns == 0 else f"t={stamp_ns / NS_PER_S:.9f} s"
        super().__init__(
            f"no transform from '{source_frame}' to '{target_frame}' at {when} ({reason}): {detail}"
        )


@dataclass
class _Edge:
    """Transform history of one child frame relative to its parent."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)  # ascending ns (dynamic edges)
    translations: list[np.ndarray] = field(default_factory=list)  # (3,) each
    quats: list[np.ndarray] = field(default_factory=list)  # (4,) xyzw each


def _matrix(translation: np.ndarray, rotation: Rotation) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rotation.as_matrix()
    T[:3, 3] = translation
    return T


def _inverse(T: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def _frame_id(frame: Any, name: str) -> str:
    if not isinstance(frame, str):
        raise InputError(f"{name}: expected a frame id string, got {type(frame).__name__}")
    frame = frame[1:] if frame.startswith("/") else frame  # tf2 frame ids carry no leading slash
    if not frame:
        raise InputError(f"{name}: frame id is empty; set header.frame_id / child_frame_id")
    return frame


class TransformBuffer:
    """A tf2-like transform buffer without ROS.

    Frames form a tree: every child frame has exactly one parent. Static edges are valid at every
    time; dynamic edges keep the samples of the last ``cache_s`` seconds (relative to the newest
    sample of that edge) and are interpolated between the two samples bracketing the requested
    time (translation linearly, rotation by slerp).

    **Time jumps back.** A dynamic sample more than ``jump_back_s`` behind its edge's newest sample
    means the edge's time jumped back: a bag replayed with ``--loop``, a sim-time reset, or real
    stamps again after a sample stamped far in the future. tf2 would ignore it as "data from the
    past" (or mix it into the old history) and, after a glitch, fail every lookup as too old
    forever; here the edge's history starts over from that sample (counted in :attr:`time_jumps`).
    One edge's publisher sends its samples in order, so a sample that late is never a mere reorder.
    :meth:`clear` forgets the dynamic history of every edge, as tf2 does when the clock jumps back.

    Giving a child a different parent re-parents it (the old edge and its history are discarded);
    likewise switching an edge between static and dynamic replaces its history.

    Args:
        cache_s: history length per dynamic edge, seconds (> 0).
        jump_back_s: how far behind its edge's newest sample a sample must be to count as a jump
            back in time, seconds (> 0).
        max_frames: at most this many frames are known; a transform that would add more is refused
            (garbage frame ids must not grow the buffer without bound).
    """

    def __init__(self, cache_s: float = 10.0, jump_back_s: float = TIME_JUMP_BACK_S, max_frames: int = 10_000):
        self.cache_s = _seconds(cache_s, "cache_s", positive=True)
        self.cache_ns = int(round(self.cache_s * NS_PER_S))
        self.jump_back_ns = int(round(_seconds(jump_back_s, "jump_back_s", positive=True) * NS_PER_S))
        self.max_frames = max_frames
        self.time_jumps = 0
        """Number of dynamic samples that restarted their edge's history (time jumped back)."""
        self._edges: dict[str, _Edge] = {}  # child -> edge to its parent
        self._children: dict[str, int] = {}  # parent -> number of children

    # -- input -----------------------------------------------------------------------------------
    def set_transform(self, parent: str, child: str, stamp_ns: int, T: np.ndarray, static: bool = False) -> None:
        """Store ``T_parent_child`` (4, 4) at ``stamp_ns``.

        Args:
            parent: parent frame id (``header.frame_id``).
            child: child frame id (``child_frame_id``).
            stamp_ns: sample time, integer ns (ignored for static transforms).
            T: (4, 4) rigid transform mapping child-frame points into the parent frame.
            static: True for ``/tf_static`` (valid at every time, replaces the previous value).

        Raises:
            InputError: bad frame ids, parent == child, a cycle, a bad stamp, a non-rigid T or a
                translation beyond ``constants.MAX_COORDINATE_M``.
        """
        parent = _frame_id(parent, "parent")
        child = _frame_id(child, "child")
        stamp = _as_ns(stamp_ns, "stamp_ns")
        T = check_pose(T, f"T_{parent}_{child}", tolerance=1e-5)
        self._check_link(parent, child)
        translation = T[:3, 3].copy()
        quat = Rotation.from_matrix(T[:3, :3]).as_quat()
        self._store(parent, child, stamp, translation, quat, bool(static))

    def add_tf_message(self, msg: Any, static: bool = False) -> int:
        """Store every transform of a ``tf2_msgs/TFMessage`` (duck-typed; rclpy or rosbags object).

        Reads ``msg.transforms[i].header.frame_id``, ``.header.stamp.sec/.nanosec``,
        ``.child_frame_id``, ``.transform.translation.x/y/z`` and ``.transform.rotation.x/y/z/w``.
        Each transform is validated and stored on its own, in message order: a bad one costs only
        itself (tf2 likewise rejects one transform and keeps the rest).

        Returns:
            Number of transforms stored.

        Raises:
            InputError: ``msg`` is not a TFMessage, or some transforms were rejected (raised after
                the good ones are stored); the message names each ``transforms[i]`` and its field.
        """
        try:
            transforms = list(msg.transforms)
        except (AttributeError, TypeError):
            raise InputError(
                f"msg.transforms: expected a tf2_msgs/TFMessage, got {type(msg).__name__}"
            ) from None
        stored, rejected = 0, []
        for i, ts in enumerate(transforms):
            try:
                self._store(*self._parse(ts, f"transforms[{i}]"), bool(static))
                stored += 1
            except InputError as exc:
                rejected.append(str(exc))
        if rejected:
            more = f" (and {len(rejected) - 3} more)" if len(rejected) > 3 else ""
            raise InputError(f"{len(rejected)} of {len(transforms)} transforms rejected, {stored} stored: "
                             + "; ".join(rejected[:3]) + more)
        return stored

    def _parse(self, ts: Any, where: str) -> tuple[str, str, int, np.ndarray, np.ndarray]:
        """``(parent, child, stamp_ns, translation (3,), unit quaternion xyzw (4,))`` of a TransformStamped.

        Raises:
            InputError: a missing or malformed field, a bad link (own parent, cycle), named by ``where``.
        """
        try:
            parent = _frame_id(ts.header.frame_id, f"{where}.header.frame_id")
            child = _frame_id(ts.child_frame_id, f"{where}.child_frame_id")
            try:
                stamp = stamp_to_ns(ts.header.stamp)
            except InputError as exc:
                raise InputError(f"{where}.header.{exc}") from None
            tr, rot = ts.transform.translation, ts.transform.rotation
            translation = np.array([tr.x, tr.y, tr.z], dtype=np.float64)
            quat = np.array([rot.x, rot.y, rot.z, rot.w], dtype=np.float64)
        except (AttributeError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(
                f"{where}: not a geometry_msgs/TransformStamped ({exc}); check the /tf message type"
            ) from None
        translation = check_translation(translation, f"{where}.transform.translation")
        # tf2 normalises any usable quaternion; a component of 1e300 would overflow the norm to inf
        usable = np.isfinite(quat).all() and np.abs(quat).max() < 1e6
        norm = float(np.linalg.norm(quat)) if usable else float("nan")
        if not norm > 1e-9:
            raise InputError(
                f"{where}.transform.rotation: quaternion {quat.tolist()} is zero, non-finite or absurdly "
                "long; publish a unit quaternion (identity is x=y=z=0, w=1)"
            )
        try:
            self._check_link(parent, child)
        except InputError as exc:
            raise InputError(f"{where}.{exc}") from None
        return parent, child, stamp, translation, quat / norm

    def clear(self, static: bool = False) -> None:
        """Forget the history of every dynamic edge (tf2's behaviour when time jumps back).

        Args:
            static: also forget the static transforms (the whole tree).
        """
        if static:
            self._edges.clear()
            self._children.clear()
            return
        for child in [c for c, edge in self._edges.items() if not edge.static]:
            self._unlink(child)

    # -- queries ---------------------------------------------------------------------------------
    def frames(self) -> list[str]:
        """Every known frame id, sorted."""
        return sorted(set(self._edges) | set(self._children))

    def parent_of(self, frame: str) -> str | None:
        """Parent frame id of ``frame``, or None for a root or an unknown frame."""
        edge = self._edges.get(frame)
        return edge.parent if edge else None

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int, tolerance_ns: int = 0) -> bool:
        """Tell whether :meth:`lookup` with the same arguments would succeed."""
        try:
            self.lookup(target_frame, source_frame, stamp_ns, tolerance_ns)
        except TransformUnavailable:
            return False
        return True

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int, tolerance_ns: int = 0) -> np.ndarray:
        """``T_target_source`` (4, 4): maps points in ``source_frame`` into ``target_frame``.

        Args:
            target_frame: frame to express the result in (e.g. ``map``).
            source_frame: frame of the data (e.g. the image's ``header.frame_id``).
            stamp_ns: time, integer ns; 0 means the latest time at which every dynamic edge of
                the chain has data (tf2's "latest common time").
            tolerance_ns: a time up to this far before the oldest / after the newest sample of an
                edge uses that sample instead of failing.

        Returns:
            (4, 4) float64. ``target_frame == source_frame`` gives the identity.

        Raises:
            TransformUnavailable: ``reason`` ``unknown_frame``, ``not_connected``, ``too_old`` or
                ``future``; the message names both frames and the offending edge.
        """
        target = _frame_id(target_frame, "target_frame")
        source = _frame_id(source_frame, "source_frame")
        stamp = _as_ns(stamp_ns, "stamp_ns")
        tol = _as_ns(tolerance_ns, "tolerance_ns")
        if target == source:
            return np.eye(4)
        known = set(self._edges) | set(self._children)
        for frame in (target, source):
            if frame not in known:
                names = ", ".join(sorted(known)[:20]) or "none"
                raise TransformUnavailable(
                    target, source, stamp, TransformUnavailable.UNKNOWN_FRAME,
                    f"frame '{frame}' has never been published (known frames: {names}); "
                    "check the frame id and that its /tf or /tf_static publisher runs",
                )
        up_source = self._chain(source)
        up_target = self._chain(target)
        on_target = set(up_target)
        common = next((f for f in up_source if f in on_target), None)
        if common is None:
            raise TransformUnavailable(
                target, source, stamp, TransformUnavailable.NOT_CONNECTED,
                f"'{source}' belongs to the tree rooted at '{up_source[-1]}' and '{target}' to the tree "
                f"rooted at '{up_target[-1]}'; publish a transform that links the two trees",
            )
        src_edges = up_source[:up_source.index(common)]  # children whose edge is on the path
        tgt_edges = up_target[:up_target.index(common)]
        if stamp == 0:
            newest = [self._edges[c].stamps[-1] for c in src_edges + tgt_edges if not self._edges[c].static]
            stamp = min(newest) if newest else 0
            requested = 0
        else:
            requested = stamp
        T_common_source = np.eye(4)
        for child in src_edges:
            T_common_source = self._edge_at(child, stamp, tol, target, source, requested) @ T_common_source
        T_common_target = np.eye(4)
        for child in tgt_edges:
            T_common_target = self._edge_at(child, stamp, tol, target, source, requested) @ T_common_target
        return _inverse(T_common_target) @ T_common_source

    # -- internals -------------------------------------------------------------------------------
    def _chain(self, frame: str) -> list[str]:
        """``[frame, parent, grandparent, ..., root]``."""
        out = [frame]
        while out[-1] in self._edges:
            out.append(self._edges[out[-1]].parent)
        return out

    def _check_link(self, parent: str, child: str) -> None:
        if parent == child:
            raise InputError(f"child '{child}': a frame cannot be its own parent; fix child_frame_id")
        new = sum(f not in self._edges and f not in self._children for f in (parent, child))
        if new and self._num_frames() + new > self.max_frames:
            raise InputError(f"child '{child}': the buffer already knows {self.max_frames} frames; "
                             "refusing new frame ids (is a publisher sending garbage frame ids?)")
        f, seen = parent, set()
        while f not in seen:
            seen.add(f)
            if f == child:
                raise InputError(
                    f"child '{child}': parent '{parent}' would create a cycle in the frame tree "
                    f"('{parent}' already descends from '{child}'); a frame has one parent"
                )
            nxt = self._edges[f].parent if f in self._edges else None
            if nxt is None:
                return
            f = nxt
        raise InputError(f"child '{child}': the transforms form a cycle in the frame tree")

    def _num_frames(self) -> int:
        """Count the known frames: every child, plus the roots (parents that are nobody's child)."""
        return len(self._edges) + sum(1 for parent in self._children if parent not in self._edges)

    def _unlink(self, child: str) -> None:
        edge = self._edges.pop(child)
        self._children[edge.parent] -= 1
        if not self._children[edge.parent]:
            del self._children[edge.parent]

    def _store(self, parent: str, child: str, stamp: int, translation: np.ndarray, quat: np.ndarray,
               static: bool) -> None:
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            if edge is not None:
                self._unlink(child)
            edge = _Edge(parent=parent, static=static)
            self._edges[child] = edge
            self._children[parent] = self._children.get(parent, 0) + 1
        if static:
            edge.stamps[:] = [stamp]
            edge.translations[:] = [translation]
            edge.quats[:] = [quat]
            return
        if edge.stamps and stamp < edge.stamps[-1] - self.jump_back_ns:  # time jumped back: start over
            del edge.stamps[:], edge.translations[:], edge.quats[:]
            self.time_jumps += 1
        k = bisect.bisect_left(edge.stamps, stamp)
        if k < len(edge.stamps) and edge.stamps[k] == stamp:
            edge.translations[k], edge.quats[k] = translation, quat
        else:
            edge.stamps.insert(k, stamp)
            edge.translations.insert(k, translation)
            edge.quats.insert(k, quat)
        cut = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_ns)
        if cut:
            del edge.stamps[:cut], edge.translations[:cut], edge.quats[:cut]

    def _edge_at(self, child: str, stamp: int, tol: int, target: str, source: str, requested: int) -> np.ndarray:
        """``T_parent_child`` of ``child``'s edge at ``stamp`` (interpolated)."""
        edge = self._edges[child]
        if edge.static:
            return _matrix(edge.translations[0], Rotation.from_quat(edge.quats[0]))
        stamps = edge.stamps
        oldest, newest = stamps[0], stamps[-1]
        label = f"edge '{edge.parent}' -> '{child}'"
        if stamp < oldest:
            if oldest - stamp <= tol:
                return _matrix(edge.translations[0], Rotation.from_quat(edge.quats[0]))
            raise TransformUnavailable(
                target, source, requested, TransformUnavailable.TOO_OLD,
                f"{label}: requested time {stamp / NS_PER_S:.9f} s is {(oldest - stamp) / NS_PER_S:.6f} s "
                f"older than its oldest sample ({oldest / NS_PER_S:.9f} s, cache {self.cache_s:g} s, "
                f"tolerance {tol / NS_PER_S:g} s); look up a newer time or raise the cache length",
            )
        if stamp > newest:
            if stamp - newest <= tol:
                return _matrix(edge.translations[-1], Rotation.from_quat(edge.quats[-1]))
            raise TransformUnavailable(
                target, source, requested, TransformUnavailable.FUTURE,
                f"{label}: extrapolation into the future: requested time {stamp / NS_PER_S:.9f} s is "
                f"{(stamp - newest) / NS_PER_S:.6f} s after its newest sample ({newest / NS_PER_S:.9f} s, "
                f"tolerance {tol / NS_PER_S:g} s); wait for newer transforms or raise the tolerance",
            )
        k = bisect.bisect_left(stamps, stamp)
        if stamps[k] == stamp:
            return _matrix(edge.translations[k], Rotation.from_quat(edge.quats[k]))
        t0, t1 = stamps[k - 1], stamps[k]
        alpha = (stamp - t0) / (t1 - t0)  # exact integer differences, then one division
        translation = (1.0 - alpha) * edge.translations[k - 1] + alpha * edge.translations[k]
        slerp = Slerp([0.0, 1.0], Rotation.from_quat(np.stack([edge.quats[k - 1], edge.quats[k]])))
        return _matrix(translation, slerp([alpha])[0])


def tf2_extrapolation_reason(message: str) -> str:
    """:class:`TransformUnavailable` reason of a tf2 ``ExtrapolationException`` message.

    tf2 raises one exception type for both directions and says which in its text ("... would
    require extrapolation into the future" / "... into the past"); the node reports them apart.
    """
    return TransformUnavailable.FUTURE if "future" in message.lower() else TransformUnavailable.TOO_OLD
