"""Behaviour of sahmr_ros.ros.sync: the approximate-time synchroniser and the transform buffer.

Expected values are derived independently: rotation matrices are written out with cos/sin by
hand, chains are explicit matrix products, and the synchroniser is checked against a brute-force
re-statement of its documented emission rule.
"""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace as NS

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sahmr_ros.errors import InputError, SahmrError
from sahmr_ros.ros.sync import (
    ApproximateSynchronizer,
    TransformBuffer,
    TransformUnavailable,
    stamp_to_ns,
    tf2_extrapolation_reason,
)

S = 1_000_000_000  # ns per second
MS = 1_000_000


# ================================================================================================
# helpers (independent of the module under test)
# ================================================================================================
def rot_z(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_x(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def pose(R, t):
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def inv(T):
    return np.linalg.inv(T)


def tf_msg(*items):
    """Duck-typed tf2_msgs/TFMessage from (parent, child, stamp_ns, (x, y, z), (qx, qy, qz, qw))."""
    transforms = []
    for parent, child, stamp, t, q in items:
        transforms.append(NS(
            header=NS(frame_id=parent, stamp=NS(sec=stamp // S, nanosec=stamp % S)),
            child_frame_id=child,
            transform=NS(translation=NS(x=t[0], y=t[1], z=t[2]), rotation=NS(x=q[0], y=q[1], z=q[2], w=q[3])),
        ))
    return NS(transforms=transforms)


# the robot of most tests: map -> odom -> base -> camera (optical: z forward = base x)
T_MAP_ODOM = pose(rot_z(90.0), [10.0, 0.0, 0.0])
T_ODOM_BASE = pose(rot_z(-30.0), [1.0, 2.0, 0.0])
T_BASE_CAMERA = pose(rot_z(-90.0) @ rot_x(-90.0), [0.2, 0.0, 1.5])  # REP-103 body -> optical


def robot(static_camera=True):
    buf = TransformBuffer()
    buf.set_transform("map", "odom", 1 * S, T_MAP_ODOM)
    buf.set_transform("odom", "base", 1 * S, T_ODOM_BASE)
    buf.set_transform("base", "camera", 0, T_BASE_CAMERA, static=static_camera)
    return buf


# ================================================================================================
# TransformBuffer
# ================================================================================================
def test_optical_frame_convention_by_hand():
    # the hand-written body -> optical rotation sends optical z (forward) to body x, optical x
    # (right) to body -y and optical y (down) to body -z
    R = T_BASE_CAMERA[:3, :3]
    assert np.allclose(R @ [0, 0, 1], [1, 0, 0])
    assert np.allclose(R @ [1, 0, 0], [0, -1, 0])
    assert np.allclose(R @ [0, 1, 0], [0, 0, -1])


def test_chain_equals_explicit_product():
    buf = robot()
    T = buf.lookup("map", "camera", 1 * S)
    assert np.allclose(T, T_MAP_ODOM @ T_ODOM_BASE @ T_BASE_CAMERA, atol=1e-12)
    # one point by hand: 2 m in front of the camera -> base (2.2, 0, 1.5)
    # -> odom: Rz(-30) (2.2, 0, 1.5) + (1, 2, 0) = (1 + 2.2 cos30, 2 - 2.2 sin30, 1.5)
    # -> map: Rz(90) (x, y, z) + (10, 0, 0) = (10 - y, x, z)
    x_odom, y_odom = 1 + 2.2 * math.cos(math.radians(30)), 2 - 2.2 * 0.5
    p = T @ [0.0, 0.0, 2.0, 1.0]
    assert np.allclose(p[:3], [10 - y_odom, x_odom, 1.5], atol=1e-12)


def test_inverse_direction_down_the_tree():
    buf = robot()
    T_camera_map = buf.lookup("camera", "map", 1 * S)
    assert np.allclose(T_camera_map, inv(T_MAP_ODOM @ T_ODOM_BASE @ T_BASE_CAMERA), atol=1e-12)
    assert np.allclose(T_camera_map @ buf.lookup("map", "camera", 1 * S), np.eye(4), atol=1e-12)
    assert np.allclose(buf.lookup("base", "map", 1 * S), inv(T_MAP_ODOM @ T_ODOM_BASE), atol=1e-12)


def test_common_ancestor_is_not_the_root():
    buf = robot()
    T_base_lidar = pose(rot_y(10.0), [0.0, 0.1, 1.8])
    buf.set_transform("base", "lidar", 0, T_base_lidar, static=True)
    expected = inv(T_BASE_CAMERA) @ T_base_lidar
    assert np.allclose(buf.lookup("camera", "lidar", 1 * S), expected, atol=1e-12)
    # the path camera <- base -> lidar is all static: times where map/odom have no data still work
    assert np.allclose(buf.lookup("camera", "lidar", 500 * S), expected, atol=1e-12)
    assert np.allclose(buf.lookup("lidar", "camera", 0), inv(expected), atol=1e-12)


def test_same_frame_is_identity():
    buf = TransformBuffer()
    assert np.array_equal(buf.lookup("camera", "camera", 123), np.eye(4))


def test_interpolation_halfway_between_two_yaws():
    buf = TransformBuffer()
    buf.set_transform("odom", "base", 2 * S, pose(rot_z(0.0), [0.0, 0.0, 0.0]))
    buf.set_transform("odom", "base", 4 * S, pose(rot_z(90.0), [2.0, -4.0, 1.0]))
    assert np.allclose(buf.lookup("odom", "base", 3 * S), pose(rot_z(45.0), [1.0, -2.0, 0.5]), atol=1e-12)
    # a quarter of the way: yaw 22.5 deg, translation a quarter of the way
    assert np.allclose(buf.lookup("odom", "base", 2 * S + S // 2), pose(rot_z(22.5), [0.5, -1.0, 0.25]),
                       atol=1e-12)
    # exactly on a sample
    assert np.allclose(buf.lookup("odom", "base", 4 * S), pose(rot_z(90.0), [2.0, -4.0, 1.0]), atol=1e-12)
    # inverse direction interpolates too
    assert np.allclose(buf.lookup("base", "odom", 3 * S), inv(pose(rot_z(45.0), [1.0, -2.0, 0.5])), atol=1e-12)


def test_interpolation_takes_the_short_way_round():
    buf = TransformBuffer()
    buf.set_transform("odom", "base", 0 * S + 1, pose(rot_z(170.0), [0, 0, 0]))
    buf.set_transform("odom", "base", 2 * S + 1, pose(rot_z(-170.0), [0, 0, 0]))
    # halfway between +170 and -170 deg is 180 deg (through the short 20 deg arc), not 0 deg
    assert np.allclose(buf.lookup("odom", "base", 1 * S + 1)[:3, :3], rot_z(180.0), atol=1e-12)


def test_interpolation_with_epoch_stamps_keeps_precision():
    t0 = 1_700_000_000 * S + 123
    buf = TransformBuffer()
    buf.set_transform("odom", "base", t0, pose(rot_z(0.0), [0, 0, 0]))
    buf.set_transform("odom", "base", t0 + 100, pose(rot_z(10.0), [100.0, 0, 0]))
    T = buf.lookup("odom", "base", t0 + 37)
    assert np.allclose(T, pose(rot_z(3.7), [37.0, 0, 0]), atol=1e-12)


def test_out_of_order_samples_are_sorted():
    buf = TransformBuffer(jump_back_s=5.0)  # 2 s out of order: a reorder, not a time jump
    buf.set_transform("odom", "base", 4 * S, pose(rot_z(90.0), [4.0, 0, 0]))
    buf.set_transform("odom", "base", 2 * S, pose(rot_z(0.0), [0.0, 0, 0]))
    assert np.allclose(buf.lookup("odom", "base", 3 * S), pose(rot_z(45.0), [2.0, 0, 0]), atol=1e-12)


def test_static_and_dynamic_mix():
    buf = TransformBuffer()
    buf.set_transform("map", "odom", 0, pose(rot_z(90.0), [5.0, 0, 0]), static=True)  # stamp irrelevant
    buf.set_transform("odom", "base", 100 * S, pose(rot_z(0.0), [0.0, 0, 0]))
    buf.set_transform("odom", "base", 102 * S, pose(rot_z(60.0), [4.0, 0, 0]))
    buf.set_transform("base", "camera", 7 * S, T_BASE_CAMERA, static=True)
    expected = pose(rot_z(90.0), [5.0, 0, 0]) @ pose(rot_z(30.0), [2.0, 0, 0]) @ T_BASE_CAMERA
    assert np.allclose(buf.lookup("map", "camera", 101 * S), expected, atol=1e-12)
    # stamp 0 = latest common time = the newest odom -> base sample
    expected_latest = pose(rot_z(90.0), [5.0, 0, 0]) @ pose(rot_z(60.0), [4.0, 0, 0]) @ T_BASE_CAMERA
    assert np.allclose(buf.lookup("map", "camera", 0), expected_latest, atol=1e-12)
    # a static-only chain is valid at any time
    assert np.allclose(buf.lookup("map", "odom", 1), pose(rot_z(90.0), [5.0, 0, 0]))
    assert np.allclose(buf.lookup("map", "odom", 10**6 * S), pose(rot_z(90.0), [5.0, 0, 0]))
    # a new static value replaces the old one at every time
    buf.set_transform("map", "odom", 0, pose(rot_z(0.0), [1.0, 0, 0]), static=True)
    assert np.allclose(buf.lookup("map", "odom", 1), pose(rot_z(0.0), [1.0, 0, 0]))


def test_latest_common_time_is_the_oldest_newest_sample():
    buf = TransformBuffer()
    buf.set_transform("map", "odom", 4 * S, pose(rot_z(0.0), [0, 0, 0]))
    buf.set_transform("map", "odom", 6 * S, pose(rot_z(20.0), [2, 0, 0]))
    buf.set_transform("odom", "base", 3 * S, pose(rot_z(0.0), [0, 0, 0]))
    buf.set_transform("odom", "base", 5 * S, pose(rot_z(40.0), [0, 4, 0]))
    expected = pose(rot_z(10.0), [1, 0, 0]) @ pose(rot_z(40.0), [0, 4, 0])  # both at t = 5 s
    assert np.allclose(buf.lookup("map", "base", 0), expected, atol=1e-12)
    assert np.allclose(buf.lookup("map", "base", 5 * S), expected, atol=1e-12)


def test_unknown_frame():
    buf = robot()
    with pytest.raises(TransformUnavailable) as exc:
        buf.lookup("map", "camera_typo", 1 * S)
    assert exc.value.reason == "unknown_frame"
    assert isinstance(exc.value, SahmrError)
    msg = str(exc.value)
    assert "'camera_typo'" in msg and "'map'" in msg and "known frames" in msg
    assert (exc.value.target_frame, exc.value.source_frame) == ("map", "camera_typo")
    assert not buf.can_transform("nowhere", "camera", 1 * S)


def test_frames_not_connected():
    buf = robot()
    buf.set_transform("world", "other_robot", 0, np.eye(4), static=True)
    with pytest.raises(TransformUnavailable) as exc:
        buf.lookup("map", "other_robot", 1 * S)
    assert exc.value.reason == "not_connected"
    assert "'map'" in str(exc.value) and "'other_robot'" in str(exc.value) and "'world'" in str(exc.value)


def test_too_old_and_future_with_tolerance():
    buf = TransformBuffer()
    buf.set_transform("map", "odom", 10 * S, np.eye(4))
    buf.set_transform("map", "odom", 11 * S, pose(rot_z(10.0), [1, 0, 0]))
    buf.set_transform("odom", "camera", 0, np.eye(4), static=True)
    with pytest.raises(TransformUnavailable) as exc:
        buf.lookup("map", "camera", 10 * S - 1)
    assert exc.value.reason == "too_old"
    assert "'camera'" in str(exc.value) and "'map'" in str(exc.value) and "older" in str(exc.value)
    with pytest.raises(TransformUnavailable) as exc:
        buf.lookup("camera", "map", 11 * S + 1)
    assert exc.value.reason == "future"
    assert "extrapolation into the future" in str(exc.value)
    # inside the tolerance the end sample is used; one ns beyond it still fails
    tol = 50 * MS
    assert np.allclose(buf.lookup("map", "camera", 10 * S - tol, tolerance_ns=tol), np.eye(4))
    assert np.allclose(buf.lookup("map", "camera", 11 * S + tol, tolerance_ns=tol), pose(rot_z(10.0), [1, 0, 0]))
    with pytest.raises(TransformUnavailable, match="too_old"):
        buf.lookup("map", "camera", 10 * S - tol - 1, tolerance_ns=tol)
    with pytest.raises(TransformUnavailable, match="future"):
        buf.lookup("map", "camera", 11 * S + tol + 1, tolerance_ns=tol)


def test_single_sample_only_at_its_stamp():
    buf = TransformBuffer()
    buf.set_transform("map", "odom", 5 * S, pose(rot_z(30.0), [1, 2, 3]))
    assert np.allclose(buf.lookup("map", "odom", 5 * S), pose(rot_z(30.0), [1, 2, 3]))
    assert np.allclose(buf.lookup("map", "odom", 0), pose(rot_z(30.0), [1, 2, 3]))
    with pytest.raises(TransformUnavailable, match="future"):
        buf.lookup("map", "odom", 5 * S + 1)


def test_cache_pruning():
    buf = TransformBuffer(cache_s=1.0)
    for k in range(7):  # samples at 0, 0.5, ..., 3.0 s
        buf.set_transform("odom", "base", k * S // 2, pose(rot_z(10.0 * k), [k, 0, 0]))
    # the window is [newest - 1 s, newest] = [2 s, 3 s]
    assert np.allclose(buf.lookup("odom", "base", 2 * S), pose(rot_z(40.0), [4, 0, 0]), atol=1e-12)
    with pytest.raises(TransformUnavailable) as exc:
        buf.lookup("odom", "base", 2 * S - 1)
    assert exc.value.reason == "too_old"
    # inside the window, an out-of-order sample is accepted and used
    buf.set_transform("odom", "base", 2 * S + S // 4, pose(rot_z(0.0), [0, 0, 0]))
    assert np.allclose(buf.lookup("odom", "base", 2 * S + S // 4), np.eye(4))
    assert buf.time_jumps == 0


def test_edge_time_jump_back_restarts_its_history():
    """A sample over jump_back_s behind its edge's newest is a jump back: the edge starts over."""
    buf = TransformBuffer(cache_s=10.0, jump_back_s=1.0)
    buf.set_transform("map", "camera", 0, pose(rot_z(5.0), [1, 0, 0]), static=True)
    for k in range(5):
        buf.set_transform("odom", "base", 100 * S + k * S // 4, pose(rot_z(0.0), [k, 0, 0]))
    buf.set_transform("odom", "base", 5 * S, pose(rot_z(90.0), [7, 0, 0]))  # bag loop: back to 5 s
    assert buf.time_jumps == 1
    assert np.allclose(buf.lookup("odom", "base", 5 * S), pose(rot_z(90.0), [7, 0, 0]))
    with pytest.raises(TransformUnavailable) as exc:  # the old history is gone
        buf.lookup("odom", "base", 100 * S)
    assert exc.value.reason == "future"
    assert np.allclose(buf.lookup("map", "camera", 5 * S), pose(rot_z(5.0), [1, 0, 0]))  # static untouched


def test_one_far_future_sample_does_not_block_the_edge_forever():
    """A clock glitch (one sample 1e6 s ahead) costs lookups until the edge's next sample, no more."""
    buf = TransformBuffer(cache_s=10.0)
    now = 1_700_000_000 * S
    buf.set_transform("map", "camera", now, pose(rot_z(0.0), [0, 0, 0]))
    buf.set_transform("map", "camera", now + 10**6 * S, pose(rot_z(0.0), [9, 9, 9]))  # glitch
    buf.set_transform("map", "camera", now + S // 10, pose(rot_z(30.0), [1, 2, 3]))
    buf.set_transform("map", "camera", now + S // 5, pose(rot_z(30.0), [1, 2, 3]))
    assert np.allclose(buf.lookup("map", "camera", now + S // 10 + S // 20), pose(rot_z(30.0), [1, 2, 3]))
    assert buf.time_jumps == 1


def test_clear_forgets_dynamic_history_and_keeps_static():
    buf = TransformBuffer()
    buf.set_transform("map", "odom", 0, pose(rot_z(10.0), [1, 0, 0]), static=True)
    buf.set_transform("odom", "base", 3 * S, pose(rot_z(20.0), [0, 1, 0]))
    buf.clear()
    assert buf.frames() == ["map", "odom"]
    assert np.allclose(buf.lookup("map", "odom", 7 * S), pose(rot_z(10.0), [1, 0, 0]))
    with pytest.raises(TransformUnavailable, match="unknown_frame"):
        buf.lookup("map", "base", 3 * S)
    buf.clear(static=True)
    assert buf.frames() == []


def test_tf2_extrapolation_direction_is_read_from_its_message():
    future = ("Lookup would require extrapolation into the future.  Requested time 12.5 but the latest data "
              "is at time 10.0, when looking up transform from frame [camera] to frame [map]")
    past = ("Lookup would require extrapolation into the past.  Requested time 1.0 but the earliest data "
            "is at time 3.0, when looking up transform from frame [camera] to frame [map]")
    assert tf2_extrapolation_reason(future) == TransformUnavailable.FUTURE
    assert tf2_extrapolation_reason(past) == TransformUnavailable.TOO_OLD


def test_add_tf_message_duck_typed():
    buf = TransformBuffer()
    s45 = math.sin(math.radians(45.0))
    msg = tf_msg(
        ("map", "odom", 1 * S, (10.0, 0.0, 0.0), (0.0, 0.0, s45, s45)),  # yaw 90
        ("odom", "base", 1 * S + 500, (1.0, 2.0, 0.0), (0.0, 0.0, 0.0, 1.0)),
    )
    assert buf.add_tf_message(msg) == 2
    static = tf_msg(("/base", "camera", 0, (0.2, 0.0, 1.5), (0.0, 0.0, 0.0, 2.0)))  # unnormalised quat, slash
    assert buf.add_tf_message(static, static=True) == 1
    assert buf.frames() == ["base", "camera", "map", "odom"]
    assert buf.parent_of("camera") == "base"
    # stamp 0 -> latest common time = min(newest samples) = 1 s, 500 ns before odom -> base's only sample
    with pytest.raises(TransformUnavailable, match="too_old"):
        buf.lookup("map", "camera", 0)
    expected = pose(rot_z(90.0), [10, 0, 0]) @ pose(np.eye(3), [1, 2, 0]) @ pose(np.eye(3), [0.2, 0, 1.5])
    assert np.allclose(buf.lookup("map", "camera", 0, tolerance_ns=500), expected, atol=1e-12)


def test_add_tf_message_rosbags_objects():
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    tfs = T["geometry_msgs/msg/TransformStamped"](
        header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=3, nanosec=7), frame_id="map"),
        child_frame_id="odom",
        transform=T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=1.0, y=2.0, z=3.0),
            rotation=T["geometry_msgs/msg/Quaternion"](x=1.0, y=0.0, z=0.0, w=0.0),  # 180 deg about x
        ),
    )
    msg = T["tf2_msgs/msg/TFMessage"](transforms=[tfs])
    raw = ts.serialize_cdr(msg, "tf2_msgs/msg/TFMessage")
    buf = TransformBuffer()
    assert buf.add_tf_message(ts.deserialize_cdr(raw, "tf2_msgs/msg/TFMessage")) == 1
    assert np.allclose(buf.lookup("map", "odom", 3 * S + 7), pose(rot_x(180.0), [1, 2, 3]), atol=1e-12)


def test_bad_transforms_are_rejected_with_the_field_named():
    buf = TransformBuffer()
    with pytest.raises(InputError, match=r"1 of 2 transforms rejected, 1 stored: transforms\[1\]\.transform\.rotation"):
        buf.add_tf_message(tf_msg(("map", "a", 0, (0, 0, 0), (0, 0, 0, 1)), ("map", "b", 0, (0, 0, 0), (0, 0, 0, 0))))
    assert buf.frames() == ["a", "map"]  # the good transform of the message is kept
    with pytest.raises(InputError, match=r"transforms\[0\]\.child_frame_id"):
        buf.add_tf_message(tf_msg(("map", "", 0, (0, 0, 0), (0, 0, 0, 1))))
    with pytest.raises(InputError, match="rotation block"):
        buf.set_transform("map", "odom", 0, np.diag([2.0, 1.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="own parent"):
        buf.set_transform("map", "map", 0, np.eye(4))
    buf.set_transform("map", "odom", 0, np.eye(4))
    buf.set_transform("odom", "base", 0, np.eye(4))
    with pytest.raises(InputError, match="cycle"):
        buf.set_transform("base", "map", 0, np.eye(4))
    with pytest.raises(InputError, match=r"transforms\[1\]\.child 'x'.*cycle"):
        buf.add_tf_message(tf_msg(("x", "y", 0, (0, 0, 0), (0, 0, 0, 1)), ("y", "x", 0, (0, 0, 0), (0, 0, 0, 1))))
    assert buf.parent_of("y") == "x" and buf.parent_of("x") is None
    with pytest.raises(InputError, match="cache_s"):
        TransformBuffer(cache_s=0)


@pytest.mark.parametrize("bad, field", [
    (("map", "cam", 0, (float("nan"), 0, 0), (0, 0, 0, 1)), "translation"),
    (("map", "cam", 0, (0, 0, 0), (0, 0, 0, 0)), "rotation"),
    (("map", "cam", 0, (0, 0, 0), (float("inf"), 0, 0, 1)), "rotation"),
    (("map", "cam", 0, (0, 0, 0), (1e300, 0, 0, 1)), "rotation"),
    (("map", "", 0, (0, 0, 0), (0, 0, 0, 1)), "child_frame_id"),
    (("", "cam", 0, (0, 0, 0), (0, 0, 0, 1)), "frame_id"),
    (("cam", "cam", 0, (0, 0, 0), (0, 0, 0, 1)), "own parent"),
    (("map", "cam", 0, (2e154, 0, 0), (0, 0, 0, 1)), "from the origin"),
    (("map", "cam", 0, ("x", 0, 0), (0, 0, 0, 1)), "TransformStamped"),
])
def test_one_bad_transform_costs_only_itself(bad, field):
    """What a robot's /tf can carry: each bad transform is named; the good one beside it is stored."""
    buf = TransformBuffer()
    with pytest.raises(InputError, match=field):
        buf.add_tf_message(tf_msg(bad, ("map", "base", 5 * S, (1, 2, 3), (0, 0, 0, 1))))
    assert np.allclose(buf.lookup("map", "base", 5 * S), pose(np.eye(3), [1, 2, 3]))


def test_frame_count_is_bounded():
    buf = TransformBuffer(max_frames=4)
    buf.add_tf_message(tf_msg(("map", "a", 0, (0, 0, 0), (0, 0, 0, 1)), ("map", "b", 0, (0, 0, 0), (0, 0, 0, 1))))
    buf.set_transform("a", "c", 0, np.eye(4))
    with pytest.raises(InputError, match="already knows 4 frames"):
        buf.set_transform("a", "d", 0, np.eye(4))
    buf.set_transform("b", "c", 0, np.eye(4))  # re-parenting a known frame adds none
    assert buf.frames() == ["a", "b", "c", "map"]


def test_nanosec_out_of_range_is_named():
    msg = tf_msg(("map", "cam", 0, (0, 0, 0), (0, 0, 0, 1)))
    msg.transforms[0].header.stamp.nanosec = 10**9
    with pytest.raises(InputError, match=r"transforms\[0\]\.header\.stamp\.nanosec"):
        TransformBuffer().add_tf_message(msg)


def test_reparenting_replaces_the_edge():
    buf = TransformBuffer()
    buf.set_transform("odom", "base", 1 * S, pose(np.eye(3), [1, 0, 0]))
    buf.set_transform("map", "base", 1 * S, pose(np.eye(3), [0, 5, 0]))
    assert buf.parent_of("base") == "map"
    assert "odom" not in buf.frames()
    assert np.allclose(buf.lookup("map", "base", 1 * S), pose(np.eye(3), [0, 5, 0]))


def test_stamp_to_ns():
    assert stamp_to_ns(NS(sec=12, nanosec=345)) == 12 * S + 345
    with pytest.raises(InputError, match="nanosec"):
        stamp_to_ns(NS(sec=1, nanosec=S))
    with pytest.raises(InputError, match="stamp"):
        stamp_to_ns(object())


@settings(max_examples=60, deadline=None)
@given(
    yaws=st.lists(st.floats(-180.0, 180.0), min_size=3, max_size=3),
    tilt=st.floats(-80.0, 80.0),
    shifts=st.lists(st.floats(-5.0, 5.0), min_size=9, max_size=9),
)
def test_property_lookup_is_product_along_the_tree(yaws, tilt, shifts):
    # tree: map -> odom -> base -> {camera, lidar}; every lookup pair equals the explicit product
    Ts = {
        "odom": pose(rot_z(yaws[0]), shifts[0:3]),
        "base": pose(rot_z(yaws[1]) @ rot_x(tilt), shifts[3:6]),
        "camera": pose(rot_y(yaws[2]), shifts[6:9]),
        "lidar": pose(rot_x(yaws[2]), shifts[0:3]),
    }
    parents = {"odom": "map", "base": "odom", "camera": "base", "lidar": "base"}
    buf = TransformBuffer()
    for child, parent in parents.items():
        buf.set_transform(parent, child, 5 * S, Ts[child], static=child in ("camera", "lidar"))

    def in_map(frame):
        T = np.eye(4)
        while frame != "map":
            T = Ts[frame] @ T
            frame = parents[frame]
        return T

    frames = ["map", "odom", "base", "camera", "lidar"]
    for a, b in itertools.permutations(frames, 2):
        assert np.allclose(buf.lookup(a, b, 5 * S), inv(in_map(a)) @ in_map(b), atol=1e-9)


# ================================================================================================
# ApproximateSynchronizer
# ================================================================================================
IMG, INFO, DET = 0, 1, 2


def feed(sync, events):
    """Add (stream, stamp) events; messages are the (stream, stamp) tuples themselves."""
    out = []
    for stream, stamp in events:
        out.extend(sync.add(stream, stamp, (stream, stamp)))
    return out


def stamps_of(sets):
    return [tuple(m[1] for m in s) for s in sets]


def test_exact_stamps_emit_in_stream_order():
    sync = ApproximateSynchronizer(3, slop_s=0.1)
    t = 5 * S
    assert sync.add(DET, t, "det") == []
    assert sync.add(IMG, t, "img") == []
    assert sync.add(INFO, t, "info") == [("img", "info", "det")]
    assert sync.emitted == 1 and sync.dropped == [0, 0, 0]
    assert all(sync.queued(i) == [] for i in range(3))


def test_zero_slop_still_syncs_exact_stamps():
    sync = ApproximateSynchronizer(3, slop_s=0.0)
    out = feed(sync, [(IMG, 10), (INFO, 10), (DET, 11), (IMG, 20), (INFO, 20), (DET, 20)])
    assert stamps_of(out) == [(20, 20, 20)]


@pytest.mark.parametrize("delta, emits", [(100 * MS, True), (100 * MS - 1, True), (100 * MS + 1, False)])
def test_slop_boundary(delta, emits):
    sync = ApproximateSynchronizer(3, slop_s=0.1)
    t = 7 * S
    out = feed(sync, [(IMG, t), (INFO, t + delta // 2), (DET, t + delta)])
    assert (stamps_of(out) == [(t, t + delta // 2, t + delta)]) is emits
    if not emits:
        assert sync.emitted == 0


def test_slop_is_pairwise_not_to_the_pivot():
    # each message is within slop of the pivot (INFO), but IMG and DET are 0.16 s apart
    sync = ApproximateSynchronizer(3, slop_s=0.1)
    assert feed(sync, [(IMG, 1 * S - 80 * MS), (DET, 1 * S + 80 * MS), (INFO, 1 * S)]) == []


def test_dropped_counting_and_stale_arrivals():
    sync = ApproximateSynchronizer(3, slop_s=0.05, queue_size=10)
    ts = [k * 33 * MS for k in range(1, 5)]
    out = feed(sync, [(IMG, t) for t in ts] + [(INFO, t) for t in ts] + [(DET, ts[-1])])
    # the pivot is the detection (its stream is the one lagging): the freshest set wins
    assert stamps_of(out) == [(ts[-1],) * 3]
    assert sync.dropped == [3, 3, 0]
    # arrivals at or before the last emitted stamp of their stream are dropped on arrival
    assert sync.add(DET, ts[0], "late") == []
    assert sync.add(IMG, ts[-1], "dup") == []
    assert sync.dropped == [4, 3, 1]
    assert sync.last_emitted_ns == [ts[-1]] * 3


def test_prefers_exact_stamps_over_closer_in_arrival():
    # a lost detection at t1 must not shift the pairing: t2 images pair with the t2 detection
    sync = ApproximateSynchronizer(3, slop_s=0.1)
    t0, t1, t2 = 1 * S, 1 * S + 33 * MS, 1 * S + 66 * MS
    out = feed(sync, [(IMG, t0), (INFO, t0), (DET, t0), (IMG, t1), (INFO, t1), (IMG, t2), (INFO, t2), (DET, t2)])
    assert stamps_of(out) == [(t0, t0, t0), (t2, t2, t2)]
    assert sync.dropped == [1, 1, 0]


def test_other_streams_choose_closest_to_pivot():
    sync = ApproximateSynchronizer(3, slop_s=0.1)
    out = feed(sync, [(IMG, 1000 * MS), (IMG, 1030 * MS), (IMG, 1060 * MS),
                      (INFO, 1000 * MS), (INFO, 1030 * MS), (INFO, 1060 * MS), (DET, 1041 * MS)])
    assert stamps_of(out) == [(1030 * MS, 1030 * MS, 1041 * MS)]
    assert sync.queued(IMG) == [1060 * MS] and sync.dropped == [1, 1, 0]


def test_unmatched_pivot_waits_for_its_stream():
    sync = ApproximateSynchronizer(3, slop_s=0.01)
    assert feed(sync, [(IMG, 2 * S), (INFO, 2 * S), (DET, 1 * S)]) == []  # detection has no partner
    assert sync.emitted == 0 and sync.queued(DET) == [1 * S]
    out = feed(sync, [(DET, 2 * S)])
    assert stamps_of(out) == [(2 * S,) * 3]
    assert sync.dropped == [0, 0, 1]


def test_out_of_order_arrival_within_a_stream():
    sync = ApproximateSynchronizer(3, slop_s=0.01)
    t0, t1 = 1 * S, 1 * S + 33 * MS
    out = feed(sync, [(IMG, t1), (IMG, t0), (DET, t0), (INFO, t1), (INFO, t0), (DET, t1)])
    assert stamps_of(out) == [(t0, t0, t0), (t1, t1, t1)]
    assert sync.dropped == [0, 0, 0]


def test_queue_bound_drops_oldest():
    sync = ApproximateSynchronizer(3, slop_s=0.1, queue_size=3, jump_back_s=100.0)  # no time jumps here
    feed(sync, [(IMG, k * S) for k in range(1, 6)])
    assert sync.queued(IMG) == [3 * S, 4 * S, 5 * S]
    assert sync.dropped == [2, 0, 0]
    # an out-of-order arrival older than a full queue is itself the oldest: dropped at once
    feed(sync, [(IMG, 1 * S + 1)])
    assert sync.queued(IMG) == [3 * S, 4 * S, 5 * S] and sync.dropped == [3, 0, 0]
    out = feed(sync, [(INFO, 4 * S), (DET, 4 * S)])
    assert stamps_of(out) == [(4 * S,) * 3]
    assert sync.queued(IMG) == [5 * S] and sync.dropped == [4, 0, 0]


def test_duplicate_stamp_replaces_and_counts():
    sync = ApproximateSynchronizer(2, slop_s=0.0)
    sync.add(0, 5, "first")
    sync.add(0, 5, "second")
    assert sync.dropped == [1, 0]
    assert sync.add(1, 5, "b") == [("second", "b")]


def test_reset_forgets_queues_and_last_stamps():
    sync = ApproximateSynchronizer(2, slop_s=0.0)
    feed(sync, [(0, 10), (1, 10), (0, 20)])
    sync.reset()
    assert sync.queued(0) == [] and sync.last_emitted_ns == [None, None]
    assert stamps_of(feed(sync, [(0, 5), (1, 5)])) == [(5, 5)]  # time went backwards: accepted again


def test_jump_back_resets_after_a_future_stamped_frame():
    """One complete frame stamped 1e6 s ahead (a clock glitch): the next real frame is served."""
    sync = ApproximateSynchronizer(3, slop_s=0.01)
    now = 1_700_000_000 * S
    assert stamps_of(feed(sync, [(IMG, now), (INFO, now), (DET, now)])) == [(now,) * 3]
    future = now + 10**6 * S
    assert stamps_of(feed(sync, [(IMG, future), (INFO, future), (DET, future)])) == [(future,) * 3]
    t = now + S // 10
    assert stamps_of(feed(sync, [(IMG, t), (INFO, t), (DET, t)])) == [(t,) * 3]
    assert sync.time_jumps == 3  # each stream starts over when its own time jumps


def test_lone_future_images_block_only_until_the_next_image():
    sync = ApproximateSynchronizer(3, slop_s=0.01, queue_size=4)
    now = 1_700_000_000 * S
    feed(sync, [(IMG, now + 10**6 * S + k) for k in range(4)])  # a full queue of future images
    out = []
    for k in range(1, 4):
        t = now + k * 33 * MS
        out += feed(sync, [(IMG, t), (INFO, t), (DET, t)])
    assert stamps_of(out) == [(now + k * 33 * MS,) * 3 for k in range(1, 4)]
    assert sync.time_jumps == 1 and sync.dropped[IMG] == 4


def test_bag_loop_replays_every_frame_again():
    sync = ApproximateSynchronizer(3, slop_s=0.01)
    stamps = [k * S // 2 for k in range(10, 20)]  # a 5 s bag, replayed twice
    out = []
    for _ in range(2):
        for t in stamps:
            out += feed(sync, [(IMG, t), (INFO, t), (DET, t)])
    assert stamps_of(out) == [(t,) * 3 for t in stamps] * 2
    assert sync.time_jumps == 3


def test_a_glitch_on_one_stream_costs_no_frame_of_the_others():
    sync = ApproximateSynchronizer(3, slop_s=0.01)
    now = 1_700_000_000 * S
    feed(sync, [(DET, now + 10**6 * S)])  # one detection stamped far in the future
    out = feed(sync, [(IMG, now), (INFO, now), (DET, now)])  # the image and info queued before the jump stay
    assert stamps_of(out) == [(now,) * 3] and sync.time_jumps == 1 and sync.dropped == [0, 0, 1]


def test_small_reorders_are_not_time_jumps():
    sync = ApproximateSynchronizer(3, slop_s=0.01, jump_back_s=1.0)
    feed(sync, [(IMG, 10 * S), (INFO, 10 * S), (DET, 10 * S)])
    assert feed(sync, [(IMG, 10 * S - 900 * MS)]) == []  # stale: dropped, no reset
    assert sync.time_jumps == 0 and sync.last_emitted_ns == [10 * S] * 3


def test_synchronizer_rejects_bad_arguments():
    with pytest.raises(InputError, match="slop_s"):
        ApproximateSynchronizer(3, slop_s=-0.1)
    with pytest.raises(InputError, match="queue_size"):
        ApproximateSynchronizer(3, queue_size=0)
    with pytest.raises(InputError, match="n_streams"):
        ApproximateSynchronizer(0)
    with pytest.raises(InputError, match="jump_back_s"):
        ApproximateSynchronizer(3, jump_back_s=0)
    sync = ApproximateSynchronizer(3)
    with pytest.raises(InputError, match="stream_index"):
        sync.add(3, 0, None)
    with pytest.raises(InputError, match="stamp_ns"):
        sync.add(0, 1.5, None)
    with pytest.raises(InputError, match="stamp_ns"):
        sync.add(0, -1, None)


class ReferenceSync:
    """Brute-force restatement of the documented emission rule (every product of queued messages)."""

    def __init__(self, n, slop_ns, queue_size):
        self.n, self.slop, self.qs = n, slop_ns, queue_size
        self.q = [dict() for _ in range(n)]
        self.last = [None] * n

    def add(self, i, t):
        if self.last[i] is not None and t <= self.last[i]:
            return []
        self.q[i][t] = (i, t)
        if len(self.q[i]) > self.qs:
            del self.q[i][min(self.q[i])]
        out = []
        while all(self.q):
            newest = [max(q) for q in self.q]
            piv = min(range(self.n), key=lambda j: (newest[j], j))
            p = newest[piv]
            cands = [c for c in itertools.product(*[sorted(q) for q in self.q])
                     if c[piv] == p and max(c) - min(c) <= self.slop]
            if not cands:
                break
            best = min(cands, key=lambda c: (sum(abs(t - p) for t in c), -sum(c), tuple(-t for t in c)))
            out.append(tuple(self.q[j][best[j]] for j in range(self.n)))
            for j in range(self.n):
                self.q[j] = {t: m for t, m in self.q[j].items() if t > best[j]}
                self.last[j] = best[j]
        return out


events_strategy = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 40).map(lambda k: k * 10 * MS)), min_size=1, max_size=60
)


@settings(max_examples=150, deadline=None)
@given(events=events_strategy, slop_ms=st.sampled_from([0, 10, 25, 50]), queue_size=st.integers(1, 6))
def test_property_invariants_and_reference(events, slop_ms, queue_size):
    sync = ApproximateSynchronizer(3, slop_s=slop_ms / 1000, queue_size=queue_size)
    ref = ReferenceSync(3, slop_ms * MS, queue_size)
    out = []
    for stream, stamp in events:
        got = sync.add(stream, stamp, (stream, stamp))
        assert got == ref.add(stream, stamp)
        out.extend(got)
    prev = None
    for s in out:
        ts = [m[1] for m in s]
        assert [m[0] for m in s] == [0, 1, 2]
        assert max(ts) - min(ts) <= slop_ms * MS
        if prev is not None:
            assert all(a < b for a, b in zip(prev, ts))  # every stream's stamps strictly increase
        prev = ts
    # conservation: every added message is emitted, dropped or still queued
    for j in range(3):
        n_added = sum(1 for e in events if e[0] == j)
        assert n_added == len(out) + sync.dropped[j] + len(sync.queued(j))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), stamps=st.lists(st.integers(0, 10**6), min_size=1, max_size=25, unique=True),
       slop_ms=st.sampled_from([0, 5, 100]))
def test_property_equal_stamps_all_emitted_exactly_once(data, stamps, slop_ms):
    # every stream delivers the same stamps in order; the interleaving across streams is arbitrary
    stamps = sorted(s * MS // 7 for s in stamps)
    streams = data.draw(st.permutations([j for j in range(3) for _ in stamps]))
    pos = [0, 0, 0]
    sync = ApproximateSynchronizer(3, slop_s=slop_ms / 1000, queue_size=len(stamps))
    out = []
    for j in streams:
        t = stamps[pos[j]]
        pos[j] += 1
        out.extend(sync.add(j, t, (j, t)))
    assert stamps_of(out) == [(t, t, t) for t in stamps]
    assert sync.dropped == [0, 0, 0]


def test_runs_long_streams_quickly():
    # 30 Hz images + info, 10 Hz detections (offset 3 ms), 60 s: one set per detection
    sync = ApproximateSynchronizer(3, slop_s=0.01, queue_size=10)
    out = []
    for k in range(1800):
        t = k * S // 30
        out += sync.add(IMG, t, (IMG, t))
        out += sync.add(INFO, t, (INFO, t))
        if k % 3 == 0:
            out += sync.add(DET, t + 3 * MS, (DET, t + 3 * MS))
    assert len(out) == 600
    assert all(s[0][1] == s[1][1] == s[2][1] - 3 * MS for s in out)
