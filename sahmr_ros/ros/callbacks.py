"""What ``sahmr_node`` does on each message, in plain Python (no ROS imports).

The rclpy node (:mod:`sahmr_ros.ros.node`) only creates subscriptions, publishers and a timer and
hands every message to :class:`NodeCallbacks`; ``sahmr bag`` feeds the same callbacks from a
recording. So the callbacks a robot exercises are the ones the bag tool and the fuzz test exercise.

**No callback lets an exception escape** (in rclpy an escaping exception stops the node). An
expected problem (:class:`~sahmr_ros.errors.SahmrError`: a malformed message, a bad transform, no TF,
no scene) is counted by kind in the core's statistics and logged, throttled per kind; anything else
is counted as ``internal`` and logged with its traceback. Either way it costs that message or frame,
never the node or the frames after it.

**Time jumps back** (a bag replayed with ``--loop``, a sim-time reset, real stamps again after a
clock glitch): the synchroniser detects them per stream and starts over, and so does each edge of
the :class:`~sahmr_ros.ros.sync.TransformBuffer` on its own samples; the callbacks log one warning
and call ``on_time_jump`` (the node clears tf2's buffer there, which would otherwise ignore the
older samples forever).
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from typing import Any, Callable

import numpy as np

from sahmr_ros.errors import SahmrError
from sahmr_ros.ros.core import FrameInput, FrameOutput, LatestFrameWorker, PerceptionCore
from sahmr_ros.ros.sync import TransformBuffer, TransformUnavailable

__all__ = ["NodeCallbacks", "LOG_PERIOD_S"]

LOG_PERIOD_S = 5.0  # at most one log line per kind of problem in this period
TF_WAIT_POLL_S = 0.005  # how often a waiting TF lookup looks again

Emit = Callable[[str, str], None]  # (level: "info" | "warning" | "error", line)
Lookup = Callable[[str, str, int], np.ndarray]  # (target, source, stamp_ns) -> T_target_source (4, 4)


class NodeCallbacks:
    """Every callback of ``sahmr_node``: scene, inputs, TF, the frame worker and diagnostics.

    Args:
        core: the :class:`PerceptionCore`.
        publish: ``publish(out)`` for a successful :class:`FrameOutput` (markers, contacts, humans).
        emit: ``emit(level, line)`` writes a log line (the node's logger; the bag tool's printer).
        lookup: ``T_target_source`` provider (tf2 in the node when installed). None: lookups go to
            :attr:`tf`, the buffer :meth:`on_tf` feeds, waiting up to ``tf_wait_s`` for the sample.
        tf_wait_s: how long a lookup on :attr:`tf` waits for its transform, seconds of wall time
            (the node: ``tf_timeout_s``; the bag tool waits in bag time itself and passes 0).
        submit: where synchronised frames go. None: a :class:`LatestFrameWorker` thread owned here
            runs :meth:`work` on the newest frame (the node); the bag tool queues them itself.
        on_time_jump: called after a jump back in time has reset the synchroniser (the node clears
            tf2's buffer there; :attr:`tf` restarts each edge on its own samples, so a transform that
            arrived just before the jumped image is kept).
        log_period_s: at most one line per kind of problem in this period (0: every line).
        clock: monotonic seconds, for the log throttle.
    """

    def __init__(self, core: PerceptionCore, publish: Callable[[FrameOutput], None], emit: Emit, *,
                 lookup: Lookup | None = None, tf_wait_s: float = 0.0,
                 submit: Callable[[FrameInput], Any] | None = None,
                 on_time_jump: Callable[[], None] | None = None, log_period_s: float = LOG_PERIOD_S,
                 clock: Callable[[], float] = time.monotonic):
        self.core = core
        self.tf = TransformBuffer(cache_s=max(10.0, 4 * core.params.tf_timeout_s))
        self._tf_lock = threading.Lock()
        self._lookup = lookup or self._lookup_tf
        self._tf_wait_s = tf_wait_s
        self._publish = publish
        self._emit = emit
        self._on_time_jump = on_time_jump
        self._log_period_s = log_period_s
        self._clock = clock
        self._last_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._log_lock = threading.Lock()
        self.worker = None
        if submit is None:
            self.worker = LatestFrameWorker(self.work, self.on_worker_error)
            submit = self.worker.submit
        self._submit = submit

    # -- subscriptions -------------------------------------------------------------------------------
    def on_scene(self, msg: Any) -> None:
        """Latch a scene cloud (a bad one keeps the previous scene)."""
        with self._guard("scene"):
            self._emit("info", self.core.on_scene(msg))

    def on_input(self, stream: str, msg: Any) -> None:
        """Synchronise an image, camera_info or detections message; submit the frames it completes."""
        with self._guard(stream):
            jumps = self.core.sync.time_jumps
            frames = self.core.add(stream, msg)
            if self.core.sync.time_jumps != jumps:
                self._time_jumped(stream)
            for frame in frames:
                self._submit(frame)

    def on_tf(self, msg: Any, static: bool) -> None:
        """Store every valid transform of a ``/tf`` or ``/tf_static`` message; report the bad ones."""
        with self._guard("tf"):
            with self._tf_lock:
                self.tf.add_tf_message(msg, static=static)

    # -- the worker ----------------------------------------------------------------------------------
    def work(self, frame: FrameInput) -> None:
        """Process one frame and publish it (the worker thread; the bag tool calls it directly)."""
        with self._guard("publish"):
            out = self.core.handle(frame, self._lookup)
            if out.error:
                self.log(out.error_kind, out.error + (f"\n{out.traceback}" if out.traceback else ""),
                         "error" if out.error_kind == "internal" else "warning")
                return
            for line in out.warnings:
                self.log(line.split(":")[0], line)
            self._publish(out)

    def on_worker_error(self, exc: BaseException) -> None:
        """Last resort of the worker thread (``work`` catches everything itself)."""
        self._internal("worker", exc)

    def diagnostics_message(self, stamp_ns: int) -> Any:
        """``diagnostic_msgs/DiagnosticArray`` of the core's status, or None if it cannot be built."""
        with self._guard("diagnostics"):
            return self.core.diagnostics_message(stamp_ns, dropped_stale=self.worker.dropped if self.worker else 0)
        return None

    def close(self) -> None:
        """Stop the worker thread (if owned)."""
        if self.worker is not None:
            self.worker.stop()

    # -- logging -------------------------------------------------------------------------------------
    def log(self, key: str, line: str, level: str = "warning") -> None:
        """One line per ``key`` every ``log_period_s``, with the count of lines held back meanwhile."""
        with self._log_lock:
            now = self._clock()
            if self._log_period_s > 0 and now - self._last_log.get(key, -np.inf) < self._log_period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            held = self._suppressed.pop(key, 0)
            self._last_log[key] = now
        self._emit(level, line + (f" ({held} similar suppressed)" if held else ""))

    # -- internals -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _guard(self, kind: str):
        """Record and log whatever the body raises (never re-raised); ``kind`` names the input."""
        try:
            yield
        except SahmrError as exc:
            self.core.record_error(kind, str(exc))
            self.log(kind, str(exc))
        except Exception as exc:  # noqa: BLE001 - a callback must never stop the node
            self._internal(kind, exc)

    def _internal(self, kind: str, exc: BaseException) -> None:
        line = f"unexpected error in the {kind} callback (the node goes on): {type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            self.core.record_error("internal", line)
            self.log("internal", line + "\n" + "".join(traceback.format_exception(exc)), "error")

    def _time_jumped(self, stream: str) -> None:
        if self._on_time_jump is not None:
            self._on_time_jump()
        self.core.record_error("time_jump", f"time jumped back on the {stream} stream")
        self.log("time_jump", f"time jumped back on the {stream} stream (bag loop, sim-time reset or a clock "
                 "glitch): its synchroniser queue starts over")

    def _lookup_tf(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        deadline = self._clock() + self._tf_wait_s
        while True:
            with self._tf_lock:
                try:
                    return self.tf.lookup(target, source, stamp_ns)
                except TransformUnavailable:
                    if self._clock() >= deadline:
                        raise
            time.sleep(TF_WAIT_POLL_S)
