"""``sahmr bag INPUT -o OUTPUT``: the node's code path on a recorded rosbag2, without ROS.

The input (MCAP or sqlite3, read with rosbags) is replayed in recording order through the node's
own callbacks (:class:`~sahmr_ros.ros.callbacks.NodeCallbacks` around the same
:class:`~sahmr_ros.ros.core.PerceptionCore`): the latched scene, the synchroniser of image /
camera_info / detections, the class and score filters, the conversions and the pipeline.
``T_map_camera`` comes from the bag's ``/tf`` and ``/tf_static`` through the callbacks'
:class:`~sahmr_ros.ros.sync.TransformBuffer`; as the node waits up to ``tf_timeout_s`` for TF, a
frame waits until the bag holds a transform at its stamp or the bag's clock has passed the stamp
by ``tf_timeout_s``. Unlike the node, no frame is dropped for being stale: offline there is time
for all of them.

The output is an MCAP bag with the node's output topics (same names and types, map frame, the
image stamps), readable by RViz (``ros2 bag play``) and Foxglove. ``copy_inputs`` adds the input
messages, so one file shows everything.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from sahmr_ros.constants import NS_PER_S
from sahmr_ros.errors import InputError
from sahmr_ros.ros.callbacks import NodeCallbacks
from sahmr_ros.ros.core import FrameInput, FrameOutput, NodeParams, PerceptionCore
from sahmr_ros.ros.messages import RosbagsFactory
from sahmr_ros.tracking import TrackingParams

__all__ = ["BagSummary", "run_bag", "check_bag_paths", "OUTPUT_TYPES", "latched_qos_profile"]

OUTPUT_TYPES = {  # NodeParams attribute -> message type of the node's outputs
    "meshes_topic": "visualization_msgs/msg/MarkerArray",
    "contacts_topic": "sensor_msgs/msg/PointCloud2",
    "humans_topic": "sahmr_ros/msg/HumanMeshArray",
    "diagnostics_topic": "diagnostic_msgs/msg/DiagnosticArray",
}
TF_TOPIC, TF_STATIC_TOPIC = "/tf", "/tf_static"


@dataclass
class BagSummary:
    """What one run did (printed by ``sahmr bag``)."""

    input: str
    output: str
    messages_read: int = 0
    frames: int = 0
    frames_processed: int = 0
    frames_failed: int = 0
    persons: int = 0
    tracks: int = 0
    sync_dropped: int = 0
    messages_skipped: int = 0
    image_messages: int = 0
    errors_by_kind: dict = field(default_factory=dict)
    first_errors: list = field(default_factory=list)
    wall_s: float = 0.0
    corrupt: str | None = None

    def lines(self) -> list[str]:
        out = [f"read {self.messages_read} messages from {self.input}",
               f"frames: {self.frames} synchronised, {self.frames_processed} processed, {self.frames_failed} failed; "
               f"{self.persons} persons in {self.tracks} tracks; {self.sync_dropped} input messages unmatched by "
               "the synchroniser; "
               f"{self.messages_skipped} undecodable messages skipped",
               f"wrote {self.output} in {self.wall_s:.1f} s"
               f" ({self.frames_processed / self.wall_s:.2f} frames/s)" if self.wall_s > 0 else f"wrote {self.output}"]
        if self.errors_by_kind:
            out.append("errors by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(self.errors_by_kind.items())))
        out += [f"  {line}" for line in self.first_errors]
        return out

    def no_frame_line(self) -> str | None:
        """Return one line saying that no frame could be processed, and the main reasons.

        None when some frame was processed, or when the bag holds no image message.
        """
        if self.frames_processed or not self.image_messages:
            return None
        reasons = [f"{kind} {n}" for kind, n in sorted(self.errors_by_kind.items(), key=lambda kv: -kv[1])[:3]]
        if self.messages_skipped:
            reasons.append(f"{self.messages_skipped} undecodable messages")
        if not self.frames:
            reasons.append("no image matched a camera_info and detections (stamps within slop_s, same topics?)")
        first = f" (first: {self.first_errors[0]})" if self.first_errors else ""
        return (f"no frame could be processed from {self.input}: {self.image_messages} image messages, "
                f"{self.frames} frames synchronised, 0 processed; main reasons: {', '.join(reasons)}{first}")


def latched_qos_profile():
    """RELIABLE + TRANSIENT_LOCAL, depth 1 (the scene's QoS), as a rosbags ``Qos``."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)


@dataclass
class _Topic:
    """One input connection: topic, type, its definition in the bag (if any), message count (if known)."""

    topic: str
    msgtype: str
    msgdef: str = ""
    idl: bool = False
    count: int = 0


class _Corrupt(Exception):
    """The storage failed while reading (the message names the cause)."""


def _guarded(items) -> Iterator:
    """Yield from ``items``; any failure of the storage while reading becomes one :class:`_Corrupt`."""
    iterator = iter(items)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - rosbags, mcap and sqlite raise many types on damage
            raise _Corrupt(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        yield item


class _RosbagsSource:
    """A readable rosbag2 (directory, .mcap or .db3) through rosbags."""

    def __init__(self, path: Path):
        from rosbags.rosbag2 import Reader

        self.reader = Reader(path)
        self.reader.open()
        self.topics = []
        for c in self.reader.connections:
            msgdef = c.msgdef.data if c.msgdef is not None else ""
            fmt = getattr(getattr(c.msgdef, "format", None), "name", "")
            self.topics.append(_Topic(c.topic, c.msgtype, msgdef or "", "IDL" in str(fmt).upper(), c.msgcount))

    def messages(self, topics: set[str]) -> Iterator[tuple[_Topic, int, bytes]]:
        by_id = {c.id: t for c, t in zip(self.reader.connections, self.topics)}
        wanted = [c for c in self.reader.connections if c.topic in topics]
        for conn, t_ns, raw in _guarded(self.reader.messages(connections=wanted)):
            yield by_id[conn.id], t_ns, raw

    def close(self) -> None:
        self.reader.close()


class _McapStreamSource:
    """An MCAP file read front to back, without its summary.

    A recording that was cut off (no footer) still yields every message up to the damage. Topics are
    only known as they appear.
    """

    def __init__(self, path: Path):
        from mcap.stream_reader import StreamReader

        files = sorted(path.glob("*.mcap")) if path.is_dir() else [path]
        if len(files) != 1:
            raise _Corrupt(f"expected one .mcap file, found {len(files)}")
        self._file = open(files[0], "rb")
        self._reader = StreamReader(self._file, validate_crcs=False)
        self.topics: list[_Topic] = []  # unknown up front

    def messages(self, topics: set[str]) -> Iterator[tuple[_Topic, int, bytes]]:
        from mcap.records import Channel, Message, Schema

        schemas, channels = {}, {}
        for record in _guarded(self._reader.records):
            if isinstance(record, Schema):
                schemas[record.id] = record
            elif isinstance(record, Channel):
                schema = schemas.get(record.schema_id)
                if schema is not None:
                    channels[record.id] = _Topic(record.topic, schema.name, schema.data.decode("utf-8", "replace"),
                                                 schema.encoding == "ros2idl")
            elif isinstance(record, Message) and record.channel_id in channels:
                topic = channels[record.channel_id]
                if topic.topic in topics:
                    yield topic, record.log_time, record.data

    def close(self) -> None:
        self._file.close()


def _open_source(path: Path, log: Callable[[str], None]):
    """Open a sound bag with rosbags, an MCAP whose summary is missing or damaged with the stream reader."""
    try:
        return _RosbagsSource(path)
    except Exception as exc:  # noqa: BLE001
        cause = f"{type(exc).__name__}: {exc}"
    is_mcap = path.suffix == ".mcap" or (path.is_dir() and any(path.glob("*.mcap")))
    if not is_mcap:
        raise InputError(f"{path}: not a readable rosbag2 (MCAP or sqlite3): {cause}")
    log(f"warning: {path}: {cause}; reading the MCAP front to back (a cut-off recording?)")
    try:
        return _McapStreamSource(path)
    except (OSError, _Corrupt) as exc:
        raise InputError(f"{path}: not a readable MCAP file: {exc}") from None


def _input_typestore(ts, topic: _Topic):
    """Return the type store to decode ``topic`` with.

    That is one built from the bag's own definition when the bag carries it (so a Foxy vision_msgs
    3.x recording decodes as 3.x), else ``ts``.
    """
    from rosbags.typesys import Stores, get_typestore, get_types_from_idl, get_types_from_msg

    if not topic.msgdef:
        return ts
    try:
        types = get_types_from_idl(topic.msgdef) if topic.idl else get_types_from_msg(topic.msgdef, topic.msgtype)
        own = get_typestore(Stores.EMPTY)
        own.register(types)
        return own if topic.msgtype in own.fielddefs else ts
    except Exception:  # noqa: BLE001 - an unparsable definition: fall back to the standard one
        return ts


def check_bag_paths(input_path: str | Path, output_path: str | Path) -> tuple[Path, Path]:
    """Check, before any work, that the input exists and that the output bag can be created.

    Creates the output's missing parent directories and probes that the bag directory itself can be
    made there (created and removed again: rosbags creates it).

    Raises:
        InputError: missing input; output exists, lies below a file, or is in a directory that cannot be
            written (permissions, read-only file system).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise InputError(f"{input_path}: input bag not found")
    if output_path.exists():
        raise InputError(f"{output_path}: output already exists; choose another -o or delete it")
    ancestor = next((a for a in output_path.absolute().parents if a.exists()), None)
    if ancestor is not None and not ancestor.is_dir():
        raise InputError(f"{output_path}: {ancestor} is a file, not a directory; choose an -o path in a directory")
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        output_path.mkdir()
        output_path.rmdir()
    except OSError as exc:
        raise InputError(f"{output_path}: cannot create the output bag ({exc.strerror or exc}"
                         f"{f': {exc.filename}' if exc.filename else ''}); choose an -o path in a writable "
                         "directory") from None
    return input_path, output_path


def run_bag(input_path: str | Path, output_path: str | Path, params: NodeParams, pipeline, *,
            copy_inputs: bool = False, distro: str = "jazzy", progress: bool = True,
            log: Callable[[str], None] = print, max_logged_errors: int = 10,
            tracking: TrackingParams | None = None,
            on_frame: Callable[[FrameOutput], None] | None = None) -> BagSummary:
    """Replay ``input_path`` through the node's code path and write its outputs to ``output_path``.

    Args:
        input_path: rosbag2 directory, ``.mcap`` or ``.db3`` file.
        output_path: MCAP bag directory to create (must not exist).
        params: the node's parameters (topics, frames, filters, slop, TF timeout...).
        pipeline: a :class:`~sahmr_ros.pipeline.Pipeline` (its scene may be preset: the bag's scene
            messages, if any, replace it).
        copy_inputs: also write every input message read (image, camera_info, detections, scene, TF).
        distro: standard message definitions, ``"jazzy"`` or ``"humble"``.
        progress: show a progress bar.
        log: where warning lines go (the first ``max_logged_errors`` errors).
        tracking: the node's ``tracking.*`` parameters (:class:`~sahmr_ros.tracking.TrackingParams`;
            default: their defaults).
        on_frame: called with every published :class:`~sahmr_ros.ros.core.FrameOutput` after it is
            written (its ``tracks`` hold both the raw and the smoothed estimates), e.g. for benchmarks.

    Returns:
        :class:`BagSummary`.

    Raises:
        InputError: missing input, an output that exists or cannot be created (:func:`check_bag_paths`),
            none of the input topics in the bag, or a truncated / corrupt bag (raised after writing what
            was processed).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    from sahmr_ros.ros.interfaces import make_typestore

    input_path, output_path = check_bag_paths(input_path, output_path)
    ts = make_typestore(distro)
    core = PerceptionCore(pipeline, params, RosbagsFactory(ts), tracking=tracking)
    summary = BagSummary(str(input_path), str(output_path))
    started = time.perf_counter()
    streams = {topic: stream for stream, topic in params.stream_topics().items()}  # topic -> stream
    wanted = {*streams, params.scene_topic, TF_TOPIC, TF_STATIC_TOPIC}
    source = _open_source(input_path, log)
    try:
        if source.topics:  # known up front (not for a cut-off MCAP)
            present = {t.topic for t in source.topics}
            missing = [t for t in streams if t not in present]
            if len(missing) == len(streams):
                raise InputError(f"{input_path}: none of the input topics {sorted(streams)} is in the bag (it has "
                                 f"{sorted(present)}); pass --image-topic / --camera-info-topic / --detections-topic")
            for t in missing:
                log(f"warning: {input_path} has no topic {t}: no frame can be synchronised")
            if params.scene_topic not in present and pipeline.scene is None:
                log(f"warning: {input_path} has no scene topic {params.scene_topic} and no --scene was given")

        with Writer(output_path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            outputs = {attr: writer.add_connection(getattr(params, attr), msgtype, typestore=ts)
                       for attr, msgtype in OUTPUT_TYPES.items()}
            copies: dict[str, Any] = {}
            stores: dict[str, Any] = {}  # topic -> type store its messages are decoded with

            def first_sight(topic: _Topic) -> None:
                stores[topic.topic] = _input_typestore(ts, topic)
                if copy_inputs:
                    latched = topic.topic in (params.scene_topic, TF_STATIC_TOPIC)
                    extra = {"offered_qos_profiles": [latched_qos_profile()]} if latched else {}
                    copies[topic.topic] = writer.add_connection(topic.topic, topic.msgtype,
                                                                typestore=stores[topic.topic], **extra)

            def write(attr: str, msg: Any, t_ns: int) -> None:
                if msg is not None:  # None: a diagnostics message that could not be built (logged)
                    writer.write(outputs[attr], t_ns, ts.serialize_cdr(msg, OUTPUT_TYPES[attr]))

            def note_error(line: str) -> None:
                if len(summary.first_errors) < max_logged_errors:
                    summary.first_errors.append(line)
                    log(f"warning: {line}")

            def emit(level: str, line: str) -> None:
                log(line) if level == "info" else note_error(line)

            def publish(out: FrameOutput) -> None:
                write("meshes_topic", out.markers, out.stamp_ns)
                write("contacts_topic", out.contacts, out.stamp_ns)
                write("humans_topic", out.humans, out.stamp_ns)
                if on_frame is not None:
                    on_frame(out)

            pending: collections.deque[FrameInput] = collections.deque()
            timeout_ns = int(params.tf_timeout_s * NS_PER_S)
            # the node's callbacks; frames wait in `pending` for their TF in bag time (see flush)
            callbacks = NodeCallbacks(core, publish, emit, submit=pending.append, log_period_s=0.0)
            tf = callbacks.tf

            def flush(now_ns: int | None) -> None:
                """Process the waiting frames whose TF is there or whose wait is over (all if now is None)."""
                while pending:
                    frame = pending[0]
                    ready = now_ns is None or now_ns >= frame.stamp_ns + timeout_ns or (
                        frame.camera_frame and tf.can_transform(params.map_frame, frame.camera_frame, frame.stamp_ns))
                    if not ready:
                        return
                    pending.popleft()
                    callbacks.work(frame)

            next_diag = None
            last_t = 0
            total = sum(t.count for t in source.topics if t.topic in wanted) or None
            bar = tqdm(total=total, unit="msg", desc="sahmr bag", disable=not progress, dynamic_ncols=True)
            try:
                for topic, t_ns, raw in source.messages(wanted):
                    summary.messages_read += 1
                    summary.image_messages += int(topic.topic == params.image_topic)
                    last_t = max(last_t, t_ns)
                    bar.update(1)
                    if topic.topic not in stores:
                        first_sight(topic)
                    if topic.topic in copies:
                        writer.write(copies[topic.topic], t_ns, raw)
                    try:
                        msg = stores[topic.topic].deserialize_cdr(raw, topic.msgtype)
                    except Exception as exc:  # noqa: BLE001 - one undecodable message is skipped
                        summary.messages_skipped += 1
                        note_error(f"{topic.topic}: message at {t_ns} ns is not a valid {topic.msgtype} ({exc}); "
                                   "skipped")
                        continue
                    if topic.topic in (TF_TOPIC, TF_STATIC_TOPIC):
                        callbacks.on_tf(msg, static=topic.topic == TF_STATIC_TOPIC)
                    elif topic.topic == params.scene_topic:
                        callbacks.on_scene(msg)
                    else:
                        callbacks.on_input(streams[topic.topic], msg)
                    flush(t_ns)
                    if next_diag is None or t_ns >= next_diag:
                        write("diagnostics_topic", callbacks.diagnostics_message(t_ns), t_ns)
                        next_diag = t_ns + int(max(params.diagnostics_period_s, 1e-3) * NS_PER_S)
                    bar.set_postfix(frames=core.counts["frames_processed"], persons=core.counts["persons"],
                                    refresh=False)
            except _Corrupt as exc:
                summary.corrupt = str(exc)
            finally:
                bar.close()
            flush(None)
            write("diagnostics_topic", callbacks.diagnostics_message(last_t), last_t)
    finally:
        source.close()

    summary.frames = core.counts["frames_synchronised"]
    summary.frames_processed = core.counts["frames_processed"]
    summary.frames_failed = core.counts["frames_failed"]
    summary.persons = core.counts["persons"]
    summary.tracks = core.counts["tracks_started"]
    summary.sync_dropped = sum(core.sync.dropped)
    summary.errors_by_kind = dict(core.errors_by_kind)
    summary.wall_s = time.perf_counter() - started
    if summary.corrupt:
        raise InputError(f"{input_path}: the bag is truncated or corrupt after {summary.messages_read} messages "
                         f"({summary.corrupt}); wrote the {summary.frames_processed} frames processed so far "
                         f"to {output_path}")
    return summary
