"""PerceptionCore (the node's per-frame logic) and the latest-frame worker, on rosbags messages.

The expected values come from the pipeline run directly on the same arrays, or from hand-built
inputs (a rotated camera matrix for the ``rectified`` rule, a known image for the compressed path).
"""

from __future__ import annotations

import io
import re
import threading
import time

import numpy as np
import pytest
from PIL import Image

from sahmr_ros.errors import InputError
from sahmr_ros.ros.conversions import boxes_to_detections, intrinsics_to_camera_info, rgb_to_image, xyz_to_pointcloud2
from sahmr_ros.ros.core import FrameInput, LatestFrameWorker, NodeParams, PerceptionCore
from sahmr_ros.ros.interfaces import make_typestore
from sahmr_ros.ros.messages import RosbagsFactory, ns_to_time
from sahmr_ros.ros.sync import TransformUnavailable

STAMP = 1_700_000_000_500_000_000


@pytest.fixture(scope="module")
def f():
    return RosbagsFactory(make_typestore())


def _header(f, frame="camera", stamp=STAMP):
    return f.make("std_msgs/msg/Header", stamp=ns_to_time(f, stamp), frame_id=frame)


def _messages(f, scene, classes=("person", "person"), scores=(0.9, 0.9), d=(0.0,) * 5, p=None, compressed=False):
    h, w = scene.image.shape[:2]
    if compressed:
        buf = io.BytesIO()
        Image.fromarray(scene.image).save(buf, format="PNG")
        image = f.make("sensor_msgs/msg/CompressedImage", header=_header(f), format="png",
                       data=f.array(np.frombuffer(buf.getvalue(), np.uint8)))
    else:
        image = rgb_to_image(f, _header(f), scene.image)
    info = intrinsics_to_camera_info(f, _header(f), scene.K, w, h, D=d, P=p)
    detections = boxes_to_detections(f, _header(f), scene.boxes, ids=[f"track-{j}" for j in range(len(scene.boxes))],
                                     class_ids=classes, scores=scores)
    return FrameInput(image, info, detections, STAMP)


def _lookup(scene):
    return lambda target, source, stamp: scene.T_map_camera


def test_core_matches_the_pipeline_and_keeps_detection_ids(f, pipeline, demo_scene):
    core = PerceptionCore(pipeline, NodeParams(), f)
    frames = [fr for stream, msg in zip(("image", "camera_info", "detections"), _messages(f, demo_scene)[:3])
              for fr in core.add(stream, msg)]
    assert len(frames) == 1 and frames[0].stamp_ns == STAMP
    out = core.handle(frames[0], _lookup(demo_scene))
    assert out.error is None
    direct = pipeline.process(demo_scene.image, demo_scene.K, demo_scene.T_map_camera, demo_scene.boxes)
    assert out.ids == ["track-0", "track-1"]
    assert [h.id for h in out.humans.humans] == out.ids
    for h, person in zip(out.humans.humans, direct.persons):
        np.testing.assert_allclose(h.vertices.reshape(-1, 3), person.vertices_map, atol=1e-5)
    assert out.markers.markers[0].action == 3 and all(m.header.frame_id == "map" for m in out.markers.markers)
    assert out.contacts.header.stamp.sec * 10**9 + out.contacts.header.stamp.nanosec == STAMP
    level, message, values = core.status()
    assert level == 0 and values["frames_processed"] == 1 and values["persons_last_frame"] == 2
    assert "latency_ms.total" in values


def test_class_and_score_filters(f, pipeline, demo_scene):
    frame = _messages(f, demo_scene, classes=("chair", "person"), scores=(0.9, 0.3))
    out = PerceptionCore(pipeline, NodeParams(), f).handle(frame, _lookup(demo_scene))
    assert out.error is None and out.result.persons == [] and len(out.markers.markers) == 1  # only DELETEALL
    any_class = PerceptionCore(pipeline, NodeParams(class_ids=(), score_threshold=0.2), f)
    out = any_class.handle(frame, _lookup(demo_scene))
    assert out.ids == ["track-0", "track-1"]
    out = PerceptionCore(pipeline, NodeParams(class_ids=("chair",)), f).handle(frame, _lookup(demo_scene))
    assert out.ids == ["track-0"]


def test_compressed_image_gives_the_same_result(f, pipeline, demo_scene):
    raw = PerceptionCore(pipeline, NodeParams(), f).handle(_messages(f, demo_scene), _lookup(demo_scene))
    png = PerceptionCore(pipeline, NodeParams(), f).handle(_messages(f, demo_scene, compressed=True),
                                                           _lookup(demo_scene))
    assert png.error is None
    for a, b in zip(raw.humans.humans, png.humans.humans):  # PNG is lossless
        np.testing.assert_array_equal(a.vertices, b.vertices)


def test_distortion_rules(f, pipeline, demo_scene):
    d = (-0.1, 0.01, 0.0, 0.0, 0.0)
    refused = PerceptionCore(pipeline, NodeParams(distortion="refuse"), f)
    out = refused.handle(_messages(f, demo_scene, d=d), _lookup(demo_scene))
    assert "camera_info.d" in out.error and "rectified" in out.error and refused.counts["frames_failed"] == 1

    # rectified: the image is already rectified, K comes from P (here P's focal length is 10 % larger)
    P = np.hstack([demo_scene.K, np.zeros((3, 1))])
    P[0, 0] *= 1.1
    P[1, 1] *= 1.1
    out = PerceptionCore(pipeline, NodeParams(distortion="rectified"), f).handle(
        _messages(f, demo_scene, d=d, p=P), _lookup(demo_scene))
    K_p = P[:, :3]
    direct = pipeline.process(demo_scene.image, K_p, demo_scene.T_map_camera, demo_scene.boxes)
    np.testing.assert_allclose(out.humans.humans[0].vertices.reshape(-1, 3), direct.persons[0].vertices_map,
                               atol=1e-5)

    # undistort: the image is resampled, so the result differs from the distorted input taken as is
    from sahmr_ros.io import Camera, undistort_image

    out = PerceptionCore(pipeline, NodeParams(distortion="undistort"), f).handle(
        _messages(f, demo_scene, d=d), _lookup(demo_scene))
    h, w = demo_scene.image.shape[:2]
    rgb, K = undistort_image(demo_scene.image, Camera(demo_scene.K, np.array(d), w, h, "plumb_bob"))
    direct = pipeline.process(rgb, K, demo_scene.T_map_camera, demo_scene.boxes)
    np.testing.assert_allclose(out.humans.humans[0].vertices.reshape(-1, 3), direct.persons[0].vertices_map,
                               atol=1e-5)


class _RecordingPipeline:
    """Stands in for the pipeline: records the image and K the core hands it, and finds nobody."""

    scene = object()  # a scene is latched
    faces = np.zeros((0, 3), np.int64)
    weights_description, device = "recording stand-in", "cpu"

    def __init__(self):
        self.calls = []

    def process(self, rgb, K, T_map_camera, boxes, scores=None):
        from types import SimpleNamespace

        self.calls.append((rgb.copy(), np.array(K)))
        return SimpleNamespace(persons=[], skipped=[], timings_ms={"total": 1.0})


SMALL_K = np.array([[150.0, 0.0, 81.0], [0.0, 152.0, 59.0], [0.0, 0.0, 1.0]])
PLUMB5 = [-0.2, 0.05, 0.001, -0.002, 0.01]


@pytest.mark.parametrize("model, d, used", [
    ("plumb_bob", PLUMB5, ("plumb_bob", PLUMB5)),
    ("plumb_bob", PLUMB5 + [0.0] * 9, ("plumb_bob", PLUMB5)),  # 14 coefficients, the extra ones zero
    ("rational_polynomial", PLUMB5 + [0.3, -0.01, 0.0], ("rational_polynomial", PLUMB5 + [0.3, -0.01, 0.0])),
    ("rational_polynomial", PLUMB5 + [0.3, -0.01, 0.0] + [0.0] * 6, ("rational_polynomial", PLUMB5 + [0.3, -0.01, 0])),
    ("equidistant", [0.05, -0.01, 0.002, -0.0005], ("equidistant", [0.05, -0.01, 0.002, -0.0005])),
    ("plumb_bob", PLUMB5 + [0.0] * 8 + [0.001], "plumb_bob takes 5 coefficients .* got 14"),
    ("", [0.1] * 14, "no distortion model given and 14 coefficients"),
    ("kannala_brandt", [0.1] * 4, "'kannala_brandt' with 4 coefficients .*not supported"),
])
def test_distortion_vector_lengths_in_the_node(f, model, d, used):
    """Every length under distortion:=undistort: the image handed to the pipeline is the one
    io.undistort_image gives for the normalised coefficients, or the frame is refused with a
    camera_info.d error naming the model and the count; no exception escapes ``handle``."""
    from sahmr_ros.io import Camera, undistort_image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    image = rgb_to_image(f, _header(f), rgb)
    info = intrinsics_to_camera_info(f, _header(f), SMALL_K, 160, 120, D=d, distortion_model=model)
    dets = boxes_to_detections(f, _header(f), [[40.0, 20.0, 100.0, 110.0]])
    frame = FrameInput(image, info, dets, STAMP)
    pipe = _RecordingPipeline()
    core = PerceptionCore(pipe, NodeParams(distortion="undistort"), f)
    out = core.handle(frame, lambda *a: np.eye(4))
    if isinstance(used, str):
        assert out.error is not None and pipe.calls == []
        assert out.error.startswith("/camera/camera_info: camera_info.d: ")
        assert re.search(used, out.error) and "distortion:=rectified" in out.error
        assert dict(core.errors_by_kind) == {"camera_info": 1}
    else:
        assert out.error is None, out.error
        want, K_want = undistort_image(rgb, Camera(SMALL_K, np.array(used[1]), 160, 120, used[0]))
        (got, K_got), = pipe.calls
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(K_got, K_want)
        assert not np.array_equal(got, rgb)

    # rectified: whatever the coefficients, the image is used as is with K from P
    pipe = _RecordingPipeline()
    P = np.hstack([SMALL_K * [[1.1], [1.1], [1.0]], np.zeros((3, 1))])
    info = intrinsics_to_camera_info(f, _header(f), SMALL_K, 160, 120, D=d, distortion_model=model, P=P)
    rectified = PerceptionCore(pipe, NodeParams(distortion="rectified"), f)
    out = rectified.handle(FrameInput(image, info, dets, STAMP), lambda *a: np.eye(4))
    assert out.error is None
    np.testing.assert_array_equal(pipe.calls[0][0], rgb)
    np.testing.assert_array_equal(pipe.calls[0][1], P[:, :3])
    # refuse: the count is named
    out = PerceptionCore(_RecordingPipeline(), NodeParams(distortion="refuse"), f).handle(frame, lambda *a: np.eye(4))
    assert "camera_info.d" in out.error and f"{len(d)} coefficients" in out.error


def test_an_image_over_the_pixel_limit_costs_only_its_frame(f):
    """A 140 kB PNG of 12000 x 12000 zeros with a camera_info of width = height = 0 (no size check
    there): refused from the PNG header, the pipeline never sees it (before: +2 GB and 9 s)."""
    import struct
    import zlib

    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(bytes(12001)) for _ in range(12000)) + compressor.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    image = f.make("sensor_msgs/msg/CompressedImage", header=_header(f), format="png",
                   data=f.array(np.frombuffer(png, np.uint8)))
    info = intrinsics_to_camera_info(f, _header(f), SMALL_K, 0, 0)
    dets = boxes_to_detections(f, _header(f), [[40.0, 20.0, 100.0, 110.0]])
    pipe = _RecordingPipeline()
    core = PerceptionCore(pipe, NodeParams(compressed=True), f)
    t0 = time.monotonic()
    out = core.handle(FrameInput(image, info, dets, STAMP), lambda *a: np.eye(4))
    assert time.monotonic() - t0 < 1.0 and pipe.calls == []
    assert "compressed_image.data" in out.error and "MAX_IMAGE_PIXELS" in out.error
    assert core.counts["frames_failed"] == 1


def test_frame_errors_name_topic_and_field_and_are_counted(f, pipeline, demo_scene):
    core = PerceptionCore(pipeline, NodeParams(), f)
    frame = _messages(f, demo_scene)
    frame.camera_info.width = 1280
    assert "/camera/camera_info: camera_info.width" in core.handle(frame, _lookup(demo_scene)).error

    frame = _messages(f, demo_scene)
    frame.detections.header.frame_id = "other"
    assert "/detections: detections.header.frame_id" in core.handle(frame, _lookup(demo_scene)).error

    def no_tf(target, source, stamp):
        raise TransformUnavailable(target, source, stamp, TransformUnavailable.UNKNOWN_FRAME, "never published")

    assert core.handle(_messages(f, demo_scene), no_tf).error.startswith("[tf] no transform from 'camera' to 'map'")
    assert dict(core.errors_by_kind) == {"camera_info": 1, "detections": 1, "tf.unknown_frame": 1}
    level, message, values = core.status()
    assert level == 2 and values["frames_failed"] == 3 and "[tf]" in values["last_error"]
    diag = core.diagnostics_message(STAMP, dropped_stale=4)
    kv = {v.key: v.value for v in diag.status[0].values}
    assert diag.status[0].level == 2 and kv["frames_dropped_stale"] == "4" and kv["errors.tf.unknown_frame"] == "1"


def test_scene_messages(f, pipeline, demo_scene):
    core = PerceptionCore(pipeline, NodeParams(), f)
    points = demo_scene.scene_points_map[:5000].copy()
    points[:10] = np.nan
    line = core.on_scene(xyz_to_pointcloud2(f, _header(f, "map"), points))
    assert "4990 points" in line and len(pipeline.scene) == 4990
    with pytest.raises(InputError, match="point_cloud.header.frame_id.*'odom'"):
        core.on_scene(xyz_to_pointcloud2(f, _header(f, "odom"), points))
    with pytest.raises(InputError, match="no finite point"):
        core.on_scene(xyz_to_pointcloud2(f, _header(f, "map"), np.full((3, 3), np.nan)))
    assert len(pipeline.scene) == 4990  # the previous scene is kept
    pipeline.set_scene(demo_scene.scene_points_map)


def test_node_params_are_checked():
    with pytest.raises(InputError, match="distortion"):
        NodeParams(distortion="sometimes")
    with pytest.raises(InputError, match="unknown"):
        NodeParams.from_mapping({"slop": 0.1})
    with pytest.raises(InputError, match="precision: 'fp8' unknown; choose one of fp32, bf16, fp16, auto"):
        NodeParams(precision="fp8")
    assert NodeParams(precision="auto").precision == "auto"
    assert NodeParams.from_mapping({"class_ids": ["0", "person"]}).class_ids == ("0", "person")


def test_latest_frame_worker_drops_stale_frames_and_survives_errors():
    gate, started, handled, errors = threading.Event(), threading.Event(), [], []

    def handler(item):
        if item == "boom":
            raise RuntimeError("bad frame")
        started.set()
        gate.wait(5)
        handled.append(item)

    worker = LatestFrameWorker(handler, errors.append)
    try:
        worker.submit("boom")
        deadline = time.monotonic() + 5
        while not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [str(e) for e in errors] == ["bad frame"]
        worker.submit(1)  # starts, blocks on the gate
        assert started.wait(5)
        assert worker.submit(2) is False  # pending
        assert worker.submit(3) is True  # replaces 2
        gate.set()
        while not worker.idle() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert handled == [1, 3] and worker.dropped == 1
    finally:
        worker.stop()


def test_readme_documents_every_node_parameter():
    from dataclasses import fields
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    missing = [f.name for f in fields(NodeParams) if f"| `{f.name}` |" not in readme]
    assert not missing, f"README.md's parameter table lacks {missing}"


def test_scene_outside_the_view_is_reported(f, pipeline, demo_scene):
    core = PerceptionCore(pipeline, NodeParams(), f)
    far = demo_scene.T_map_camera.copy()
    far[:3, 3] += [0.0, 0.0, 100.0]  # the camera 100 m above the room: no scene point near anyone
    out = core.handle(_messages(f, demo_scene), lambda target, source, stamp: far)
    assert out.error is None and all("no_scene_points" in p.flags for p in out.result.persons)
    assert any("scene outside the camera's view" in w for w in out.warnings)
    assert core.errors_by_kind["scene_outside_view"] == 1
    assert len(out.contacts.data) == 0  # no contacts without scene points


def test_callbacks_never_wait_for_a_running_frame(f, pipeline, demo_scene, monkeypatch):
    """While the worker is inside the pipeline, status (the diagnostics timer), add and on_scene
    (subscription callbacks) return at once; the running frame keeps the scene it started with."""
    inside, release = threading.Event(), threading.Event()
    real_process = pipeline.process

    def slow_process(*args, **kwargs):
        inside.set()
        assert release.wait(10)
        return real_process(*args, **kwargs)

    monkeypatch.setattr(pipeline, "process", slow_process)
    core = PerceptionCore(pipeline, NodeParams(), f)
    outputs = []
    worker = threading.Thread(target=lambda: outputs.append(core.handle(_messages(f, demo_scene),
                                                                        _lookup(demo_scene))))
    worker.start()
    try:
        assert inside.wait(10)
        t0 = time.monotonic()
        core.status()
        core.add("image", _messages(f, demo_scene).image)
        core.on_scene(xyz_to_pointcloud2(f, _header(f, "map"), demo_scene.scene_points_map[:1000]))
        assert time.monotonic() - t0 < 2.0
    finally:
        release.set()
        worker.join(30)
    assert outputs[0].error is None and len(outputs[0].result.persons) == 2
    pipeline.set_scene(demo_scene.scene_points_map)
