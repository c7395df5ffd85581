"""Fuzz the node's callbacks: malformed messages of every input type, interleaved with valid frames.

Seeded generators mutate valid Image, CompressedImage, CameraInfo, Detection2DArray, PointCloud2 and
TFMessage objects (rosbags classes, the same duck types rclpy hands the node): fields replaced by
values of the wrong type, NaN / inf / huge numbers, empty or giant strings, truncated or foreign byte
buffers, impossible sizes, stamps in the far past or future, PNG headers claiming 20000 x 20000 pixels.
They go through :class:`~sahmr_ros.ros.callbacks.NodeCallbacks` (the functions the rclpy node
subscribes) with the real worker thread and the real (small, untrained) pipeline. Asserted:

* no exception escapes a callback or the worker, and no error is counted as ``internal`` (an
  unexpected exception inside the node is a bug even when it is caught);
* every valid frame is served (published, with its stamp);
* memory stays bounded: the synchroniser queues and TF history stay within their bounds and the
  process's resident memory does not grow after warm-up.

``SAHMR_FUZZ_COUNT`` (default 250) sets the malformed messages per type and ``SAHMR_FUZZ_SEED`` the
seed; the README's reliability section gives a run with 10,000 per type.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import os
import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import NodeHarness
from sahmr_ros.ros.conversions import (
    boxes_to_detections,
    intrinsics_to_camera_info,
    matrix_to_transform,
    rgb_to_image,
    xyz_to_pointcloud2,
)
from sahmr_ros.ros.core import NodeParams
from sahmr_ros.ros.interfaces import make_typestore
from sahmr_ros.ros.messages import RosbagsFactory

COUNT = int(os.environ.get("SAHMR_FUZZ_COUNT", "250"))
SEED = int(os.environ.get("SAHMR_FUZZ_SEED", "20261130"))
VALID_EVERY = 60  # a valid frame after this many malformed messages
S = 1_000_000_000
T0 = 1_700_000_000 * S
FRAME_GAP = 10 * S  # valid frames lie FRAME_GAP apart; malformed stamps fall 2..8 s after one
TYPES = ("image", "compressed", "camera_info", "detections", "scene", "tf")
RSS_GROWTH_LIMIT_MB = 150.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` RGB pixels, with a tiny IDAT (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class Mutator:
    """Seeded mutations of valid messages (rosbags dataclasses, mutated in deep copies)."""

    FRAMES = ("", "/", "odom", "base_link", "x" * 300, "\u00e9\u00e8", " ", "map/", "cam era")  # never map/camera

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def garbage(self):
        r = self.rng
        return r.choice([
            None, "", "x" * r.randint(1, 5000), "\x00\xff", -1, -(2**40), 2**31, 2**64, 2**200, 0,
            float("nan"), float("inf"), -float("inf"), 1e300, -1e-300, 3.5, True, [], [1, 2, 3], (None,),
            b"\xff\x00" * r.randint(0, 50), object(), {"a": 1},
            np.zeros(r.randint(0, 64), np.uint8), np.full(r.randint(1, 12), np.nan), np.arange(7, dtype=np.int64),
            np.random.default_rng(r.randint(0, 2**31)).integers(0, 256, r.randint(0, 4096), dtype=np.uint8),
        ])

    def stamp(self, msg, base_ns: int) -> None:
        """A stamp 2..8 s after ``base_ns`` (clear of valid frames), or a wild one."""
        r = self.rng
        headers = [ts.header for ts in msg.transforms] if hasattr(msg, "transforms") else [msg.header]
        for header in headers:
            st = header.stamp
            if r.random() < 0.8:
                st.sec, st.nanosec = divmod(base_ns + r.randint(2 * S, 8 * S), S)
            else:
                st.sec, st.nanosec = r.choice([(0, 0), (2**31 - 1, 999_999_999), (5, 10**9), (-1, 0), (2**40, 0),
                                               (1.5, 0), ("now", 0), (None, None)])

    def _fields(self, obj, prefix=""):
        """Every (parent, attribute or index, path) leaf and node of a message."""
        out = []
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                out.append((obj, f.name, prefix + f.name))
                out += self._fields(value, prefix + f.name + ".")
        elif isinstance(obj, list):
            for i, value in enumerate(obj[:8]):
                out.append((obj, i, f"{prefix}{i}"))
                out += self._fields(value, f"{prefix}{i}.")
        return out

    def mutate(self, msg, base_ns: int, specific=None):
        """Return a deep copy of ``msg`` with 1-3 random fields replaced, plus type-specific damage."""
        msg = copy.deepcopy(msg)
        self.stamp(msg, base_ns)
        r = self.rng
        if specific is not None and r.random() < 0.6:
            specific(msg, r)
        for _ in range(r.randint(0 if specific else 1, 3)):
            parent, key, _ = r.choice(self._fields(msg))
            value = self.garbage()
            if key == "frame_id" or key == "child_frame_id":
                value = r.choice(self.FRAMES + (value,))
            if isinstance(parent, list):
                parent[key] = value
            else:
                setattr(parent, key, value)
        return msg


def _damage_image(msg, r):
    msg.width, msg.height = r.choice([(0, 0), (4000, 4000), (12000, 12000), (2**31, 2), (3, 1), (msg.width, 1)])
    msg.step = r.choice([msg.step, 0, 3 * msg.width, 2**40])
    msg.encoding = r.choice(["rgb8", "bgr8", "mono16", "32FC1", "bayer_rggb8", "", "RGB8 ", "yuv422"])


def _damage_compressed(msg, r):
    data = bytes(msg.data)
    msg.data = np.frombuffer(r.choice([
        data[: r.randint(0, len(data))], _png_header_claiming(20000, 20000), _png_header_claiming(12000, 12000),
        b"\xff\xd8\xff" + bytes(r.randint(0, 255) for _ in range(200)), b"GIF89a" + data[6:], data[::-1],
    ]), np.uint8)
    msg.format = r.choice(["png", "jpeg", "", "rgb8; jpeg compressed bgr8", "16UC1; compressedDepth", "tiff"])


def _damage_camera_info(msg, r):
    msg.k = r.choice([np.zeros(9), np.full(9, np.nan), np.arange(4.0), -np.ones(9), msg.k * 1e300])
    msg.d = r.choice([np.zeros(14), np.full(14, 0.1), np.full(5, np.inf), np.arange(3.0), np.zeros(0)])
    msg.distortion_model = r.choice(["plumb_bob", "rational_polynomial", "equidistant", "fisheye", "", "kannala"])
    msg.width, msg.height = r.choice([(0, 0), (1, 1), (10**6, 10**6), (msg.width, msg.height)])


def _damage_detections(msg, r):
    for det in msg.detections:
        b = det.bbox
        b.center.position.x = r.choice([b.center.position.x, float("nan"), -1e300, 1e9])
        b.size_x, b.size_y = r.choice([(-5.0, 10.0), (0.0, 0.0), (1e300, 1e300), (b.size_x, b.size_y)])
        b.center.theta = r.choice([0.0, float("inf"), 1e20])
    if r.random() < 0.3:
        msg.detections = msg.detections * r.randint(0, 200)


def _damage_cloud(msg, r):
    msg.width, msg.height = r.choice([(msg.width, 1), (2**31, 2**31), (0, 5), (msg.width + 1, 1)])
    msg.point_step = r.choice([msg.point_step, 0, 1, 2**40])
    for f in msg.fields:
        f.datatype = r.choice([f.datatype, 0, 2, 9, 255])
        f.offset = r.choice([f.offset, 2**31, 10**6])


def _damage_tf(msg, r):
    for ts in msg.transforms:
        t, q = ts.transform.translation, ts.transform.rotation
        t.x = r.choice([t.x, float("nan"), 1e154, 1e300, -float("inf")])
        q.x, q.y, q.z, q.w = r.choice([(0.0, 0.0, 0.0, 0.0), (float("nan"),) * 4, (1e300, 0.0, 0.0, 1.0),
                                       (q.x, q.y, q.z, q.w)])
        ts.child_frame_id = r.choice([ts.child_frame_id, "", ts.header.frame_id, "odom"])
        ts.header.stamp.nanosec = r.choice([ts.header.stamp.nanosec, 10**9, 2**32])


def _templates(f, node, scene):
    """A small valid message of each type (the fuzz input's starting points)."""
    small = scene.image[::8, ::8].copy()  # 80 x 60
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="PNG")
    h, w = small.shape[:2]
    return {
        "image": (rgb_to_image(f, node.header(T0), small), _damage_image),
        "compressed": (f.make("sensor_msgs/msg/CompressedImage", header=node.header(T0), format="png",
                              data=np.frombuffer(buf.getvalue(), np.uint8)), _damage_compressed),
        "camera_info": (intrinsics_to_camera_info(f, node.header(T0), scene.K / 8, w, h), _damage_camera_info),
        "detections": (boxes_to_detections(f, node.header(T0), scene.boxes / 8), _damage_detections),
        "scene": (xyz_to_pointcloud2(f, node.header(T0, "map"), scene.scene_points_map[::500]), _damage_cloud),
        "tf": (f.make("tf2_msgs/msg/TFMessage", transforms=[
            matrix_to_transform(f, node.header(T0, "map"), "camera", scene.T_map_camera)]), _damage_tf),
    }


@pytest.mark.filterwarnings("error::RuntimeWarning")  # an overflow or invalid value inside the node is a bug too
def test_fuzz_every_input_type_between_valid_frames(synthetic_model_dir, demo_scene, pipeline):
    f = RosbagsFactory(make_typestore())
    node = NodeHarness(f, pipeline, NodeParams(tf_timeout_s=0.0))
    templates = _templates(f, node, demo_scene)
    mutator = Mutator(seed=SEED)
    feed = {
        "image": lambda m: node.cb.on_input("image", m),
        "compressed": lambda m: node.cb.on_input("image", m),  # the node subscribes one of the two types
        "camera_info": lambda m: node.cb.on_input("camera_info", m),
        "detections": lambda m: node.cb.on_input("detections", m),
        "scene": node.cb.on_scene,
        "tf": lambda m: node.cb.on_tf(m, static=mutator.rng.random() < 0.2),
    }
    schedule = [t for t in TYPES for _ in range(COUNT)]
    mutator.rng.shuffle(schedule)
    valid_stamps, rss = [], []
    stamp = T0
    for i, kind in enumerate(schedule):
        if i % VALID_EVERY == 0:
            stamp += FRAME_GAP
            node.frame(demo_scene, stamp)
            valid_stamps.append(stamp)
            assert node.served()[-1:] == [stamp], f"valid frame {stamp} not served; last lines: {node.lines[-3:]}"
            rss.append(_rss_mb())
        template, damage = templates[kind]
        feed[kind](mutator.mutate(template, stamp, damage))  # raises here if a callback lets one escape
    node.wait()
    node.cb.close()

    internal = [line for line in node.lines if "unexpected error" in line]
    assert "internal" not in node.core.errors_by_kind, "\n\n".join(internal[:3])
    served = set(node.served())
    assert all(s in served for s in valid_stamps)
    sync = node.core.sync
    assert all(len(sync.queued(j)) <= sync.queue_size for j in range(sync.n_streams))
    assert all(len(edge.stamps) <= 10_000 for edge in node.cb.tf._edges.values())
    assert len(node.cb.tf.frames()) <= node.cb.tf.max_frames
    warm = rss[len(rss) // 4]
    assert max(rss[len(rss) // 4:]) - warm < RSS_GROWTH_LIMIT_MB, rss
    # the fuzzer reached every kind of problem it was meant to
    kinds = set(node.core.errors_by_kind)
    assert {"image", "camera_info", "detections", "scene", "tf"} <= {k.split(".")[0] for k in kinds}, kinds
