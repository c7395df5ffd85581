"""``sahmr bag``: the node's code path on rosbag2 files, output read back independently.

Inputs are the demo scene written as a bag (MCAP and sqlite3); outputs are decoded with ``mcap`` +
``mcap-ros2-support`` (not rosbags, which wrote them) and compared with the pipeline run directly
on the same arrays.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mcap_ros2.reader import read_ros2_messages

from sahmr_ros import constants as C
from sahmr_ros.demo.bag import CAMERA_FRAME, DEMO_START_NS, write_demo_bag
from sahmr_ros.errors import InputError
from sahmr_ros.pipeline import Pipeline, PipelineConfig
from sahmr_ros.ros.bag import run_bag
from sahmr_ros.ros.core import NodeParams

FRAMES = 3
STAMPS = [DEMO_START_NS + int((i + 1) * 1e8) for i in range(FRAMES)]  # 10 Hz after the start


@pytest.fixture(scope="module")
def demo_scene(synthetic_model_dir):
    from sahmr_ros.demo.run import make_demo_scene

    return make_demo_scene(synthetic_model_dir)


@pytest.fixture(scope="module")
def pipeline(synthetic_model_dir):
    torch.manual_seed(0)
    return Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu"), weights="untrained")


@pytest.fixture(scope="module")
def input_bag(demo_scene, tmp_path_factory):
    return write_demo_bag(demo_scene, tmp_path_factory.mktemp("bags") / "in", frames=FRAMES)


def _read_output(bag_dir):
    (mcap_file,) = bag_dir.glob("*.mcap")
    out = {}
    for m in read_ros2_messages(str(mcap_file)):
        out.setdefault(m.channel.topic, []).append((m.schema.name, m.log_time_ns, m.ros_msg))
    return out


def _stamp(header):
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def test_bag_output_is_what_the_pipeline_computes(input_bag, pipeline, demo_scene, tmp_path):
    summary = run_bag(input_bag, tmp_path / "out", NodeParams(), pipeline, progress=False)
    assert (summary.frames, summary.frames_processed, summary.frames_failed) == (FRAMES, FRAMES, 0)
    assert summary.persons == 2 * FRAMES
    out = _read_output(tmp_path / "out")
    assert {t: {s for s, _, _ in v} for t, v in out.items()} == {
        "/sahmr/meshes": {"visualization_msgs/msg/MarkerArray"},
        "/sahmr/contacts": {"sensor_msgs/msg/PointCloud2"},
        "/sahmr/humans": {"sahmr_ros/msg/HumanMeshArray"},
        "/diagnostics": {"diagnostic_msgs/msg/DiagnosticArray"},
    }

    pipeline.set_scene(demo_scene.scene_points_map)
    direct = pipeline.process(demo_scene.image, demo_scene.K, demo_scene.T_map_camera, demo_scene.boxes)
    faces = pipeline.faces
    for topic in ("/sahmr/meshes", "/sahmr/contacts", "/sahmr/humans"):
        assert [log_time for _, log_time, _ in out[topic]] == STAMPS

    for (_, _, markers), stamp in zip(out["/sahmr/meshes"], STAMPS):
        first, *meshes = markers.markers
        assert first.action == 3  # DELETEALL clears the previous frame's meshes
        assert [m.id for m in meshes] == [1, 2]  # the detections' tracking ids
        for m, person in zip(meshes, direct.persons):
            assert m.header.frame_id == "map" and _stamp(m.header) == stamp
            assert m.type == 11 and m.action == 0 and len(m.points) == 3 * C.NUM_FACES
            pts = np.array([[p.x, p.y, p.z] for p in m.points])
            np.testing.assert_allclose(pts, person.vertices_map[faces].reshape(-1, 3), atol=1e-5)

    for _, _, humans in out["/sahmr/humans"]:
        assert humans.header.frame_id == "map"
        assert [h.id for h in humans.humans] == ["1", "2"]
        for h, person in zip(humans.humans, direct.persons):
            np.testing.assert_allclose(np.reshape(h.vertices, (-1, 3)), person.vertices_map, atol=1e-5)
            np.testing.assert_allclose(np.reshape(h.joints, (14, 3)), person.joints14_map, atol=1e-5)
            np.testing.assert_allclose([h.root.x, h.root.y, h.root.z], person.root_map, atol=1e-5)
            np.testing.assert_array_equal(h.contact_labels, person.contact_labels)
            assert h.score == pytest.approx(0.9)

    _, _, cloud = out["/sahmr/contacts"][0]
    assert cloud.header.frame_id == "map"
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == [
        ("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("label", 12, 6), ("rgb", 16, 7)]
    rec = np.frombuffer(bytes(cloud.data), dtype=[("xyz", "<f4", (3,)), ("label", "<u4"), ("rgb", "<u4")])
    want = np.concatenate([p.contact_points_map for p in direct.persons])
    np.testing.assert_allclose(rec["xyz"], want, atol=1e-5)
    np.testing.assert_array_equal(rec["label"], np.concatenate([p.contact_labels for p in direct.persons]))
    r, g, b = np.asarray(C.CONTACT_PART_COLORS)[rec["label"]].T
    np.testing.assert_array_equal(rec["rgb"], (r << 16) | (g << 8) | b)

    _, _, diag = out["/diagnostics"][-1]
    values = {kv.key: kv.value for kv in diag.status[0].values}
    assert values["frames_processed"] == str(FRAMES) and diag.status[0].level == 0


def test_sqlite3_input_and_copied_inputs(demo_scene, pipeline, tmp_path):
    bag = write_demo_bag(demo_scene, tmp_path / "in", frames=2, storage="sqlite3")
    assert list(bag.glob("*.db3"))
    summary = run_bag(bag, tmp_path / "out", NodeParams(), pipeline, progress=False, copy_inputs=True)
    assert summary.frames_processed == 2
    out = _read_output(tmp_path / "out")
    assert {"/camera/image_raw", "/scene/points", "/tf_static", "/detections"} <= set(out)
    assert len(out["/sahmr/humans"]) == 2


def test_bad_messages_are_reported_and_skipped(demo_scene, pipeline, tmp_path):
    """A mono16 image, detections of another frame, and a frame before its TF: each is reported with
    its topic and field, the others are processed."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from sahmr_ros.ros.interfaces import make_typestore

    src = write_demo_bag(demo_scene, tmp_path / "good", frames=FRAMES)
    ts = make_typestore()
    with Reader(src) as r, Writer(tmp_path / "bad", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {c.id: w.add_connection(c.topic, c.msgtype, typestore=ts) for c in r.connections}
        for c, t, raw in r.messages():
            msg = ts.deserialize_cdr(raw, c.msgtype)
            if c.topic == "/camera/image_raw" and t == STAMPS[0]:
                msg.encoding, msg.step = "mono16", msg.width * 2
                msg.data = msg.data[: msg.step * msg.height]
            if c.topic == "/detections" and t == STAMPS[1]:
                msg.header.frame_id = "other_camera"
            w.write(conns[c.id], t, ts.serialize_cdr(msg, c.msgtype))
    lines = []
    summary = run_bag(tmp_path / "bad", tmp_path / "out", NodeParams(), pipeline, progress=False, log=lines.append)
    assert (summary.frames_processed, summary.frames_failed) == (1, 2)
    assert any("/camera/image_raw" in line and "image.encoding" in line and "mono16" in line for line in lines)
    assert any("/detections" in line and "detections.header.frame_id" in line and "other_camera" in line
               for line in lines)
    out = _read_output(tmp_path / "out")
    assert [log_time for _, log_time, _ in out["/sahmr/humans"]] == [STAMPS[2]]


def test_missing_tf_and_scene_are_errors_per_frame(demo_scene, pipeline, tmp_path):
    params = NodeParams(map_frame="world")  # the bag's TF and scene are in "map"
    lines = []
    pipeline.scene = None
    summary = run_bag(write_demo_bag(demo_scene, tmp_path / "in", frames=2), tmp_path / "out", params, pipeline,
                      progress=False, log=lines.append)
    assert summary.frames_failed == 2 and summary.frames_processed == 0
    assert any("point_cloud.header.frame_id" in line and "'map'" in line for line in lines)  # scene refused
    assert summary.errors_by_kind == {"scene": 3}  # the refused scene, then "no scene yet" per frame


def test_tf_arriving_after_the_image_is_waited_for(demo_scene, pipeline, tmp_path):
    """Dynamic TF published 50 ms after each image (within tf_timeout) still serves that image."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from sahmr_ros.ros.interfaces import make_typestore

    src = write_demo_bag(demo_scene, tmp_path / "static", frames=FRAMES)
    ts = make_typestore()
    with Reader(src) as r, Writer(tmp_path / "late_tf", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {c.topic: (c, w.add_connection("/tf" if c.topic == "/tf_static" else c.topic, c.msgtype,
                                               typestore=ts)) for c in r.connections}
        tf_msg = None
        for c, t, raw in r.messages():
            if c.topic == "/tf_static":
                tf_msg = ts.deserialize_cdr(raw, c.msgtype)
                continue
            w.write(conns[c.topic][1], t, raw)
            if c.topic == "/detections":  # a TF sample around each frame, written later than the frame
                for dt in (-50_000_000, 50_000_000):
                    tf_msg.transforms[0].header.stamp.sec, tf_msg.transforms[0].header.stamp.nanosec = divmod(
                        t + dt, 10**9)
                    w.write(conns["/tf_static"][1], t + 50_000_000,
                            ts.serialize_cdr(tf_msg, "tf2_msgs/msg/TFMessage"))
    summary = run_bag(tmp_path / "late_tf", tmp_path / "out", NodeParams(tf_timeout_s=0.2), pipeline,
                      progress=False)
    assert summary.frames_processed == FRAMES, summary.first_errors
    summary = run_bag(tmp_path / "late_tf", tmp_path / "out2", NodeParams(tf_timeout_s=0.0), pipeline,
                      progress=False)
    assert summary.frames_processed == 0
    assert summary.errors_by_kind == {"tf.unknown_frame": 1, "tf.future": FRAMES - 1}  # too old / future apart
    assert all(CAMERA_FRAME in line for line in summary.first_errors)
    assert "unknown_frame" in summary.first_errors[0]  # no TF at all yet
    assert all("future" in line for line in summary.first_errors[1:])  # only samples before the image


def test_truncated_bag_reports_after_writing_what_was_processed(demo_scene, pipeline, tmp_path):
    """A recording cut off in its last frame (no MCAP footer): the frames before are processed and
    written, then a clear error."""
    src = write_demo_bag(demo_scene, tmp_path / "in", frames=FRAMES)
    (mcap_file,) = src.glob("*.mcap")
    data = mcap_file.read_bytes()
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    (broken / mcap_file.name).write_bytes(data[: len(data) - 400_000])  # inside the last image
    lines = []
    with pytest.raises(InputError, match="truncated or corrupt") as info:
        run_bag(broken, tmp_path / "out", NodeParams(), pipeline, progress=False, log=lines.append)
    assert str(tmp_path / "out") in str(info.value) and "front to back" in lines[0]
    out = _read_output(tmp_path / "out")
    written = [log_time for _, log_time, _ in out["/sahmr/humans"]]
    assert 1 <= len(written) < FRAMES and written == STAMPS[:len(written)]  # complete chunks only


def test_refusals_name_the_problem(demo_scene, input_bag, pipeline, tmp_path):
    with pytest.raises(InputError, match="not found"):
        run_bag(tmp_path / "nope", tmp_path / "out", NodeParams(), pipeline, progress=False)
    (tmp_path / "exists").mkdir()
    with pytest.raises(InputError, match="already exists"):
        run_bag(input_bag, tmp_path / "exists", NodeParams(), pipeline, progress=False)
    with pytest.raises(InputError, match="/cam/image"):
        params = NodeParams(image_topic="/cam/image", camera_info_topic="/cam/info", detections_topic="/dets")
        run_bag(input_bag, tmp_path / "o", params, pipeline, progress=False)


def test_cli_bag_with_the_demo_weights(input_bag, tmp_path):
    """Runs with the shipped weights, says so, and leaves no temporary model directory behind (42 MB per run
    before)."""
    import os

    from sahmr_ros.weights import shipped_weights

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    r = subprocess.run([sys.executable, "-m", "sahmr_ros.cli", "bag", str(input_bag), "-o", str(tmp_path / "out"),
                        "--demo", "--device", "cpu", "--no-progress"], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "TMPDIR": str(tmp)})
    assert r.returncode == 0, r.stderr
    assert f"weights: {shipped_weights().description}" in r.stdout and "UNTRAINED" not in r.stdout
    assert f"{FRAMES} processed" in r.stdout
    assert list(tmp.glob("sahmr_demo_model_*")) == []
    r = subprocess.run([sys.executable, "-m", "sahmr_ros.cli", "bag", str(input_bag), "-o", str(tmp_path / "o2")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "no checkpoint configured" in r.stderr and "demo" in r.stderr


def test_demo_model_directory_is_removed_once_loaded(demo_scene, tmp_path, monkeypatch):
    """build_pipeline's temporary synthetic body: created, loaded into memory, removed; the pipeline
    then still runs (nothing is read from it later)."""
    import tempfile

    from sahmr_ros.ros.core import build_pipeline

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    created = []
    real = tempfile.TemporaryDirectory

    def recording(*args, **kwargs):
        created.append(real(*args, **kwargs))
        return created[-1]

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recording)
    pipe = build_pipeline(NodeParams(demo=True, device="cpu"))
    assert [Path(c.name).name.startswith("sahmr_demo_model_") for c in created] == [True]
    assert list(tmp_path.glob("sahmr_demo_model_*")) == []
    pipe.set_scene(demo_scene.scene_points_map)
    frame = pipe.process(demo_scene.image, demo_scene.K, demo_scene.T_map_camera, demo_scene.boxes)
    assert len(frame.persons) == 2


def _rewrite_bag(src, dst, change):
    """Copy bag ``src`` to ``dst`` (MCAP), ``change(topic, t, msg)`` returning the message to write
    (``bytes``: written raw), or None to keep it."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from sahmr_ros.ros.interfaces import make_typestore

    ts = make_typestore()
    with Reader(src) as r, Writer(dst, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {c.id: w.add_connection(c.topic, c.msgtype, typestore=ts) for c in r.connections}
        for c, t, raw in r.messages():
            new = change(c.topic, t, ts.deserialize_cdr(raw, c.msgtype))
            w.write(conns[c.id], t, new if isinstance(new, bytes) else raw if new is None else
                    ts.serialize_cdr(new, c.msgtype))
    return dst


@pytest.mark.parametrize("model, d, processed", [
    ("plumb_bob", [-0.2, 0.05, 0.0, 0.0, 0.01] + [0.0] * 9, True),  # 14 coefficients, the extra ones zero
    ("rational_polynomial", [-0.2, 0.05, 0.0, 0.0, 0.01, 0.1, 0.0, 0.0], True),
    ("equidistant", [0.05, -0.01, 0.002, -0.0005], True),
    ("plumb_bob", [-0.2, 0.05, 0.0, 0.0, 0.01] + [0.0] * 8 + [0.001], False),
])
def test_bag_distortion_vector_lengths(demo_scene, pipeline, tmp_path, model, d, processed):
    """Each length through ``sahmr bag``'s path: processed, or the frame refused naming camera_info.d
    (before: a traceback out of io.undistort_image)."""
    def distort(topic, t, msg):
        if topic == "/camera/camera_info":
            msg.distortion_model, msg.d = model, np.array(d)
            return msg
        return None

    pipeline.set_scene(demo_scene.scene_points_map)
    bag = _rewrite_bag(write_demo_bag(demo_scene, tmp_path / "in", frames=1), tmp_path / "distorted", distort)
    summary = run_bag(bag, tmp_path / "out", NodeParams(), pipeline, progress=False)
    if processed:
        assert (summary.frames_processed, summary.persons) == (1, 2), summary.first_errors
    else:
        assert summary.frames_processed == 0 and summary.errors_by_kind == {"camera_info": 1}
        assert "camera_info.d" in summary.first_errors[0] and "got 14" in summary.first_errors[0]


def _root_cannot_be_stopped_by_chmod():
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.parametrize("case", ["below_a_file", "unwritable_dir", "read_only_fs"])
def test_cli_bag_output_that_cannot_be_written_gives_one_line(input_bag, tmp_path, capsys, monkeypatch, case):
    """-o below a file, in a directory without write permission, or on a read-only file system: one
    line naming the path and the fix, exit 2, before any model is loaded."""
    import errno
    import pathlib

    from sahmr_ros import cli

    monkeypatch.setattr("sahmr_ros.ros.core.build_pipeline", lambda *a: pytest.fail("built a model first"))
    parent = tmp_path / "target"
    parent.mkdir()
    out = parent / "out"
    real_mkdir = pathlib.Path.mkdir

    def refuse(code, why):
        def mkdir(self, *args, **kwargs):
            if str(self).startswith(str(parent)):
                raise OSError(code, why, str(self))
            return real_mkdir(self, *args, **kwargs)
        monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)

    if case == "below_a_file":
        (parent / "file").write_text("x")
        out, words = parent / "file" / "out", ["is a file, not a directory"]
    elif case == "unwritable_dir":
        words = ["Permission denied", "writable"]
        if _root_cannot_be_stopped_by_chmod():  # root writes through chmod 555: simulate what a user meets
            refuse(errno.EACCES, "Permission denied")
        else:
            parent.chmod(0o555)
    else:  # a read-only file system cannot be mounted in a test: mkdir fails as it does on one
        refuse(errno.EROFS, "Read-only file system")
        words = ["Read-only file system", "writable"]
    try:
        rc = cli.main(["bag", str(input_bag), "-o", str(out), "--demo", "--no-progress"])
    finally:
        parent.chmod(0o755)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"sahmr bag: error: {out}: "), err
    assert all(w in err for w in words), err
    assert not out.exists()


@pytest.mark.parametrize("damage", ["mono16", "undecodable"])
def test_cli_bag_exits_2_when_no_frame_could_be_processed(demo_scene, pipeline, tmp_path, capsys, monkeypatch,
                                                          damage):
    """Every image unusable (an unsupported encoding, or bytes that are no Image at all): exit 2 and a
    line saying no frame could be processed and why (before: 1, or 0 when no frame was synchronised)."""
    from sahmr_ros import cli

    def spoil(topic, t, msg):
        if topic != "/camera/image_raw":
            return None
        if damage == "undecodable":
            return b"\x00\x01\x00\x00 not an image"
        msg.encoding, msg.step = "mono16", msg.width * 2
        msg.data = msg.data[: msg.step * msg.height]
        return msg

    bag = _rewrite_bag(write_demo_bag(demo_scene, tmp_path / "in", frames=2), tmp_path / "bad", spoil)
    monkeypatch.setattr("sahmr_ros.ros.core.build_pipeline", lambda *a: pipeline)
    rc = cli.main(["bag", str(bag), "-o", str(tmp_path / "out"), "--no-progress", "--demo"])
    captured = capsys.readouterr()
    assert rc == 2, captured
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith(f"sahmr bag: error: no frame could be processed from {bag}: 2 image messages")
    assert ("image 2" in last and "mono16" in last) if damage == "mono16" else "2 undecodable messages" in last


def test_a_foxy_recording_decodes_with_its_own_definitions(demo_scene, pipeline, tmp_path):
    """Detections recorded with vision_msgs 2.x (the Foxy release: hypotheses ``id``/``score`` inline,
    ``source_img``, ``tracking_id``; not wire-compatible with 4.x) in an MCAP that carries that
    definition: the bag tool decodes them with it, and the node's reader takes that layout."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from sahmr_ros.ros.interfaces import DETECTION_2D_ARRAY, make_legacy_vision_typestore, make_typestore
    from sahmr_ros.ros.messages import RosbagsFactory

    src = write_demo_bag(demo_scene, tmp_path / "jazzy", frames=2)
    ts, foxy = make_typestore(), make_legacy_vision_typestore(2)
    f3 = RosbagsFactory(foxy)

    def foxy_detection(d):  # the same box in the 2.x layout, score 0.8, the id as tracking_id
        center = f3.make("geometry_msgs/msg/Pose2D", x=d.bbox.center.position.x, y=d.bbox.center.position.y)
        bbox = f3.make("vision_msgs/msg/BoundingBox2D", size_x=d.bbox.size_x, size_y=d.bbox.size_y, center=center)
        return f3.make("vision_msgs/msg/Detection2D", header=d.header, tracking_id=d.id, is_tracking=True, bbox=bbox,
                       results=[f3.make("vision_msgs/msg/ObjectHypothesisWithPose", id="person", score=0.8)])
    with Reader(src) as r, Writer(tmp_path / "foxy", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {c.id: w.add_connection(c.topic, c.msgtype, typestore=foxy if c.msgtype == DETECTION_2D_ARRAY
                                        else ts) for c in r.connections}
        for c, t, raw in r.messages():
            if c.msgtype == DETECTION_2D_ARRAY:
                msg = ts.deserialize_cdr(raw, c.msgtype)
                dets = [foxy_detection(d) for d in msg.detections]
                raw = foxy.serialize_cdr(f3.make(DETECTION_2D_ARRAY, header=msg.header, detections=dets), c.msgtype)
            w.write(conns[c.id], t, raw)
    summary = run_bag(tmp_path / "foxy", tmp_path / "out", NodeParams(), pipeline, progress=False)
    assert summary.frames_processed == 2 and summary.persons == 4, summary.first_errors
    humans = [m for _, _, m in _read_output(tmp_path / "out")["/sahmr/humans"]]
    assert [h.score for h in humans[0].humans] == pytest.approx([0.8, 0.8])
    assert [h.id for h in humans[0].humans] == ["1", "2"]
