"""The rosbag2 layout ``sahmr eval --bag`` reads: a data split as recorded input bags, and their outputs.

Layout inside a data directory (``sahmr synth`` writes it for the test split)::

    DIR/bags/<split>/index.json          which sample each frame is: {"format": "sahmr_ros.eval_bags",
                                         "format_version": 1, "split": ..., "frames": [{"bag": NAME,
                                         "stamp_ns": INT, "key": SAMPLE_KEY}, ...]}
    DIR/bags/<split>/<NAME>/             one rosbag2 (MCAP) per bag, e.g. one per scene

Each bag holds what a robot records, on the node's default topics (:class:`~sahmr_ros.ros.core.NodeParams`):

* ``/scene/points``: the scene's cloud (:attr:`Scene.cloud <sahmr_ros.data.sample.Scene.cloud>`, float32,
  exactly as stored), latched, frame ``map``, once at the start;
* ``/tf``: ``map -> camera_optical_frame`` (``T_map_camera``) stamped at each frame's stamp;
* ``/camera/image_raw`` (rgb8), ``/camera/camera_info`` (K, the sample's distortion; plumb_bob zeros when
  none) and ``/detections`` (vision_msgs 4.x: the ground-truth boxes in person order, class
  ``person``, score 1.0, ids ``"0"``, ``"1"``, ... for single frames; for sequences no ids, so that the
  node's own tracker assigns the tracks, or the ground-truth track ids as a tracking detector would
  give them), all stamped with the frame's stamp.

Frame stamps are unique within a bag; ``index.json`` maps ``(bag, stamp_ns)`` to the sample key.
:class:`EvalBagWriter` writes this layout; :func:`read_humans` reads the node's ``HumanMeshArray``
outputs back. No ROS installation is needed (rosbags); nothing here is imported by
``sahmr_ros.evaluation`` at module level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError

__all__ = [
    "BAGS_DIR",
    "CAMERA_FRAME",
    "INDEX_NAME",
    "BagFrame",
    "BagHuman",
    "EvalBagWriter",
    "bag_split_dir",
    "read_bag_index",
    "read_humans",
]

BAGS_DIR = "bags"
INDEX_NAME = "index.json"
INDEX_FORMAT = "sahmr_ros.eval_bags"
INDEX_VERSION = 1
CAMERA_FRAME = "camera_optical_frame"
START_NS = 1_700_000_000 * C.NS_PER_S
FRAME_PERIOD_NS = 100_000_000  # 10 Hz
DETECTION_IDS = ("index", "none", "track")  # what write_bag puts in Detection2D.id


def bag_split_dir(root: str | Path, split: str) -> Path:
    """``DIR/bags/<split>``: where the split's bags and ``index.json`` live."""
    return Path(root) / BAGS_DIR / split


@dataclass(frozen=True)
class BagFrame:
    """One frame of the index: bag name, stamp, sample key."""

    bag: str
    stamp_ns: int
    key: str


def read_bag_index(split_dir: str | Path) -> list[BagFrame]:
    """Read ``index.json`` of a split's bag directory.

    Raises:
        InputError: missing or malformed index, a listed bag that is missing, or a duplicate (bag, stamp).
    """
    split_dir = Path(split_dir)
    path = split_dir / INDEX_NAME
    if not path.is_file():
        raise InputError(f"{path}: not found; the bags of a split need their index (see "
                         "sahmr_ros.evaluation.bags: which sample each frame is)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != INDEX_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {INDEX_FORMAT!r}")
        if data.get("format_version") != INDEX_VERSION:
            raise ValueError(f"format_version {data.get('format_version')!r}, this sahmr_ros reads {INDEX_VERSION}")
        frames = [BagFrame(str(f["bag"]), int(f["stamp_ns"]), str(f["key"])) for f in data["frames"]]
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid bag index ({type(exc).__name__}: {exc})") from None
    seen = set()
    for f in frames:
        if (f.bag, f.stamp_ns) in seen:
            raise InputError(f"{path}: frame ({f.bag!r}, {f.stamp_ns}) is listed twice")
        seen.add((f.bag, f.stamp_ns))
        if not (split_dir / f.bag).exists():
            raise InputError(f"{path}: lists bag {f.bag!r}, which is not in {split_dir}")
    return frames


class EvalBagWriter:
    """Write samples of one split as rosbag2 files plus ``index.json`` (the module's layout).

    Use as a context manager; :meth:`write_bag` writes one bag (one scene, its frames in order) and
    the index is written on close.

    Args:
        root: the data directory; bags go to ``root/bags/<split>/``.
        split: the split's name.
        distro: message definitions, ``"jazzy"`` or ``"humble"``.
    """

    def __init__(self, root: str | Path, split: str, distro: str = "jazzy"):
        self.dir = bag_split_dir(root, split)
        if (self.dir / INDEX_NAME).exists():
            raise InputError(f"{self.dir / INDEX_NAME}: already exists; write into a new directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.split, self.distro = split, distro
        self.frames: list[BagFrame] = []

    def __enter__(self) -> "EvalBagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def write_bag(self, name: str, scene, samples: Iterable, start_ns: int = START_NS,
                  period_ns: int = FRAME_PERIOD_NS, detection_ids: str = "index") -> Path:
        """Write one bag of ``samples`` (all of ``scene``), frame ``i`` stamped ``start_ns + (i + 1) * period_ns``.

        Args:
            name: the bag's directory name under ``bags/<split>/`` ([A-Za-z0-9_-]).
            scene: the :class:`~sahmr_ros.data.sample.Scene` the samples look at.
            samples: :class:`~sahmr_ros.data.sample.Sample` objects, in time order.
            period_ns: time between frames (a sequence's ``1e9 / fps``).
            detection_ids: ``Detection2D.id`` of each box: ``"index"`` (``"0"``, ``"1"``, ... in person
                order), ``"none"`` (``""``: a detector without tracking) or ``"track"`` (the person's
                ground-truth ``track_id``, as a tracking detector would give it).

        Returns:
            The bag's path.

        Raises:
            InputError: unknown ``detection_ids``, a period <= 0, a sample of another scene.
        """
        from rosbags.rosbag2 import StoragePlugin, Writer

        from sahmr_ros.data.sample import check_key
        from sahmr_ros.ros.bag import latched_qos_profile
        from sahmr_ros.ros.conversions import (
            boxes_to_detections,
            intrinsics_to_camera_info,
            matrix_to_transform,
            rgb_to_image,
            xyz_to_pointcloud2,
        )
        from sahmr_ros.ros.core import NodeParams
        from sahmr_ros.ros.interfaces import DETECTION_2D_ARRAY, make_typestore
        from sahmr_ros.ros.messages import RosbagsFactory, ns_to_time

        check_key(name, "bag name")
        if detection_ids not in DETECTION_IDS:
            raise InputError(f"detection_ids: {detection_ids!r} unknown; choose one of {', '.join(DETECTION_IDS)}")
        if int(period_ns) <= 0:
            raise InputError(f"period_ns: must be > 0, got {period_ns}")
        params = NodeParams()
        ts = make_typestore(self.distro)
        f = RosbagsFactory(ts)

        def header(t_ns: int, frame_id: str):
            return f.make("std_msgs/msg/Header", stamp=ns_to_time(f, t_ns), frame_id=frame_id)

        path = self.dir / name
        with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
            latched = [latched_qos_profile()]
            types = {"/tf": "tf2_msgs/msg/TFMessage", params.scene_topic: "sensor_msgs/msg/PointCloud2",
                     params.image_topic: "sensor_msgs/msg/Image",
                     params.camera_info_topic: "sensor_msgs/msg/CameraInfo",
                     params.detections_topic: DETECTION_2D_ARRAY}
            conns = {topic: w.add_connection(topic, msgtype, typestore=ts,
                                             **({"offered_qos_profiles": latched}
                                                if topic == params.scene_topic else {}))
                     for topic, msgtype in types.items()}

            def write(topic, msg, t_ns):
                w.write(conns[topic], t_ns, ts.serialize_cdr(msg, types[topic]))

            write(params.scene_topic, xyz_to_pointcloud2(f, header(start_ns, params.map_frame), scene.cloud),
                  start_ns)
            for i, sample in enumerate(samples):
                if sample.scene_id != scene.scene_id:
                    raise InputError(f"sample {sample.key}: scene {sample.scene_id!r}, but bag {name!r} holds "
                                     f"scene {scene.scene_id!r}")
                t = start_ns + (i + 1) * period_ns
                h = header(t, CAMERA_FRAME)
                write("/tf", f.make("tf2_msgs/msg/TFMessage", transforms=[
                    matrix_to_transform(f, header(t, params.map_frame), CAMERA_FRAME, sample.T_map_camera)]), t)
                width, height = sample.image_size
                none = sample.distortion_model == "none"
                info = intrinsics_to_camera_info(
                    f, h, sample.K, width, height, D=(0.0,) * 5 if none else sample.distortion_coeffs,
                    distortion_model="plumb_bob" if none else sample.distortion_model)
                boxes = np.array([p.box_xyxy for p in sample.persons], np.float64).reshape(-1, 4)
                ids = {"index": [str(j) for j in range(len(boxes))], "none": [""] * len(boxes),
                       "track": [str(p.track_id) for p in sample.persons]}[detection_ids]
                detections = boxes_to_detections(f, h, boxes, ids=ids, class_ids="person", scores=1.0)
                write(params.image_topic, rgb_to_image(f, h, sample.image), t)
                write(params.camera_info_topic, info, t)
                write(params.detections_topic, detections, t)
                self.frames.append(BagFrame(name, t, sample.key))
        return path

    def close(self) -> Path:
        """Write ``index.json``; returns its path."""
        path = self.dir / INDEX_NAME
        payload = {"format": INDEX_FORMAT, "format_version": INDEX_VERSION, "split": self.split,
                   "frames": [{"bag": f.bag, "stamp_ns": f.stamp_ns, "key": f.key} for f in self.frames]}
        path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        return path


@dataclass
class BagHuman:
    """One ``sahmr_ros/msg/HumanMesh`` read back (map frame, float32 arrays as published).

    Duck-types :class:`~sahmr_ros.pipeline.PersonResult` for the evaluation (no coarse root: the
    message does not carry it).
    """

    box_xyxy: np.ndarray
    score: float
    root_map: np.ndarray
    joints14_map: np.ndarray
    vertices_map: np.ndarray
    contact_points_map: np.ndarray
    contact_labels: np.ndarray
    flags: tuple[str, ...]
    detection_id: str
    track_id: str = ""
    box_index: int = -1
    coarse_root_camera: np.ndarray | None = None
    num_roi_voxels: int = -1


def read_humans(bag: str | Path, topic: str = "/sahmr/humans",
                distro: str = "jazzy") -> Iterator[tuple[int, list[BagHuman]]]:
    """Yield ``(header stamp ns, humans)`` of every ``HumanMeshArray`` on ``topic`` of an output bag.

    Raises:
        InputError: the bag cannot be read or has no such topic.
    """
    from rosbags.rosbag2 import Reader

    from sahmr_ros.ros.interfaces import make_typestore

    ts = make_typestore(distro)
    try:
        reader = Reader(Path(bag))
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for unreadable bags
        raise InputError(f"{bag}: not a readable rosbag2 ({type(exc).__name__}: {exc})") from None
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            raise InputError(f"{bag}: no topic {topic} (has {sorted({c.topic for c in reader.connections})})")
        for conn, _, raw in reader.messages(connections=conns):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            stamp = int(msg.header.stamp.sec) * C.NS_PER_S + int(msg.header.stamp.nanosec)
            humans = []
            for h in msg.humans:
                humans.append(BagHuman(
                    box_xyxy=np.asarray(h.box, np.float64).reshape(4), score=float(h.score),
                    root_map=np.array([h.root.x, h.root.y, h.root.z], np.float64),
                    joints14_map=np.asarray(h.joints, np.float32).reshape(-1, 3),
                    vertices_map=np.asarray(h.vertices, np.float32).reshape(-1, 3),
                    contact_points_map=np.asarray(h.contact_points, np.float32).reshape(-1, 3),
                    contact_labels=np.asarray(h.contact_labels, np.int64).reshape(-1),
                    flags=tuple(str(x) for x in h.flags), detection_id=str(h.id), track_id=str(h.track_id)))
            yield stamp, humans
    finally:
        reader.close()
