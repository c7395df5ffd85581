"""The node's per-frame logic, shared by the rclpy node and ``sahmr bag`` (imports no ROS).

Both shells feed messages in and publish (or write) what comes out; everything between is here:

1. :meth:`PerceptionCore.on_scene` latches the map-frame scene cloud (a new one replaces the old);
2. :meth:`PerceptionCore.add` takes an image, camera_info or detections message and returns the
   frames the synchroniser completes (same stamps within ``slop_s``);
3. :meth:`PerceptionCore.handle` looks up ``T_map_camera`` at the image stamp through the lookup
   the shell provides (tf2 in the node, a :class:`~sahmr_ros.ros.sync.TransformBuffer` fed from
   ``/tf`` in the bag tool), converts the messages, filters detections by class and score, runs the
   pipeline, tracks and smooths the people over frames (:class:`~sahmr_ros.tracking.PeopleTracker`,
   time from the image stamps), and builds the output messages in the map frame with the image's
   stamp: the smoothed or the raw meshes (``tracking.publish_smoothed``), each with its track id
   and a marker id and colour stable per track. An expected failure (bad message, no TF, no scene)
   is recorded for diagnostics and returned, never raised, so one bad frame never stops the stream.

:data:`PARAMETERS` is the one table of node parameters: the node declares them (with these
descriptions), ``config/params.yaml`` holds their defaults (a test keeps the two equal), and the bag
tool takes the relevant ones as options. The tracking parameters are the nested ``tracking.*``
parameters of :class:`~sahmr_ros.tracking.TrackingParams` (:data:`~sahmr_ros.tracking.TRACKING_PARAMETERS`).
"""

from __future__ import annotations

import collections
import threading
import time
import traceback
from dataclasses import dataclass, field, fields
from typing import Any, Callable, NamedTuple

import numpy as np

from sahmr_ros import constants as C
from sahmr_ros.body.mesh_levels import MESH_LEVELS, full_mesh_level
from sahmr_ros.errors import InputError, MessageError, SahmrError
from sahmr_ros.ros.conversions import (
    camera_info_to_intrinsics,
    compressed_image_to_rgb,
    contacts_to_pointcloud2,
    detections_to_boxes,
    diagnostics,
    header_frame_id,
    human_mesh_array,
    image_to_rgb,
    pointcloud2_to_xyz,
)
from sahmr_ros.ros.mesh_output import MeshMarkerSchedule, build_mesh_markers
from sahmr_ros.ros.messages import MessageFactory, ns_to_time
from sahmr_ros.ros.sync import ApproximateSynchronizer, TransformUnavailable, stamp_to_ns
from sahmr_ros.tracking import PeopleTracker, TrackingParams

__all__ = [
    "PARAMETERS",
    "NodeParams",
    "FrameInput",
    "FrameOutput",
    "PerceptionCore",
    "LatestFrameWorker",
    "STREAMS",
    "build_pipeline",
]

STREAMS = ("image", "camera_info", "detections")  # synchroniser stream order
DISTORTION_RULES = ("undistort", "rectified", "refuse")


@dataclass(frozen=True)
class NodeParams:
    """Every parameter of ``sahmr_node`` (defaults: ``config/params.yaml``). See :data:`PARAMETERS`."""

    image_topic: str = "/camera/image_raw"
    compressed: bool = False
    camera_info_topic: str = "/camera/camera_info"
    detections_topic: str = "/detections"
    scene_topic: str = "/scene/points"
    meshes_topic: str = "/sahmr/meshes"
    contacts_topic: str = "/sahmr/contacts"
    humans_topic: str = "/sahmr/humans"
    diagnostics_topic: str = "/diagnostics"
    map_frame: str = "map"
    checkpoint: str = ""
    model_dir: str = "models"
    demo: bool = False
    device: str = "auto"
    precision: str = "fp32"
    score_threshold: float = 0.5
    class_ids: tuple[str, ...] = ("person",)
    max_persons: int = 8
    slop_s: float = 0.1
    queue_size: int = 10
    tf_timeout_s: float = 0.2
    image_qos: str = "sensor_data"
    distortion: str = "undistort"
    marker_lifetime_s: float = 1.0
    mesh_level: int = C.NUM_VERTICES
    mesh_every_n: int = 1
    diagnostics_period_s: float = 1.0

    def __post_init__(self):
        if self.distortion not in DISTORTION_RULES:
            raise InputError(f"distortion: {self.distortion!r} unknown; choose one of {', '.join(DISTORTION_RULES)}")
        if self.precision not in C.PRECISIONS:
            raise InputError(f"precision: {self.precision!r} unknown; choose one of {', '.join(C.PRECISIONS)}")
        if self.image_qos not in ("sensor_data", "reliable"):
            raise InputError(f"image_qos: {self.image_qos!r} unknown; choose sensor_data or reliable")
        for name in ("slop_s", "tf_timeout_s", "marker_lifetime_s", "diagnostics_period_s"):
            if not np.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise InputError(f"{name}: must be a finite number >= 0, got {getattr(self, name)}")
        if self.max_persons < 1 or self.queue_size < 1:
            raise InputError("max_persons and queue_size: must be >= 1")
        if self.mesh_level not in MESH_LEVELS:
            raise InputError(f"mesh_level: {self.mesh_level!r} unknown; choose {' or '.join(map(str, MESH_LEVELS))} "
                             "(vertices of the published mesh markers)")
        MeshMarkerSchedule(self.mesh_every_n)  # checks it: an integer >= 1
        object.__setattr__(self, "class_ids", tuple(str(c) for c in self.class_ids))

    def stream_topics(self) -> dict[str, str]:
        """Return the input topic of each synchronised stream, in :data:`STREAMS` order."""
        return {"image": self.image_topic, "camera_info": self.camera_info_topic,
                "detections": self.detections_topic}

    @classmethod
    def from_mapping(cls, values: dict) -> "NodeParams":
        """From a parameter dict (unknown keys refused, list values become tuples)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"parameters: unknown {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


PARAMETERS: dict[str, str] = {
    "image_topic": "sensor_msgs/Image input (sensor_msgs/CompressedImage when compressed is true)",
    "compressed": "subscribe to a CompressedImage (jpeg/png) instead of a raw Image",
    "camera_info_topic": "sensor_msgs/CameraInfo of the image",
    "detections_topic": "vision_msgs/Detection2DArray person boxes in image pixels",
    "scene_topic": "latched (RELIABLE + TRANSIENT_LOCAL) sensor_msgs/PointCloud2 of the room, map frame",
    "meshes_topic": "visualization_msgs/MarkerArray output: one TRIANGLE_LIST mesh per person",
    "contacts_topic": "sensor_msgs/PointCloud2 output: contact points, x y z label rgb",
    "humans_topic": "sahmr_ros/HumanMeshArray output",
    "diagnostics_topic": "diagnostic_msgs/DiagnosticArray output",
    "map_frame": "frame of the scene and of every output",
    "checkpoint": "sahmr_ros checkpoint (.pt, see `sahmr import-checkpoint`); required unless demo is true",
    "model_dir": "directory with SMPL and the official body files (models/README.md)",
    "demo": "use the embedded default (synthetic body, the small-preset weights shipped in sahmr_ros/weights/, "
            "trained on synthetic data: see its MODEL_CARD.md) instead of a checkpoint",
    "device": "auto, cpu, cuda or cuda:N",
    "precision": "fp32, fp16 / bf16 autocast (geometry stays float32; CPU or CUDA), or auto: bf16 on CPUs with "
                 "AVX512-BF16 / AMX, else fp32",
    "score_threshold": "detections scoring below this are ignored",
    "class_ids": "detection classes that are people (strings, e.g. person or 0); empty: every class",
    "max_persons": "at most this many people per frame (highest scores first)",
    "slop_s": "image, camera_info and detections stamps may differ by this much (seconds)",
    "queue_size": "messages kept per input stream while waiting for the others",
    "tf_timeout_s": "how long to wait for T_map_camera at the image stamp (seconds)",
    "image_qos": "sensor_data (best effort) or reliable, for image, camera_info and detections",
    "distortion": "non-zero camera_info.d: undistort the image, rectified (the image is rectified: use P), "
                  "or refuse",
    "marker_lifetime_s": "lifetime of the mesh markers (0: until replaced)",
    "mesh_level": "vertices of the published mesh markers: 6890 (the full body) or 1723 (the network's level, "
                  "a quarter of the points and bytes); HumanMeshArray always holds 6890",
    "mesh_every_n": "publish each person's mesh marker on every Nth frame of its track (1: every frame); keep "
                    "marker_lifetime_s above N frame periods (or 0)",
    "diagnostics_period_s": "diagnostics publishing period (seconds)",
}


def build_pipeline(params: NodeParams, demo_dir: str | None = None):
    """Build the :class:`~sahmr_ros.pipeline.Pipeline` the parameters ask for.

    ``checkpoint`` set: that checkpoint with the body files of ``model_dir``. Otherwise ``demo``
    must be true: the embedded default (synthetic body written to ``demo_dir``, or to a temporary
    directory removed once the pipeline has loaded it; the small-preset weights shipped in
    ``sahmr_ros/weights/``, :meth:`~sahmr_ros.pipeline.Pipeline.embedded_default`).

    Raises:
        CheckpointError: neither a checkpoint nor demo; unreadable checkpoint; demo with the shipped
            weights missing or corrupt (the message says how to restore them).
        ModelFilesMissingError: body files missing from ``model_dir`` (each named, with its source).
    """
    from sahmr_ros.errors import CheckpointError
    from sahmr_ros.pipeline import Pipeline, PipelineConfig

    config = PipelineConfig(device=params.device, precision=params.precision, max_persons=params.max_persons)
    if params.checkpoint:
        return Pipeline.from_model_dir(params.model_dir, checkpoint=params.checkpoint, config=config)
    if not params.demo:
        raise CheckpointError("no checkpoint configured: set checkpoint:=/path/to/model.pt (a sahmr_ros checkpoint, "
                              "see models/README.md), or demo:=true for the embedded default (weights shipped in "
                              "sahmr_ros/weights/, trained on synthetic data)")
    from sahmr_ros.body.synthetic import temporary_synthetic_model_dir, write_synthetic_model_dir

    if demo_dir:
        return Pipeline.embedded_default(write_synthetic_model_dir(demo_dir), config)
    with temporary_synthetic_model_dir("sahmr_demo_model_") as model_dir:
        return Pipeline.embedded_default(model_dir, config)


class FrameInput(NamedTuple):
    """One synchronised frame: the three messages and the image stamp (ns)."""

    image: Any
    camera_info: Any
    detections: Any
    stamp_ns: int

    @property
    def camera_frame(self) -> str:
        """The image's frame id without a leading ``/`` (tf2 style); empty when missing or not text."""
        try:
            return header_frame_id(self.image, "image.header.frame_id")
        except MessageError:
            return ""


@dataclass
class FrameOutput:
    """What one frame produced.

    Attributes:
        stamp_ns: the image stamp (every output carries it).
        markers, contacts, humans: the output messages (map frame), or None after an error.
        result: the pipeline's :class:`~sahmr_ros.pipeline.FrameResult` (None after an error).
        ids: detection id of each person of ``result``.
        tracks: :class:`~sahmr_ros.tracking.TrackedPerson` of each person of ``result`` (track id,
            marker id, raw and smoothed estimate; the messages hold the one ``publish_smoothed`` chose).
        error: the recorded error line, or None.
        error_kind: the kind the error was counted under (``tf.too_old``, ``image``, ``internal``...).
        traceback: the traceback of an unexpected (``internal``) error, for the log.
        warnings: lines worth a (throttled) log: skipped boxes, scene outside the view.
    """

    stamp_ns: int
    markers: Any = None
    contacts: Any = None
    humans: Any = None
    result: Any = None
    ids: list = field(default_factory=list)
    tracks: list = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    traceback: str | None = None
    warnings: list = field(default_factory=list)


Lookup = Callable[[str, str, int], np.ndarray]  # (target, source, stamp_ns) -> T_target_source (4, 4)


class PerceptionCore:
    """Messages in, output messages out (module docstring).

    Args:
        pipeline: a :class:`~sahmr_ros.pipeline.Pipeline`.
        params: :class:`NodeParams`.
        factory: message backend for the outputs (rclpy or rosbags).
        clock: monotonic seconds (for rates).
        tracking: :class:`~sahmr_ros.tracking.TrackingParams` (default: its defaults).

    Thread safety: :meth:`add`, :meth:`on_scene` and :meth:`status` run in the shell's callbacks,
    :meth:`handle` in its worker (the only user of the tracker). No lock is held while the pipeline
    runs, so callbacks never wait for a frame: the pipeline swaps a new scene in atomically, and the
    statistics are updated under a lock held only for the update.
    """

    def __init__(self, pipeline, params: NodeParams, factory: MessageFactory,
                 clock: Callable[[], float] = time.monotonic, tracking: TrackingParams | None = None):
        self.pipeline = pipeline
        self.params = params
        self.factory = factory
        self.clock = clock
        self.tracking = tracking if tracking is not None else TrackingParams()
        self.tracker = PeopleTracker(self.tracking)
        levels = getattr(pipeline, "mesh_levels", None) or {C.NUM_VERTICES: full_mesh_level(pipeline.faces)}
        if params.mesh_level not in levels:
            raise InputError(f"mesh_level: {params.mesh_level} is not available with this body model (has "
                             f"{sorted(levels)}); use {C.NUM_VERTICES}")
        self.mesh_level = levels[params.mesh_level]
        self.mesh_schedule = MeshMarkerSchedule(params.mesh_every_n)
        self.sync = ApproximateSynchronizer(len(STREAMS), params.slop_s, params.queue_size)
        self._lock = threading.Lock()
        self._done_times: collections.deque = collections.deque(maxlen=50)
        self._stage_ms: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=50))
        self.counts: collections.Counter = collections.Counter()
        self.errors_by_kind: collections.Counter = collections.Counter()
        self.last_error = ""
        self.persons_last_frame = 0

    # -- inputs -------------------------------------------------------------------------------------
    def on_scene(self, msg: Any) -> str:
        """Latch a ``sensor_msgs/PointCloud2`` scene (map frame); returns a one-line summary.

        Raises:
            MessageError: malformed cloud, wrong frame, no finite point (the old scene is kept).
        """
        topic = self.params.scene_topic
        frame = header_frame_id(msg, "point_cloud.header.frame_id", topic)
        if frame and frame != self.params.map_frame:
            raise MessageError("point_cloud.header.frame_id", f"is {frame!r}, expected the map frame "
                               f"{self.params.map_frame!r}: publish the scene in the map frame or set map_frame",
                               topic)
        points = pointcloud2_to_xyz(msg, topic=topic)
        if len(points) == 0:
            raise MessageError("point_cloud.data", "holds no finite point; the previous scene is kept", topic)
        if not (np.abs(points) <= C.MAX_COORDINATE_M).all(axis=1).any():
            raise MessageError("point_cloud.data", f"none of its {len(points)} points lies within "
                               f"{C.MAX_COORDINATE_M:g} m of the map origin; re-centre the map (the previous "
                               "scene is kept)", topic)
        scene = self.pipeline.set_scene(points)  # built, then swapped in: a frame in progress keeps its scene
        with self._lock:
            self.counts["scenes"] += 1
        far = f", {scene.num_dropped_out_of_range} beyond {C.MAX_COORDINATE_M:g} m dropped" \
            if scene.num_dropped_out_of_range else ""
        return (f"scene latched: {len(points)} points ({scene.num_dropped_nonfinite} non-finite dropped{far}) -> "
                f"{len(scene)} voxels of {scene.pitch or 0:.2f} m in frame {self.params.map_frame!r}")

    def add(self, stream: str, msg: Any) -> list[FrameInput]:
        """Feed one image / camera_info / detections message; returns the frames it completes.

        A stamp more than ``constants.TIME_JUMP_BACK_S`` behind the newest of its stream resets the
        synchroniser first (``sync.time_jumps`` counts it; the shell then clears its TF history).

        Raises:
            MessageError: the message has no valid ``header.stamp``.
        """
        index = STREAMS.index(stream)
        topic = self.params.stream_topics()[stream]
        try:
            stamp = stamp_to_ns(msg.header.stamp)
        except (AttributeError, InputError) as exc:
            raise MessageError(f"{stream}.header.stamp", f"unreadable ({exc})", topic) from None
        self.counts[f"{stream}_received"] += 1
        frames = [FrameInput(*group, stamp_ns=stamp_to_ns(group[0].header.stamp))
                  for group in self.sync.add(index, stamp, msg)]
        self.counts["frames_synchronised"] += len(frames)
        return frames

    # -- one frame ----------------------------------------------------------------------------------
    def handle(self, frame: FrameInput, lookup: Lookup) -> FrameOutput:
        """Process one frame; never raises.

        A failure is recorded and returned in ``FrameOutput.error`` (and ``error_kind``): an expected
        one (bad message, TF too old or in the future, no scene) by its kind; anything else as
        ``internal``, with its traceback in ``FrameOutput.traceback``. Either way it costs this frame
        only.
        """
        out = FrameOutput(frame.stamp_ns)
        try:
            self._process(frame, lookup, out)
            return out
        except TransformUnavailable as exc:
            kind, line = f"tf.{exc.reason}", f"[tf] {exc}"
        except MessageError as exc:
            kind, line = exc.field.split(".")[0].split("[")[0], str(exc)
        except SahmrError as exc:
            kind, line = "input", str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen input costs this frame only
            kind, line = "internal", f"unexpected error while processing a frame: {type(exc).__name__}: {exc}"
            out.traceback = "".join(traceback.format_exception(exc))
        out.markers = out.contacts = out.humans = out.result = None
        out.error_kind, out.error = kind, self.record_error(kind, line, frame=True)
        return out

    def _process(self, frame: FrameInput, lookup: Lookup, out: FrameOutput) -> None:
        p = self.params
        image_frame = header_frame_id(frame.image, "image.header.frame_id", p.image_topic)
        if not image_frame:
            raise MessageError("image.header.frame_id", "is empty; the camera's optical frame is needed for TF",
                               p.image_topic)
        det_frame = header_frame_id(frame.detections, "detections.header.frame_id", p.detections_topic)
        if det_frame and det_frame != image_frame:
            raise MessageError("detections.header.frame_id", f"is {det_frame!r} but the image's is {image_frame!r}; "
                               "detections must be boxes in this image", p.detections_topic)
        if self.pipeline.scene is None:
            raise MessageError("scene", f"no scene received yet on {p.scene_topic} (latched PointCloud2 in "
                               f"{p.map_frame!r}); start `sahmr_scene_publisher` or your map server", p.scene_topic)
        dets = detections_to_boxes(frame.detections, p.class_ids, p.score_threshold, topic=p.detections_topic)
        out.warnings += [f"detection {i} skipped: {reason}" for i, reason in dets.skipped]
        if hasattr(frame.image, "format") and not hasattr(frame.image, "encoding"):
            rgb = compressed_image_to_rgb(frame.image, topic=p.image_topic)
        else:
            rgb = image_to_rgb(frame.image, topic=p.image_topic)
        K, distorted = self._intrinsics(frame.camera_info, rgb)
        if distorted is not None:
            from sahmr_ros.io import undistort_image

            rgb, K = undistort_image(rgb, distorted)
        T_map_camera = lookup(p.map_frame, image_frame, frame.stamp_ns)
        result = self.pipeline.process(rgb, K, T_map_camera, dets.boxes, dets.scores)
        out.result = result
        out.ids = [dets.ids[person.box_index] for person in result.persons]
        out.warnings += [f"detection {dets.ids[s.box_index] or dets.indices[s.box_index]} skipped: {s.reason}"
                         for s in result.skipped]
        if result.persons and all(C.FLAG_NO_SCENE_POINTS in person.flags for person in result.persons):
            out.warnings.append(f"scene outside the camera's view: no scene point near any person (is "
                                f"{p.scene_topic} in frame {p.map_frame!r} and TF right?)")
            self.errors_by_kind["scene_outside_view"] += 1
        tracked = self.tracker.update(frame.stamp_ns, result.persons, out.ids)
        out.tracks = tracked.persons
        if tracked.reset:
            self.mesh_schedule.reset()
            out.warnings.append(f"tracking: the image stamps jumped {tracked.reset.rsplit('_', 1)[-1]} (more than "
                                f"tracking.time_jump_s back or tracking.track_timeout_s forward): every track restarts")
        persons = [t.chosen(self.tracking.publish_smoothed) for t in tracked.persons]
        header = self.factory.make("std_msgs/msg/Header", stamp=ns_to_time(self.factory, frame.stamp_ns),
                                   frame_id=p.map_frame)
        out.markers = build_mesh_markers(self.factory, header, persons, self.mesh_level, self.mesh_schedule,
                                         lifetime_s=p.marker_lifetime_s, ids=out.ids,
                                         marker_ids=[t.marker_id for t in tracked.persons])
        out.contacts = contacts_to_pointcloud2(self.factory, header, persons)
        out.humans = human_mesh_array(self.factory, header, persons, ids=out.ids,
                                      track_ids=[t.track_id for t in tracked.persons])
        self._record_success(result, len(dets.skipped), tracked)

    def _intrinsics(self, camera_info: Any, rgb: np.ndarray):
        """Return ``(K, camera)`` for ``rgb`` under the distortion rule.

        ``camera`` is the :class:`sahmr_ros.io.Camera` to undistort the image with, or None when it
        needs no undistortion.
        """
        p = self.params
        intr = camera_info_to_intrinsics(camera_info, topic=p.camera_info_topic)
        height, width = rgb.shape[:2]
        for name, value, actual in (("width", intr.width, width), ("height", intr.height, height)):
            if value and value != actual:
                raise MessageError(f"camera_info.{name}", f"is {value} but the image is {width}x{height}; "
                                   "publish the camera_info of this image resolution", p.camera_info_topic)
        if not np.any(intr.D != 0):
            return intr.K, None
        if p.distortion == "rectified":
            if intr.P is None:
                raise MessageError("camera_info.p", "distortion:=rectified needs a valid 3x4 projection p",
                                   p.camera_info_topic)
            return intr.P[:, :3].copy(), None
        if p.distortion == "refuse":
            raise MessageError("camera_info.d", f"non-zero {intr.distortion_model or 'unnamed'} distortion "
                               f"({intr.D.size} coefficients); publish the rectified image with "
                               "distortion:=rectified, or set distortion:=undistort", p.camera_info_topic)
        from sahmr_ros.io import Camera, normalise_distortion

        model, coeffs = normalise_distortion(
            intr.distortion_model, intr.D, "camera_info.d", topic=p.camera_info_topic,
            fix="publish the camera_info of one of these models, or the rectified image with "
                "distortion:=rectified")
        return intr.K, Camera(intr.K, coeffs, width, height, model, source=p.camera_info_topic)

    # -- bookkeeping --------------------------------------------------------------------------------
    def _record_success(self, result, detections_skipped: int = 0, tracked=None) -> None:
        with self._lock:
            if tracked is not None:
                self.counts["tracks_started"] += len(tracked.born)
                self.counts["tracking_resets"] += int(bool(tracked.reset))
                self.counts["tracking_stale_frames"] += int(tracked.stale)
                self.counts["tracking_root_outliers"] += tracked.root_outliers
            self.counts["frames_processed"] += 1
            self.counts["persons"] += len(result.persons)
            self.counts["boxes_skipped"] += len(result.skipped) + detections_skipped
            self.persons_last_frame = len(result.persons)
            self._done_times.append(self.clock())
            for stage, ms in result.timings_ms.items():
                self._stage_ms[stage].append(ms)

    def record_error(self, kind: str, line: str, frame: bool = False) -> str:
        """Count an error of ``kind`` and keep it as the last error.

        ``kind``: ``image``, ``camera_info``, ``detections``, ``scene``, ``tf`` (a /tf message),
        ``tf.too_old`` / ``tf.future`` / ``tf.unknown_frame`` / ``tf.not_connected`` (a lookup),
        ``internal``...; ``frame``: the error cost a synchronised frame.
        """
        with self._lock:
            self.counts["frames_failed"] += int(frame)
            self.errors_by_kind[kind] += 1
            self.last_error = line
        return line

    def rate_hz(self) -> float:
        """Return the processed frames per second over the last (up to) 50 frames."""
        times = list(self._done_times)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def status(self, dropped_stale: int = 0) -> tuple[int, str, dict]:
        """``(level, message, values)`` for diagnostics (level 0 OK, 1 WARN, 2 ERROR)."""
        with self._lock:
            values = {
                "rate_hz": self.rate_hz(),
                "frames_processed": self.counts["frames_processed"],
                "frames_failed": self.counts["frames_failed"],
                "frames_dropped_stale": dropped_stale,
                "sync_dropped": sum(self.sync.dropped),
                "persons_last_frame": self.persons_last_frame,
                "persons_total": self.counts["persons"],
                "boxes_skipped": self.counts["boxes_skipped"],
                "tracks_active": self.tracker.active_tracks,
                "tracks_started": self.counts["tracks_started"],
                "tracking_resets": self.counts["tracking_resets"],
                "tracking_stale_frames": self.counts["tracking_stale_frames"],
                "tracking_root_outliers": self.counts["tracking_root_outliers"],
                "published": "smoothed" if self.tracking.publish_smoothed and self.tracking.smoothing else "raw",
                "scene_points": len(self.pipeline.scene) if self.pipeline.scene is not None else 0,
                "weights": self.pipeline.weights_description,
                "device": str(self.pipeline.device),
                "last_error": self.last_error or "none",
            }
            values.update({f"errors.{k}": n for k, n in sorted(self.errors_by_kind.items())})
            values.update({f"latency_ms.{k}": float(np.mean(v)) for k, v in self._stage_ms.items() if v})
        if self.pipeline.scene is None:
            return 1, f"waiting for the scene on {self.params.scene_topic}", values
        if self.last_error and self.counts["frames_processed"] == 0:
            return 2, f"no frame processed yet; last error: {self.last_error}", values
        if self.last_error:
            return 1, f"{values['frames_processed']} frames processed, {values['frames_failed']} failed", values
        return 0, f"{values['frames_processed']} frames processed at {values['rate_hz']:.1f} Hz", values

    def diagnostics_message(self, stamp_ns: int, dropped_stale: int = 0) -> Any:
        """``diagnostic_msgs/DiagnosticArray`` of :meth:`status`."""
        level, message, values = self.status(dropped_stale)
        return diagnostics(self.factory, stamp_ns, level, message, values)


class LatestFrameWorker:
    """A worker thread with a one-slot queue: a new item replaces a pending one (counted as dropped).

    Callbacks :meth:`submit` and return at once; ``handler(item)`` runs in the thread, one at a time,
    always on the newest item. Exceptions of ``handler`` go to ``on_error`` and the thread goes on.
    """

    def __init__(self, handler: Callable[[Any], None], on_error: Callable[[BaseException], None],
                 name: str = "sahmr-worker"):
        self._handler = handler
        self._on_error = on_error
        self._cond = threading.Condition()
        self._pending: Any = None
        self._has_pending = False
        self._stopped = False
        self.dropped = 0
        self.handled = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        """Queue ``item``; returns True when it replaced (dropped) an item not yet started."""
        with self._cond:
            replaced = self._has_pending
            if replaced:
                self.dropped += 1
            self._pending, self._has_pending = item, True
            self._cond.notify()
        return replaced

    def idle(self) -> bool:
        """Tell whether nothing is pending or running."""
        with self._cond:
            return not self._has_pending and not self._busy

    _busy = False

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._has_pending and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                item, self._pending, self._has_pending = self._pending, None, False
                self._busy = True
            try:
                self._handler(item)
            except BaseException as exc:  # noqa: BLE001 - one bad frame must not end the worker
                self._on_error(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self.handled += 1
