"""``sahmr synth``: the ground truth checked against independent computations.

* projected vertices (K and the plumb_bob lens model written out here, not the renderer) fall inside
  the person's box; for an unoccluded, untruncated person the box of the
  projection is the box of the visible mask;
* roots and joints are the H36M regressor applied to the stored vertices, and camera- and map-frame
  values are related by the stored pose;
* the scene-point contact labels equal a brute-force nearest-part-vertex search over the whole cloud;
* no vertex penetrates the room beyond the placement tolerance (the room's exact SDF);
* the same arguments give the same bytes, whatever the number of worker processes; the manifest
  counts what was written; the test split's bags hold every frame.
"""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from sahmr_ros import constants as C
from sahmr_ros.cli import main as cli_main
from sahmr_ros.data.placement import PENETRATION_TOLERANCE_M
from sahmr_ros.data.rooms import make_room
from sahmr_ros.data.shards import ShardReader
from sahmr_ros.data.synth import SynthConfig, synthesize
from sahmr_ros.geometry import invert_transform, transform_points

CONFIG = SynthConfig(split="test", scenes=2, frames_per_scene=2, seed=7)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "data"
    import torch

    threads = torch.get_num_threads()
    stats = synthesize(out, CONFIG, workers=1, progress=False)
    assert torch.get_num_threads() == threads  # the generator's one-thread setting does not leak to the caller
    assert stats["samples"] == 4
    return out


@pytest.fixture(scope="module")
def samples(data_dir):
    return list(ShardReader(data_dir))


@pytest.fixture(scope="module")
def body(synthetic_model_dir):
    from sahmr_ros.body import load_body_assets

    return load_body_assets(synthetic_model_dir)


def _project(sample, points_camera):
    """Pixels of camera-frame points through K and plumb_bob written out by hand (synth's only lens model)."""
    x, y = points_camera[:, 0] / points_camera[:, 2], points_camera[:, 1] / points_camera[:, 2]
    if sample.distortion_model != "none":
        assert sample.distortion_model == "plumb_bob"
        k1, k2, p1, p2, k3 = sample.distortion_coeffs
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
        x, y = (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)
    K = sample.K
    return np.stack([K[0, 0] * x + K[0, 1] * y + K[0, 2], K[1, 1] * y + K[1, 2]], axis=1)


def test_manifest_counts_and_every_sample_has_people(data_dir, samples):
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["counts"]["samples"] == len(samples) == 4
    assert manifest["counts"]["persons"] == sum(len(s.persons) for s in samples) > 0
    assert manifest["generator_version"].startswith("sahmr_synth/")
    for s in samples:
        assert s.extra["body_model"] == "synthetic" and s.split == "test"
        assert (s.image.shape[1], s.image.shape[0]) in ((640, 480), (848, 480), (960, 540), (1280, 720))
        for p in s.persons:
            assert p.visible_fraction >= 0.15 and p.category


def test_projected_vertices_lie_in_the_box_of_the_visible_mask(samples):
    checked = 0
    for s in samples:
        for p in s.persons:
            assert np.all(p.vertices_camera[:, 2] > 0)
            uv = _project(s, p.vertices_camera.astype(np.float64))
            x1, y1, x2, y2 = p.box_xyxy
            h, w = s.image.shape[:2]
            assert -0.5 <= x1 < x2 <= w - 0.5 and -0.5 <= y1 < y2 <= h - 0.5
            inside = (uv[:, 0] >= x1 - 1) & (uv[:, 0] <= x2 + 1) & (uv[:, 1] >= y1 - 1) & (uv[:, 1] <= y2 + 1)
            in_image = (uv[:, 0] >= -0.5) & (uv[:, 0] <= w - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= h - 0.5)
            assert ("truncated" in p.flags) == (not in_image.all())
            assert inside[in_image].mean() >= min(0.99, p.visible_fraction - 0.1)
            if not p.flags and p.visible_fraction > 0.999:  # fully seen: the projection spans the box
                np.testing.assert_allclose([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()],
                                           p.box_xyxy, atol=1.5)
                checked += 1
    assert checked >= 1


def test_roots_and_joints_are_the_regressor_on_the_vertices(samples, body):
    J = body.j_regressor_h36m
    for s in samples:
        T_camera_map = invert_transform(s.T_map_camera)
        for p in s.persons:
            v = p.vertices_map.astype(np.float64)
            np.testing.assert_allclose(p.root_map, J[C.H36M_PELVIS] @ v, atol=1e-5)
            np.testing.assert_allclose(p.joints14_map, J[list(C.H36M_J17_TO_J14)] @ v, atol=1e-5)
            np.testing.assert_allclose(p.root_camera, transform_points(T_camera_map, p.root_map), atol=1e-6)
            np.testing.assert_allclose(p.vertices_camera, transform_points(T_camera_map, v), atol=1e-4)


def test_scene_contact_labels_equal_a_brute_force_search(data_dir, samples, body):
    reader = ShardReader(data_dir)
    parts = body.part_ids_6890
    part_vertices = np.flatnonzero(parts > 0)
    tested = 0
    for s in samples[:2]:
        cloud = reader.scene(s.scene_id).cloud.astype(np.float64)
        for p in s.persons:
            v = p.vertices_map.astype(np.float64)[part_vertices]
            labels = np.zeros(len(cloud), np.int64)
            for start in range(0, len(cloud), 4096):  # every cloud point against every part vertex
                d = np.linalg.norm(cloud[start:start + 4096, None] - v[None], axis=2)
                nearest = d.argmin(1)
                close = d[np.arange(len(d)), nearest] < 0.07
                labels[start:start + 4096][close] = parts[part_vertices[nearest[close]]]
            expected = np.flatnonzero(labels)
            np.testing.assert_array_equal(p.scene_contact_indices, expected)
            np.testing.assert_array_equal(p.scene_contact_labels, labels[expected])
            tested += len(expected) > 0
    assert tested >= 1  # someone touches the scan


def test_no_person_penetrates_the_room(data_dir, samples):
    reader = ShardReader(data_dir)
    for s in samples:
        room = make_room(reader.scene(s.scene_id).extra["room_seed"])
        for p in s.persons:
            sdf = room.sdf(p.vertices_map.astype(np.float64))
            assert sdf.min() >= -PENETRATION_TOLERANCE_M - 1e-4
            assert p.vertex_contact.any() == (np.abs(sdf) < 0.03).any()


def test_same_arguments_same_bytes_whatever_the_workers(data_dir, tmp_path):
    again = tmp_path / "again"
    synthesize(again, CONFIG, workers=2, progress=False)
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and path.name != "manifest.json" and "bags" not in path.parts:
            assert (again / path.relative_to(data_dir)).read_bytes() == path.read_bytes(), path
    strip = [json.loads((d / "manifest.json").read_text()) for d in (data_dir, again)]
    assert strip[0] == strip[1]


def test_the_test_split_is_written_as_bags_too(data_dir, samples):
    index = json.loads((data_dir / "bags" / "test" / "index.json").read_text())
    assert sorted(f["key"] for f in index["frames"]) == sorted(s.key for s in samples)
    with tarfile.open(next(data_dir.glob("test-*.tar"))) as tar:
        assert len([m for m in tar.getmembers() if m.name.endswith(".png")]) == len(samples)


def test_cli_writes_a_split_and_refuses_an_existing_one(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["synth", "--out", str(out), "--scenes", "1", "--frames-per-scene", "1", "--workers", "1", "--no-progress",
            "--split", "val"]
    assert cli_main(args) == 0
    assert "1 samples" in capsys.readouterr().out and not (out / "bags").exists()  # bags: test split only
    assert cli_main(args) == 2
    assert "already holds a data set" in capsys.readouterr().err
    assert cli_main(["synth", "--out", str(tmp_path / "x"), "--scenes", "0"]) == 2
    assert "--scenes" in capsys.readouterr().err


# -- sequence mode ------------------------------------------------------------------------------------
SEQUENCE = SynthConfig(split="test", scenes=1, frames_per_scene=8, seed=11, sequence=True, fps=10.0, people=(2, 3))


@pytest.fixture(scope="module")
def sequence_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_sequence") / "data"
    stats = synthesize(out, SEQUENCE, workers=1, progress=False)
    assert stats["samples"] == 8
    return out


def test_walk_path_speed_turns_and_gait():
    from sahmr_ros.data.motion import WalkPath

    path = WalkPath(start=np.array([0.0, 0.0]), end=np.array([3.0, 0.0]), omega=2 * 1.2 / 3.0, phase0=0.3,
                    gait_cycle_m=1.3, gait_phase0=0.0)
    t = np.arange(0, 20, 0.01)
    xy, yaw, gait = path.at(t)
    speed = np.linalg.norm(np.diff(xy, axis=0), axis=1) / 0.01
    assert speed.max() == pytest.approx(1.2, abs=1e-3) and (xy[:, 0] >= -1e-9).all() and (xy[:, 0] <= 3 + 1e-9).all()
    assert np.abs(np.angle(np.exp(1j * np.diff(yaw)))).max() < 0.05  # the body turns around smoothly
    vx = np.diff(xy[:, 0]) / 0.01
    moving = np.abs(vx) > 0.05
    assert (np.cos(yaw[1:][moving]) * np.sign(vx[moving]) > 0).all()  # never walking backwards
    fast = np.abs(vx) > 0.55 * 1.2  # away from the turns: facing exactly where it walks
    np.testing.assert_allclose(np.cos(yaw[1:][fast]), np.sign(vx[fast]), atol=1e-6)
    walked = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    np.testing.assert_allclose(gait, 2 * np.pi * walked / 1.3, atol=1e-3)  # the gait follows the distance walked


def test_sequence_frames_carry_stable_tracks_and_move_like_people(sequence_dir):
    samples = list(ShardReader(sequence_dir))
    assert [s.frame_index for s in samples] == list(range(8))
    assert {s.sequence_id for s in samples} == {samples[0].scene_id} and samples[0].extra["fps"] == 10.0
    room = make_room(ShardReader(sequence_dir).scene(samples[0].scene_id).extra["room_seed"])
    tracks: dict[int, list] = {}
    for s in samples:
        assert len({p.track_id for p in s.persons}) == len(s.persons) and all(p.track_id >= 0 for p in s.persons)
        for p in s.persons:
            tracks.setdefault(p.track_id, []).append((s.frame_index, p))
            assert room.sdf(p.vertices_map.astype(np.float64)).min() >= -PENETRATION_TOLERANCE_M - 1e-4
    walkers = 0
    for seq in tracks.values():
        assert len({p.category for _, p in seq}) == 1
        np.testing.assert_array_equal(seq[0][1].betas, seq[-1][1].betas)  # one body per track
        for (k0, p0), (k1, p1) in zip(seq, seq[1:]):
            assert np.linalg.norm(p1.root_map - p0.root_map) / (k1 - k0) <= 1.5 / SEQUENCE.fps + 0.03
        if seq[0][1].category == "walking":
            walkers += len(seq) > 1 and np.linalg.norm(seq[-1][1].root_map - seq[0][1].root_map) > 0.05
        else:
            assert all(np.allclose(p.root_map, seq[0][1].root_map) for _, p in seq)  # still people stay still
    assert walkers >= 1
    eyes = np.array([s.T_map_camera[:3, 3] for s in samples])
    steps = np.linalg.norm(np.diff(eyes, axis=0), axis=1)
    assert 0 < steps.max() <= 0.4 / SEQUENCE.fps + 1e-6  # the camera moves, smoothly


def test_sequence_bag_has_the_frame_period_and_detections_without_ids(sequence_dir):
    from rosbags.rosbag2 import Reader

    from sahmr_ros.evaluation.bags import bag_split_dir, read_bag_index
    from sahmr_ros.ros.interfaces import make_typestore

    split_dir = bag_split_dir(sequence_dir, "test")
    frames = read_bag_index(split_dir)
    assert len(frames) == 8 and set(np.diff([f.stamp_ns for f in frames])) == {C.NS_PER_S // 10}
    ts = make_typestore()
    with Reader(split_dir / frames[0].bag) as reader:
        conns = [c for c in reader.connections if c.topic == "/detections"]
        ids = [d.id for _, _, raw in reader.messages(connections=conns)
               for d in ts.deserialize_cdr(raw, conns[0].msgtype).detections]
    assert ids and set(ids) == {""}


def test_a_sequence_through_the_node_gives_stable_tracks_and_smoothed_meshes(sequence_dir, pipeline, tmp_path):
    """The sequence's bag through ``sahmr bag``'s code path: one track per person, read back from the output bag."""
    from sahmr_ros.evaluation.bags import bag_split_dir, read_bag_index, read_humans
    from sahmr_ros.evaluation.temporal import acceleration
    from sahmr_ros.ros.bag import run_bag
    from sahmr_ros.ros.core import NodeParams

    split_dir = bag_split_dir(sequence_dir, "test")
    frames = read_bag_index(split_dir)
    samples = {s.key: s for s in ShardReader(sequence_dir)}
    key_of = {f.stamp_ns: f.key for f in frames}
    outputs = []
    run_bag(split_dir / frames[0].bag, tmp_path / "out", NodeParams(tf_timeout_s=0.0), pipeline, progress=False,
            on_frame=outputs.append)
    assert len(outputs) == len(frames)
    tracks_of: dict[int, set] = {}
    raw, smoothed = {}, {}
    for out in outputs:
        persons = samples[key_of[out.stamp_ns]].persons
        for tp in out.tracks:
            gt = min(persons, key=lambda p: np.abs(p.box_xyxy - tp.raw.box_xyxy).max())
            tracks_of.setdefault(gt.track_id, set()).add(tp.track_id)
            raw.setdefault(tp.track_id, []).append(tp.raw.joints14_map)
            smoothed.setdefault(tp.track_id, []).append(tp.smoothed.joints14_map)
    assert all(len(ids) == 1 for ids in tracks_of.values()), tracks_of  # 8 frames: nobody is gone for 1 s
    assert len(set.union(*tracks_of.values())) == len(tracks_of)  # and no two people share a track
    published = {stamp: [h.track_id for h in humans] for stamp, humans in read_humans(tmp_path / "out")}
    assert published == {out.stamp_ns: [tp.track_id for tp in out.tracks] for out in outputs}
    long = [t for t in raw if len(raw[t]) >= 4]
    assert long and all(acceleration(np.array(smoothed[t])).mean() < acceleration(np.array(raw[t])).mean()
                        for t in long)
