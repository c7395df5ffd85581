"""Tracks and temporal smoothing (sahmr_ros.tracking), on synthetic trajectories independent of the networks.

The tracker on crossing, occluded, re-appearing people and on detector-given ids; time jumps; the
filters against hand-derived values; smoothing lowers the acceleration error of a noisy walker and its
lag stays under the bounds stated here; the temporal metrics against known shifts.
"""

from __future__ import annotations

import numpy as np
import pytest

from sahmr_ros.errors import InputError
from sahmr_ros.evaluation.temporal import acceleration, acceleration_error, trajectory_lag
from sahmr_ros.pipeline import PersonResult
from sahmr_ros.tracking import (
    ConstantVelocityKalman,
    OneEuroFilter,
    PeopleTracker,
    Tracker,
    TrackingParams,
    box_iou,
    id_to_marker,
)

NS = 1_000_000_000
FPS = 10.0
T0 = 1_700_000_000 * NS

# Bounds this project states for the default parameters at 10 frames/s on the noisy walker below.
ROOT_LAG_BOUND_FRAMES = 0.5  # the Kalman root: no lag at constant velocity
POSE_LAG_BOUND_FRAMES = 1.0  # the One-Euro pose: at most one frame (100 ms) behind
JITTER_REDUCTION = 0.5  # smoothed acceleration error at most half the raw one


def stamp(frame: int, fps: float = FPS) -> int:
    return T0 + int(round(frame * NS / fps))


def person(root, box, vertices_rel=None, joints_rel=None, flags=()) -> PersonResult:
    root = np.asarray(root, np.float32)
    vertices_rel = np.zeros((20, 3), np.float32) if vertices_rel is None else vertices_rel
    joints_rel = np.zeros((14, 3), np.float32) if joints_rel is None else joints_rel
    return PersonResult(
        box_index=0, box_xyxy=np.asarray(box, np.float64), score=1.0, root_map=root,
        root_camera=np.zeros(3), coarse_root_camera=np.zeros(3),
        joints14_map=(root + joints_rel).astype(np.float32), vertices_map=(root + vertices_rel).astype(np.float32),
        contact_points_map=np.zeros((0, 3), np.float32), contact_labels=np.zeros(0, np.int64), num_roi_voxels=1,
        flags=tuple(flags))


def box_at(u: float, width: float = 80.0, height: float = 200.0, v: float = 300.0):
    return (u - width / 2, v - height / 2, u + width / 2, v + height / 2)


# -- filters ------------------------------------------------------------------------------------------
def test_one_euro_first_value_passes_and_a_constant_stays_bit_exact():
    f = OneEuroFilter(1.0, 1.0, 1.0)
    x = np.random.default_rng(0).normal(size=(6890, 3)).astype(np.float32)
    assert np.array_equal(f(x, 0.0), x)
    for _ in range(5):
        assert np.array_equal(f(x, 0.1), x)
    with pytest.raises(InputError, match="dt_s"):
        f(x, 0.0)


def test_one_euro_at_rest_is_the_first_order_low_pass():
    """beta = 0: the cut-off is min_cutoff everywhere, alpha = r / (r + 1), r = 2 pi fc dt."""
    f = OneEuroFilter(2.0, 0.0, 1.0)
    f(np.zeros((1, 3)), 0.0)
    out = f(np.ones((1, 3)), 0.05)
    r = 2 * np.pi * 2.0 * 0.05
    np.testing.assert_allclose(out, r / (r + 1), rtol=1e-12)


def test_one_euro_cutoff_is_per_point():
    """A fast point is followed closely, a slow one smoothed; each point has its own cut-off."""
    f = OneEuroFilter(0.5, 5.0, 1.0)
    f(np.zeros((2, 3)), 0.0)
    for k in range(1, 6):
        out = f(np.array([[k * 0.3, 0, 0], [k * 0.001, 0, 0]]), 0.1)
    assert out[0, 0] / (5 * 0.3) > 0.8
    assert out[1, 0] / (5 * 0.001) < 0.6


def test_kalman_follows_constant_velocity_without_lag():
    kf = ConstantVelocityKalman(np.zeros(3), accel_noise=2.0, measurement_noise=0.1)
    velocity = np.array([1.2, -0.4, 0.0])
    for k in range(1, 60):
        kf.update(velocity * k * 0.1, 0.1)
    np.testing.assert_allclose(kf.position, velocity * 5.9, atol=1e-4)
    np.testing.assert_allclose(kf.velocity, velocity, atol=1e-3)
    np.testing.assert_allclose(kf.predict_position(0.5), velocity * 6.4, atol=1e-3)
    assert np.allclose(kf.cov, kf.cov.T)
    with pytest.raises(InputError, match="measurement"):
        kf.update([np.nan, 0, 0], 0.1)


def test_box_iou_against_hand_values():
    iou = box_iou([[0, 0, 10, 10], [0, 0, 0, 10]], [[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou, [[50 / 150, 1.0, 0.0], [0.0, 0.0, 0.0]])


def test_params_are_checked_and_read_from_a_mapping():
    assert TrackingParams.from_mapping({"tracking.beta": 0.5, "gate_iou": 0.2}) == TrackingParams(beta=0.5,
                                                                                                  gate_iou=0.2)
    for bad, field in (({"min_cutoff_hz": 0.0}, "min_cutoff_hz"), ({"gate_iou": 1.5}, "gate_iou"),
                       ({"beta": float("nan")}, "beta"), ({"smoothing": 1}, "smoothing"),
                       ({"track_timeout_s": -1.0}, "track_timeout_s")):
        with pytest.raises(InputError, match=f"tracking.{field}"):
            TrackingParams(**bad)
    with pytest.raises(InputError, match="unknown"):
        TrackingParams.from_mapping({"tracking.cutoff": 1.0})


# -- the tracker --------------------------------------------------------------------------------------
def test_detector_ids_are_the_track_ids():
    tracker = Tracker()
    roots = np.array([[1.0, 0, 1], [3.0, 0, 1]])
    boxes = np.array([box_at(100), box_at(400)])
    first = tracker.update(stamp(0), boxes, roots, ["7", "person-a"])
    assert [t.track_id for t in first.tracks] == ["7", "person-a"]
    assert [t.marker_id for t in first.tracks] == [7, id_to_marker("person-a")]
    assert all(t.from_detector for t in first.tracks)
    # the detector swaps the order and the people swap places: the ids, not the geometry, decide
    second = tracker.update(stamp(1), boxes, roots, ["person-a", "7"])
    assert [t.track_id for t in second.tracks] == ["person-a", "7"]
    assert second.tracks[1] is first.tracks[0] and not second.born
    # a repeated id in one frame is used once; the repeat is tracked by geometry
    third = tracker.update(stamp(2), boxes, roots, ["7", "7"])
    assert third.tracks[0].track_id == "7" and third.tracks[1].track_id == "t1"


def _walk(frames: int, start, velocity, u0: float, du: float):
    roots = np.asarray(start, float) + np.arange(frames)[:, None] * np.asarray(velocity, float) / FPS
    boxes = np.array([box_at(u0 + k * du) for k in range(frames)])
    return roots, boxes


def test_crossing_people_keep_their_tracks():
    """Two people cross in the image (their boxes overlap for several frames) at different depths."""
    frames = 40
    roots_a, boxes_a = _walk(frames, [3.0, -2.0, 0.9], [0.0, 1.0, 0.0], 100.0, 12.0)
    roots_b, boxes_b = _walk(frames, [6.0, 2.0, 0.9], [0.0, -1.0, 0.0], 556.0, -12.0)
    assert box_iou(boxes_a[19:20], boxes_b[19:20])[0, 0] == 1.0  # they do cross in the image
    tracker = Tracker()
    ids = []
    for k in range(frames):
        order = [0, 1] if k % 2 else [1, 0]  # the detector lists them in any order
        boxes = np.array([(boxes_a, boxes_b)[j][k] for j in order])
        roots = np.array([(roots_a, roots_b)[j][k] for j in order])
        step = tracker.update(stamp(k), boxes, roots)
        by_person = {order[i]: step.tracks[i].track_id for i in range(2)}
        ids.append((by_person[0], by_person[1]))
    assert set(ids) == {ids[0]} and ids[0][0] != ids[0][1]


def test_occluded_person_keeps_the_track_and_reappearing_later_gets_a_new_one():
    tracker = Tracker(TrackingParams(track_timeout_s=1.0))
    roots_a, boxes_a = _walk(60, [3.0, -1.0, 0.9], [0.0, 1.0, 0.0], 150.0, 10.0)
    roots_b, boxes_b = _walk(60, [5.0, 1.0, 0.9], [0.0, 0.0, 0.0], 500.0, 0.0)
    hidden = set(range(10, 16)) | set(range(30, 45))  # 0.6 s: kept; 1.5 s: ended
    seen = {}
    for k in range(60):
        people = [1] if k in hidden else [0, 1]
        boxes = np.array([(boxes_a, boxes_b)[j][k] for j in people])
        roots = np.array([(roots_a, roots_b)[j][k] for j in people])
        step = tracker.update(stamp(k), boxes, roots)
        for j, track in zip(people, step.tracks):
            seen.setdefault(j, []).append((k, track.track_id))
    a_ids = [tid for k, tid in seen[0]]
    assert {tid for k, tid in seen[0] if k < 30} == {"t1"}  # through the 0.6 s occlusion
    assert {tid for k, tid in seen[0] if k >= 45} == {"t3"}  # after 1.5 s: a new track
    assert {tid for _, tid in seen[1]} == {"t2"} and len(a_ids) == 60 - len(hidden)


def test_gates_admit_either_cue_and_a_jumping_root_is_an_outlier():
    tracker = Tracker(TrackingParams(gate_root_m=1.0, gate_iou=0.3))
    for k in range(5):
        tracker.update(stamp(k), np.array([box_at(100)]), np.array([[2.0, 0, 1]]))
    # same box, root estimate jumped 3 m (a bad depth estimate): the IoU admits it, the root filter
    # down-weights it (robust update) instead of jumping along
    step = tracker.update(stamp(5), np.array([box_at(100)]), np.array([[5.0, 0, 1]]))
    (track,) = step.tracks
    assert track.track_id == "t1" and step.root_outliers == 1 and track.root_filter.last_weight < 0.2
    assert np.linalg.norm(track.root_filter.position - [2.0, 0, 1]) < 0.6  # bounded influence: ~3.4 sigma
    # box far away in the image (the camera turned), root close to the prediction: the root admits it
    step = tracker.update(stamp(6), np.array([box_at(600)]), np.array([[2.6, 0, 1]]))
    assert step.tracks[0].track_id == "t1" and step.root_outliers == 0
    # both far: a new person
    step = tracker.update(stamp(7), np.array([box_at(100)]), np.array([[20.0, 0, 1]]))
    assert step.tracks[0].track_id == "t2" and step.born == ["t2"]


def test_robust_kalman_follows_a_person_who_really_moved():
    """An offset that persists is not an outlier for long: the filter gets there within a few frames."""
    robust = ConstantVelocityKalman(np.zeros(3), accel_noise=2.0, measurement_noise=0.1)
    plain = ConstantVelocityKalman(np.zeros(3), accel_noise=2.0, measurement_noise=0.1, huber_k=None)
    for kf in (robust, plain):
        for _ in range(10):
            kf.update(np.zeros(3), 0.1)
    steps = [[kf.update(np.array([1.0, 0, 0]), 0.1)[0] for _ in range(15)] for kf in (robust, plain)]
    assert steps[0][0] < 0.7 * steps[1][0] and plain.last_weight == 1.0  # the first jump is doubted ...
    assert steps[0][-1] == pytest.approx(1.0, abs=0.01)  # ... but a lasting one is followed


def test_time_jump_back_and_far_forward_reset_and_stale_frames_are_not_tracked():
    tracker = Tracker(TrackingParams(time_jump_s=1.0, track_timeout_s=2.0))
    boxes, roots = np.array([box_at(100)]), np.array([[2.0, 0, 1]])
    tracker.update(stamp(10), boxes, roots)
    tracker.update(stamp(11), boxes, roots)
    stale = tracker.update(stamp(11), boxes, roots)  # a duplicate stamp
    assert stale.stale and stale.tracks == [None]
    assert tracker.update(stamp(5), boxes, roots).stale  # 0.6 s back: out of order, not a jump
    back = tracker.update(stamp(11) - 3 * NS, boxes, roots)  # 3 s back: a loop of the bag
    assert back.reset == "time_jump_back" and back.ended == ["t1"] and back.tracks[0].track_id == "t1"
    assert tracker.tracks[(False, "t1")].hits == 1
    forward = tracker.update(stamp(11) + 60 * NS, boxes, roots)
    assert forward.reset == "time_jump_forward" and tracker.resets == 2


def test_non_finite_or_malformed_input_is_not_tracked_and_shapes_are_checked():
    tracker = Tracker()
    step = tracker.update(stamp(0), np.array([box_at(100), box_at(300)]), np.array([[np.nan, 0, 0], [1.0, 0, 1]]))
    assert step.tracks[0] is None and step.tracks[1].track_id == "t1"
    with pytest.raises(InputError, match="boxes, roots"):
        tracker.update(stamp(1), np.zeros((2, 4)), np.zeros((3, 3)))
    with pytest.raises(InputError, match="detection_ids"):
        tracker.update(stamp(1), np.zeros((1, 4)), np.zeros((1, 3)), ["a", "b"])


# -- smoothing ----------------------------------------------------------------------------------------
def _noisy_walker(frames=100, seed=0, vertices=6890):
    """Ground truth and noisy estimates of a person walking at 1.2 m/s, limbs swinging at 1 Hz."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / FPS
    root_gt = np.stack([1.2 * t, 0.3 * np.ones_like(t), 0.95 + 0.02 * np.sin(2 * np.pi * 2 * t)], axis=1)
    template = rng.normal(0, 0.3, (vertices + 14, 3))
    swing = 0.25 * np.sin(2 * np.pi * 1.0 * t)[:, None, None] * (template[None, :, 2:3] < 0)  # the legs swing
    rel_gt = template[None] + swing * np.array([1.0, 0, 0])
    root_est = root_gt + rng.normal(0, 0.05, root_gt.shape)  # 5 cm root noise
    rel_est = rel_gt + rng.normal(0, 0.015, rel_gt.shape)  # 1.5 cm pose noise
    return root_gt, rel_gt, root_est, rel_est


def test_smoothing_lowers_jitter_and_its_lag_stays_under_the_stated_bounds():
    root_gt, rel_gt, root_est, rel_est = _noisy_walker()
    tracker = PeopleTracker(TrackingParams())
    raw, smoothed = [], []
    for k in range(len(root_gt)):
        p = person(root_est[k], box_at(100 + 5 * k), rel_est[k, :-14], rel_est[k, -14:])
        frame = tracker.update(stamp(k), [p], None)
        (tp,) = frame.persons
        assert tp.track_id == "t1" and tp.is_smoothed and tp.raw is p
        raw.append(tp.raw.joints14_map)
        smoothed.append(tp.smoothed.joints14_map)
        assert tp.smoothed.vertices_map.dtype == np.float32 and tp.smoothed.vertices_map.shape == (6890, 3)
    joints_gt = root_gt[:, None] + rel_gt[:, -14:]
    raw, smoothed = np.array(raw), np.array(smoothed)
    accel_raw = acceleration_error(raw, joints_gt).mean()
    accel_smoothed = acceleration_error(smoothed, joints_gt).mean()
    assert accel_smoothed < JITTER_REDUCTION * accel_raw, (accel_raw, accel_smoothed)

    def g_mpjpe(x):
        return np.linalg.norm(x[5:] - joints_gt[5:], axis=-1).mean()

    assert g_mpjpe(smoothed) < g_mpjpe(raw)
    # lags (positive: behind): the root as the mean joint, the pose as the joints relative to it
    root_lag = trajectory_lag(smoothed.mean(axis=1), joints_gt.mean(axis=1))
    pose_lag = trajectory_lag(smoothed - smoothed.mean(axis=1, keepdims=True),
                              joints_gt - joints_gt.mean(axis=1, keepdims=True))
    print(f"accel error raw {accel_raw:.1f} smoothed {accel_smoothed:.1f} mm/frame^2; G-MPJPE raw "
          f"{1000 * g_mpjpe(raw):.1f} smoothed {1000 * g_mpjpe(smoothed):.1f} mm; lag root {root_lag:.2f} "
          f"pose {pose_lag:.2f} frames")
    assert abs(root_lag) <= ROOT_LAG_BOUND_FRAMES, root_lag
    assert pose_lag <= POSE_LAG_BOUND_FRAMES, pose_lag


def test_first_frame_of_a_track_and_a_still_person_pass_bit_exact():
    tracker = PeopleTracker()
    rng = np.random.default_rng(1)
    p = person([1.0, 2.0, 0.9], box_at(100), rng.normal(0, 0.3, (6890, 3)).astype(np.float32))
    for k in range(4):
        (tp,) = tracker.update(stamp(k), [p], ["1"]).persons
        for name in ("root_map", "joints14_map", "vertices_map"):
            assert np.array_equal(getattr(tp.smoothed, name), getattr(p, name)), (k, name)


def test_smoothing_off_and_untracked_persons_pass_the_raw_object():
    off = PeopleTracker(TrackingParams(smoothing=False))
    p = person([1.0, 0, 1], box_at(100))
    (tp,) = off.update(stamp(0), [p]).persons
    assert tp.smoothed is p and tp.track_id == "t1" and not tp.is_smoothed
    tracker = PeopleTracker()
    bad = person([1.0, 0, 1], box_at(100), flags=("non_finite_output",))
    bad.vertices_map[0] = np.nan
    frame = tracker.update(stamp(0), [bad, p])
    assert frame.persons[0].track_id == "" and frame.persons[0].smoothed is bad
    assert frame.persons[1].track_id == "t1"
    # an out-of-order frame: passed through untracked
    frame = tracker.update(stamp(0) - NS // 2, [p])
    assert frame.stale and frame.persons[0].track_id == "" and tracker.stale_frames == 1


def test_time_jump_resets_the_smoothing():
    tracker = PeopleTracker()
    for k in range(5):
        tracker.update(stamp(k), [person([0.1 * k, 0, 1], box_at(100))])
    jumped = person([5.0, 0, 1], box_at(100))
    frame = tracker.update(stamp(0) - 10 * NS, [jumped])
    assert frame.reset == "time_jump_back" and frame.persons[0].track_id == "t1"
    assert np.array_equal(frame.persons[0].smoothed.root_map, jumped.root_map)  # no memory of before the jump


# -- temporal metrics ---------------------------------------------------------------------------------
def test_acceleration_error_against_hand_values():
    t = np.arange(10, dtype=float)
    gt = np.stack([t, 0 * t, 0 * t], 1)  # constant velocity: zero acceleration
    pred = gt.copy()
    pred[5, 0] += 0.01  # a 10 mm blip: accelerations -10, +20, -10 mm/frame^2 around it
    err = acceleration_error(pred, gt)
    np.testing.assert_allclose(err, [0, 0, 0, 10, 20, 10, 0, 0], atol=1e-9)
    np.testing.assert_allclose(acceleration(pred), err, atol=1e-9)
    quadratic = np.stack([0.5 * 0.002 * t**2, 0 * t, 0 * t], 1)  # 2 mm/frame^2
    np.testing.assert_allclose(acceleration(quadratic), 2.0, atol=1e-9)
    with pytest.raises(InputError, match="same shape"):
        acceleration_error(pred[:5], gt)


@pytest.mark.parametrize("shift", [0.0, 1.0, 2.5, -1.5])
def test_trajectory_lag_finds_a_known_shift(shift):
    t = np.arange(80, dtype=float)
    gt = np.stack([np.sin(2 * np.pi * t / 20), np.cos(2 * np.pi * t / 27), 0.01 * t], 1)
    delayed = np.stack([np.sin(2 * np.pi * (t - shift) / 20), np.cos(2 * np.pi * (t - shift) / 27),
                        0.01 * (t - shift)], 1)
    assert trajectory_lag(delayed, gt) == pytest.approx(shift, abs=0.02)


# -- the node's core: track ids, marker ids and smoothed meshes in the published messages ----------------
class _ScriptedPipeline:
    """Stands in for the Pipeline: each ``process`` returns the next frame's scripted persons."""

    faces = np.array([[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    scene = np.zeros((4, 3))
    weights_description = "scripted"
    device = "cpu"

    def __init__(self, frames):
        self.frames = list(frames)

    def process(self, image, K, T_map_camera, boxes, scores=None):
        from dataclasses import replace

        from sahmr_ros.pipeline import FrameResult

        persons = self.frames.pop(0)
        np.testing.assert_allclose(boxes, [p.box_xyxy for p in persons])  # the detections are the scripted boxes
        return FrameResult(persons=[replace(p, box_index=i) for i, p in enumerate(persons)], timings_ms={"total": 1.0})


@pytest.fixture(scope="module")
def ts():
    from sahmr_ros.ros.interfaces import make_typestore

    return make_typestore()


def _run_core(ts, frames, ids=None, stamps=None, tracking=TrackingParams()):
    """Feed scripted frames through PerceptionCore with real messages; returns the FrameOutputs."""
    from sahmr_ros.ros.conversions import boxes_to_detections, intrinsics_to_camera_info, rgb_to_image
    from sahmr_ros.ros.core import FrameInput, NodeParams, PerceptionCore
    from sahmr_ros.ros.messages import RosbagsFactory, ns_to_time

    f = RosbagsFactory(ts)
    core = PerceptionCore(_ScriptedPipeline(frames), NodeParams(), f, tracking=tracking)
    image = np.zeros((480, 640, 3), np.uint8)
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    outs = []
    for k, persons in enumerate(frames):
        t = stamp(k) if stamps is None else stamps[k]
        h = f.make("std_msgs/msg/Header", stamp=ns_to_time(f, t), frame_id="camera")
        det_ids = [""] * len(persons) if ids is None else ids[k]
        dets = boxes_to_detections(f, h, np.array([p.box_xyxy for p in persons]).reshape(-1, 4), ids=det_ids)
        frame = FrameInput(rgb_to_image(f, h, image), intrinsics_to_camera_info(f, h, K, 640, 480), dets, t)
        out = core.handle(frame, lambda *args: np.eye(4))
        assert out.error is None, out.error
        outs.append(out)
    return core, outs


def _crossing_frames(frames=24, seed=0):
    rng = np.random.default_rng(seed)
    roots_a, boxes_a = _walk(frames, [3.0, -1.2, 0.9], [0.0, 1.0, 0.0], 200.0, 10.0)
    roots_b, boxes_b = _walk(frames, [5.0, 1.2, 0.9], [0.0, -1.0, 0.0], 430.0, -10.0)
    shape = rng.normal(0, 0.3, (7, 3)).astype(np.float32)
    out = []
    for k in range(frames):
        people = [person(r[k] + rng.normal(0, 0.03, 3), b[k], shape + rng.normal(0, 0.01, shape.shape).astype(
            np.float32)) for r, b in ((roots_a, boxes_a), (roots_b, boxes_b))]
        out.append(people if k % 3 else people[::-1])  # the detector lists them in any order
    return out


def _cdr(ts, msg, msgtype):
    return ts.deserialize_cdr(ts.serialize_cdr(msg, msgtype), msgtype)


def test_core_publishes_stable_track_ids_marker_ids_and_colours(ts):
    frames = _crossing_frames()
    core, outs = _run_core(ts, frames)
    ids_by_person, markers_by_track = {}, {}
    for persons, out in zip(frames, outs):
        humans = _cdr(ts, out.humans, "sahmr_ros/msg/HumanMeshArray").humans  # the real serialiser
        markers = _cdr(ts, out.markers, "visualization_msgs/msg/MarkerArray").markers
        assert markers[0].action == 3 and len(markers) == 3
        for p, h, m in zip(persons, humans, markers[1:]):
            who = 0 if p.root_map[0] < 4 else 1  # person a walks at x = 3 m, b at x = 5 m
            ids_by_person.setdefault(who, set()).add(h.track_id)
            markers_by_track.setdefault(h.track_id, set()).add((m.id, m.color.r, m.color.g, m.color.b))
            assert h.id == ""  # the detector gave no id: only the track id is set
    assert ids_by_person == {0: {"t1"}, 1: {"t2"}} or ids_by_person == {0: {"t2"}, 1: {"t1"}}
    assert all(len(v) == 1 for v in markers_by_track.values())  # one marker id and colour per track
    assert {next(iter(v))[0] for v in markers_by_track.values()} == {1, 2}
    _, _, values = core.status()
    assert values["tracks_active"] == 2 and values["tracks_started"] == 2 and values["published"] == "smoothed"


@pytest.mark.parametrize("publish_smoothed", [True, False])
def test_core_publishes_what_publish_smoothed_chooses_and_keeps_both(ts, publish_smoothed):
    frames = _crossing_frames(frames=8)
    _, outs = _run_core(ts, frames, tracking=TrackingParams(publish_smoothed=publish_smoothed))
    last = outs[-1]
    humans = _cdr(ts, last.humans, "sahmr_ros/msg/HumanMeshArray").humans
    for h, tp in zip(humans, last.tracks):
        chosen, other = (tp.smoothed, tp.raw) if publish_smoothed else (tp.raw, tp.smoothed)
        np.testing.assert_array_equal(h.vertices.reshape(-1, 3), chosen.vertices_map)
        np.testing.assert_array_equal(h.joints.reshape(-1, 3), chosen.joints14_map)
        assert (h.root.x, h.root.y, h.root.z) == tuple(np.float64(chosen.root_map))
        assert not np.array_equal(chosen.vertices_map, other.vertices_map)  # the two really differ
        assert h.track_id == tp.track_id and tp.raw is last.result.persons[last.tracks.index(tp)]


def test_core_uses_detector_ids_as_track_ids(ts):
    frames = _crossing_frames(frames=6)
    ids = [["7", "person-b"] if k % 3 else ["person-b", "7"] for k in range(6)]
    _, outs = _run_core(ts, frames, ids=ids)
    for out, frame_ids in zip(outs, ids):
        humans = _cdr(ts, out.humans, "sahmr_ros/msg/HumanMeshArray").humans
        assert [h.track_id for h in humans] == [h.id for h in humans] == frame_ids
        assert [m.id for m in out.markers.markers[1:]] == [id_to_marker(i) for i in frame_ids]


def test_core_time_jump_restarts_the_tracks_and_says_so(ts):
    frames = _crossing_frames(frames=6)
    stamps = [stamp(k) for k in range(3)] + [stamp(k) - 10 * NS for k in range(3)]  # a bag loop
    core, outs = _run_core(ts, frames, stamps=stamps)
    assert not any(w.startswith("tracking:") for out in outs[:3] for w in out.warnings)
    assert any(w.startswith("tracking: the image stamps jumped back") for w in outs[3].warnings)
    assert sorted(t.track_id for t in outs[3].tracks) == ["t1", "t2"]  # numbering restarts
    for tp in outs[3].tracks:  # no memory of before the jump
        np.testing.assert_array_equal(tp.smoothed.vertices_map, tp.raw.vertices_map)
    assert core.status()[2]["tracking_resets"] == 1


def test_cli_options_reach_the_tracking_and_sequence_configs():
    from sahmr_ros.cli import _tracking_params_from_args, build_parser, synth_config_from_args

    parser = build_parser()
    args = parser.parse_args(["bag", "in.mcap", "-o", "out", "--no-tracking-publish-smoothed", "--tracking-beta", "0.5",
                              "--tracking-gate-iou", "0.2"])
    assert _tracking_params_from_args(args) == TrackingParams(publish_smoothed=False, beta=0.5, gate_iou=0.2)
    assert _tracking_params_from_args(parser.parse_args(["bag", "in.mcap", "-o", "out"])) == TrackingParams()
    config = synth_config_from_args(parser.parse_args(["synth", "--out", "d", "--sequence", "--fps", "15"]))
    assert config.sequence and config.fps == 15.0
    assert not synth_config_from_args(parser.parse_args(["synth", "--out", "d"])).sequence
    with pytest.raises(InputError, match="fps"):
        synth_config_from_args(parser.parse_args(["synth", "--out", "d", "--sequence", "--fps", "0"]))
