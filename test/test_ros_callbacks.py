"""The node's callbacks (NodeCallbacks, without rclpy): what a robot sends them never escapes.

Each case is one a robot produced in the field: a /tf message with a NaN translation or a zero
quaternion, a frame that is its own parent, a float64 scene point at 1e300, a pose 1e154 m away, a
clock glitch stamping one frame 1e6 s in the future, a bag replayed with --loop, a Detection2DArray
with one NaN box between two good ones. Expected outputs come from the pipeline run directly on the
same arrays, or from the documented rule (which frame must be served).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CAMERA_FRAME as CAMERA
from conftest import NodeHarness as Node
from sahmr_ros.ros.conversions import boxes_to_detections, intrinsics_to_camera_info, matrix_to_transform, rgb_to_image
from sahmr_ros.ros.interfaces import make_typestore
from sahmr_ros.ros.messages import RosbagsFactory

S = 1_000_000_000
T0 = 1_700_000_000 * S


@pytest.fixture(scope="module")
def f():
    return RosbagsFactory(make_typestore())


def test_bad_tf_messages_never_escape_and_the_good_transform_beside_them_is_kept(f, pipeline, demo_scene):
    node = Node(f, pipeline)
    bad = [
        ("map", "cam_nan", (float("nan"), 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), 0),
        ("map", "cam_zero_q", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), 0),
        ("map", "", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), 0),
        ("map", "cam_ns", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), 10**9),
        ("selfish", "selfish", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), 0),
        ("map", "far", (1e154, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0), 0),
    ]
    for parent, child, t, q, nanosec in bad:
        good = matrix_to_transform(f, node.header(T0, "map"), CAMERA, demo_scene.T_map_camera)
        ts = matrix_to_transform(f, node.header(T0, parent), child, np.eye(4))
        ts.transform.translation.x, ts.transform.translation.y, ts.transform.translation.z = t
        r = ts.transform.rotation
        r.x, r.y, r.z, r.w = q
        ts.header.stamp.nanosec = nanosec
        node.cb.on_tf(f.make("tf2_msgs/msg/TFMessage", transforms=[ts, good]), False)  # must not raise
    assert node.core.errors_by_kind["tf"] == len(bad)
    assert all("1 of 2 transforms rejected" in line for line in node.lines)
    np.testing.assert_allclose(node.cb.tf.lookup("map", CAMERA, T0), demo_scene.T_map_camera, atol=1e-12)
    node.frame(demo_scene, T0, tf=False)
    assert node.served() == [T0]
    node.cb.close()


def test_a_float64_scene_point_at_1e300_is_dropped_not_fatal(f, pipeline, demo_scene):
    node = Node(f, pipeline)
    points = demo_scene.scene_points_map[:2000].astype(np.float64)
    points[7] = (1e300, 0.0, 0.0)  # finite in float64, inf in float32
    node.cb.on_scene(_float64_cloud(f, node.header(T0, "map"), points))
    assert node.core.errors_by_kind == {} and "1 beyond 100000 m dropped" in node.lines[-1]
    assert len(pipeline.scene) == len(np.unique(np.floor(np.delete(points, 7, 0) / 0.02), axis=0))
    node.cb.on_scene(_float64_cloud(f, node.header(T0, "map"), np.full((3, 3), 1e300)))
    assert node.core.errors_by_kind["scene"] == 1 and "re-centre" in node.lines[-1]  # previous scene kept
    assert len(pipeline.scene) > 0
    pipeline.set_scene(demo_scene.scene_points_map)
    node.cb.close()


def _float64_cloud(f, header, points):
    """A PointCloud2 with FLOAT64 x, y, z (as some mapping tools publish), written by hand."""
    fields = [f.make("sensor_msgs/msg/PointField", name=c, offset=8 * j, datatype=8, count=1)
              for j, c in enumerate("xyz")]
    data = np.ascontiguousarray(points, dtype="<f8").view(np.uint8).reshape(-1)
    return f.make("sensor_msgs/msg/PointCloud2", header=header, height=1, width=len(points), fields=fields,
                  is_bigendian=False, point_step=24, row_step=24 * len(points), data=data, is_dense=False)


def test_a_pose_1e154_m_away_costs_the_frame_with_a_reason(f, pipeline, demo_scene):
    node = Node(f, pipeline)
    far = demo_scene.T_map_camera.copy()
    far[0, 3] = 2e154
    out = node.core.handle(_frame_input(node, demo_scene, T0), lambda *_: far)
    assert out.error_kind == "input" and "from the origin" in out.error
    node.frame(demo_scene, T0 + S)
    assert node.served() == [T0 + S] and "internal" not in node.core.errors_by_kind
    node.cb.close()


def _frame_input(node, scene, stamp):
    from sahmr_ros.ros.core import FrameInput

    h, w = scene.image.shape[:2]
    return FrameInput(rgb_to_image(node.f, node.header(stamp), scene.image),
                      intrinsics_to_camera_info(node.f, node.header(stamp), scene.K, w, h),
                      boxes_to_detections(node.f, node.header(stamp), scene.boxes), stamp)


def test_time_recovers_after_a_future_frame_lone_future_images_and_a_bag_loop(f, pipeline, demo_scene):
    node = Node(f, pipeline)
    node.frame(demo_scene, T0)
    node.frame(demo_scene, T0 + 10**6 * S)  # a clock glitch: one complete frame 1e6 s ahead (served)
    node.frame(demo_scene, T0 + S)  # real time again
    for k in range(node.core.params.queue_size):  # lone future-stamped images fill the queue
        node.cb.on_input("image", rgb_to_image(f, node.header(T0 + 10**6 * S + k), demo_scene.image))
    node.frame(demo_scene, T0 + 2 * S)
    node.frame(demo_scene, T0 + S // 2)  # a bag replayed with --loop: back to its start
    assert node.served() == [T0, T0 + 10**6 * S, T0 + S, T0 + 2 * S, T0 + S // 2]
    assert node.core.sync.time_jumps == 3 + 1 + 3  # per stream: after the glitch frame, the images, the loop
    assert node.core.errors_by_kind["time_jump"] == 7 and "internal" not in node.core.errors_by_kind
    node.cb.close()


def test_one_future_tf_sample_on_the_camera_chain_does_not_block_lookups(f, pipeline, demo_scene):
    node = Node(f, pipeline)
    node.frame(demo_scene, T0)
    node.tf(T0 + 10**6 * S, demo_scene.T_map_camera)  # one sample 1e6 s in the future
    node.frame(demo_scene, T0 + S)  # its own sample restarts the edge's history
    node.frame(demo_scene, T0 + 2 * S)
    assert node.served() == [T0, T0 + S, T0 + 2 * S]
    node.cb.close()


def test_too_old_and_future_tf_are_reported_apart(f, pipeline, demo_scene):
    node = Node(f, pipeline)
    node.tf(T0, demo_scene.T_map_camera)
    node.tf(T0 + S // 2, demo_scene.T_map_camera)
    node.frame(demo_scene, T0 + S, tf=False)  # after the newest sample
    node.frame(demo_scene, T0 + S // 4, tf=False)  # 0.75 s back: no jump, but stale in the synchroniser
    node.frame(demo_scene, T0 + 2 * S, tf=False)
    assert node.core.errors_by_kind["tf.future"] == 2 and node.served() == []
    node.core.sync.reset()
    node.frame(demo_scene, T0 - S // 2, tf=False)  # before the oldest sample
    assert node.core.errors_by_kind["tf.too_old"] == 1
    node.cb.close()


def test_one_nan_box_costs_that_box_only(f, pipeline, demo_scene):
    node = Node(f, pipeline)
    boxes = np.vstack([demo_scene.boxes[:1], [[np.nan, 10.0, 50.0, 90.0]], demo_scene.boxes[1:]])
    node.frame(demo_scene, T0, boxes=boxes)
    assert node.served() == [T0]
    out = node.published[0]
    assert out.ids == ["1", "3"]  # the good people on either side of the bad box
    direct = pipeline.process(demo_scene.image, demo_scene.K, demo_scene.T_map_camera, demo_scene.boxes)
    for got, want in zip(out.result.persons, direct.persons):
        np.testing.assert_allclose(got.vertices_map, want.vertices_map, atol=1e-5)
    assert any(line.startswith("detection 1 skipped: detections[1].bbox.center.position.x") for line in node.lines)
    assert node.core.counts["boxes_skipped"] == 1
    node.cb.close()


def test_an_unexpected_error_costs_the_frame_and_is_reported_with_its_traceback(f, pipeline, demo_scene):
    class Broken:
        scene, faces = pipeline.scene, pipeline.faces
        weights_description, device = "broken stand-in", "cpu"

        def process(self, *args, **kwargs):
            raise ZeroDivisionError("a bug")

    node = Node(f, Broken())
    node.frame(demo_scene, T0)
    assert node.served() == [] and node.core.errors_by_kind["internal"] == 1
    assert "ZeroDivisionError: a bug" in node.lines[-1] and "Traceback" in node.lines[-1]
    node.core.pipeline = pipeline
    node.frame(demo_scene, T0 + S)
    assert node.served() == [T0 + S]
    node.cb.close()
