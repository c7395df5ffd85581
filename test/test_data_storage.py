"""Storage of samples and scenes: layout round trips, deterministic shards, datasets, official reader."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sahmr_ros import constants as C
from sahmr_ros.data.dataset import SceneCache, ShardIndex, ShardStream, collate_samples
from sahmr_ros.data.sample import Person, Sample, Scene
from sahmr_ros.data.shards import ShardReader, ShardWriter, decode_npz, encode_npz, read_manifest
from sahmr_ros.errors import InputError
from sahmr_ros.evaluation.metrics import SDFGrid

_SAMPLE_ARRAYS = ("K", "T_map_camera", "distortion_coeffs", "boxes_xyxy", "visible_fraction", "root_camera",
                  "root_map", "joints14_camera", "joints14_map", "vertices_camera", "vertices_map", "betas",
                  "global_orient", "body_pose", "transl", "vertex_contact", "scene_contact_indices",
                  "scene_contact_labels", "scene_contact_offsets")


def make_person(rng: np.random.Generator, category: str, body: bool = True) -> Person:
    T = np.eye(4)
    T[:3, 3] = rng.normal(size=3)
    verts = rng.normal(size=(C.NUM_VERTICES, 3)).astype(np.float32)
    k = int(rng.integers(0, 20))
    params = dict(betas=rng.normal(size=10), global_orient=rng.normal(size=3), body_pose=rng.normal(size=69),
                  transl=rng.normal(size=3)) if body else {}
    return Person(
        box_xyxy=np.array([10.0, 20.0, 60.5, 100.25]) + rng.uniform(0, 5, 4), visible_fraction=float(rng.uniform()),
        category=category, root_camera=rng.normal(size=3), root_map=rng.normal(size=3),
        joints14_camera=rng.normal(size=(14, 3)), joints14_map=rng.normal(size=(14, 3)),
        vertices_camera=verts, vertices_map=verts + 1, vertex_contact=rng.uniform(size=C.NUM_VERTICES) < 0.1,
        scene_contact_indices=np.sort(rng.choice(1000, size=k, replace=False)),
        scene_contact_labels=rng.integers(1, 8, size=k), flags=("occluded",) if k % 2 else (), **params)


def make_sample(i: int, split: str = "test", persons: int | None = None, scene_id: str = "room_0") -> Sample:
    rng = np.random.default_rng(i)
    n = int(rng.integers(0, 4)) if persons is None else persons
    cats = ("standing", "sitting_chair", "lying")
    return Sample(
        key=f"{split}_{i:05d}", image=rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8),
        K=np.array([[30.0, 0, 16], [0, 31, 12], [0, 0, 1]]), T_map_camera=np.eye(4), scene_id=scene_id,
        persons=[make_person(rng, cats[(i + j) % 3], body=(j != 1)) for j in range(n)],
        distortion_model="plumb_bob" if i % 2 else "none",
        distortion_coeffs=np.array([0.1, -0.01, 0.001, 0.0, 0.002]) if i % 2 else np.zeros(0),
        sequence_id="seq_a" if i % 3 == 0 else "", frame_index=i, seed=1000 + i, split=split,
        extra={"renderer": "test", "i": i})


def make_scene(scene_id: str = "room_0") -> Scene:
    rng = np.random.default_rng(7)
    grid = SDFGrid.from_function(lambda p: p[..., 2] - 0.5, [0, 0, 0], [1, 2, 3], (4, 5, 6))
    return Scene(scene_id=scene_id, cloud=rng.uniform(size=(1000, 3)), mesh_vertices=rng.uniform(size=(5, 3)),
                 mesh_faces=[[0, 1, 2], [2, 3, 4]], mesh_face_colors=[[1, 2, 3], [4, 5, 6]], sdf=grid,
                 generator_version="test-1", seed=3, extra={"room": "box"})


def assert_samples_equal(a: Sample, b: Sample) -> None:
    xa, xb = a.to_arrays(), b.to_arrays()
    assert sorted(xa) == sorted(xb)
    for k in xa:
        assert xa[k].dtype == xb[k].dtype, k
        np.testing.assert_array_equal(xa[k], xb[k], err_msg=k)
    assert a.metadata() == b.metadata()


def write_dir(path: Path, samples, scenes=(make_scene(),), **kw) -> Path:
    with ShardWriter(path, prefix="test", generator_version="test-1", seed=5, command=["sahmr", "synth"],
                     **kw) as w:
        for scene in scenes:
            w.write_scene(scene)
        for s in samples:
            w.write(s)
    return path


# --- layout -------------------------------------------------------------------------------------------
def test_sample_round_trip_in_memory_with_exact_dtypes():
    s = make_sample(1, persons=3)
    arrays = s.to_arrays()
    assert arrays["vertices_map"].dtype == np.float32 and arrays["vertices_map"].shape == (3, C.NUM_VERTICES, 3)
    assert arrays["scene_contact_labels"].dtype == np.uint8 and arrays["scene_contact_indices"].dtype == np.int32
    assert arrays["vertex_contact"].dtype == np.bool_ and arrays["betas"].dtype == np.float32
    assert np.isnan(arrays["betas"][1]).all()  # person 1 has no body parameters
    back = Sample.from_arrays(arrays, json.loads(json.dumps(s.metadata())))
    assert back.persons[1].betas is None and back.persons[0].betas is not None
    assert_samples_equal(s, back)
    for k in _SAMPLE_ARRAYS:
        assert k in arrays


def test_sample_without_persons_round_trips():
    s = make_sample(2, persons=0)
    assert_samples_equal(s, Sample.from_arrays(s.to_arrays(), s.metadata()))


@pytest.mark.parametrize("field,value,match", [
    ("K", np.eye(2), r"persons|K: expected shape \(3, 3\)"),
    ("image", np.zeros((4, 4), np.uint8), "image: expected an"),
    ("scene_id", "room.1", "scene_id"),
    ("distortion_model", "fisheye9", "distortion_model"),
    ("T_map_camera", np.diag([1.0, 1.0, -1.0, 1.0]), "T_map_camera"),
])
def test_sample_validate_names_the_field(field, value, match):
    s = make_sample(3, persons=1)
    setattr(s, field, value)
    with pytest.raises(InputError, match=match):
        s.validate()


@pytest.mark.parametrize("field,value", [
    ("vertices_map", np.zeros((100, 3))), ("scene_contact_labels", np.zeros(0, np.uint8)),
    ("box_xyxy", [5, 5, 1, 1]), ("visible_fraction", 1.5), ("betas", None),
])
def test_person_validate_names_the_field(field, value):
    s = make_sample(4, persons=2)
    s.persons[0].scene_contact_indices = np.array([1, 2])
    s.persons[0].scene_contact_labels = np.array([1, 3])
    setattr(s.persons[0], field, value)
    with pytest.raises(InputError, match=r"persons\[0\]\.\w+"):
        s.validate()


def test_scene_round_trip():
    scene = make_scene()
    back = Scene.from_arrays(decode_npz(encode_npz(scene.to_arrays()), "scene.npz"))
    np.testing.assert_array_equal(back.cloud, scene.cloud)
    assert back.cloud.dtype == np.float32 and back.mesh_faces.dtype == np.int32
    np.testing.assert_array_equal(back.sdf.values, scene.sdf.values)
    np.testing.assert_array_equal(back.sdf.bounds_max, [1, 2, 3])
    assert back.metadata() == scene.metadata()


def test_npz_encoding_is_deterministic_and_numpy_readable(tmp_path):
    arrays = {"a": np.arange(5, dtype=np.int16), "b": np.ones((2, 3), np.float32)}
    data = encode_npz(arrays, compress=True)
    assert data == encode_npz(arrays, compress=True)
    (tmp_path / "x.npz").write_bytes(data)
    with np.load(tmp_path / "x.npz") as z:
        np.testing.assert_array_equal(z["b"], arrays["b"])


# --- shards -------------------------------------------------------------------------------------------
def test_shard_round_trip_and_manifest(tmp_path):
    samples = [make_sample(i, split="train" if i < 5 else "val") for i in range(8)]
    root = write_dir(tmp_path / "d", samples, max_samples=3)
    manifest = read_manifest(root)
    assert [s["samples"] for s in manifest["shards"]] == [3, 3, 2]
    counts = manifest["counts"]
    n_persons = sum(len(s.persons) for s in samples)
    assert counts["samples"] == 8 and counts["persons"] == n_persons
    assert counts["per_split"]["train"]["samples"] == 5 and counts["per_split"]["val"]["samples"] == 3
    assert sum(counts["per_category"].values()) == n_persons
    assert manifest["generator_version"] == "test-1" and manifest["seed"] == 5
    assert manifest["command"] == ["sahmr", "synth"]
    for s in manifest["shards"]:
        assert hashlib.sha256((root / s["path"]).read_bytes()).hexdigest() == s["sha256"]
    reader = ShardReader(root, verify=True)
    back = list(reader)
    assert len(back) == len(reader) == 8
    for a, b in zip(samples, back):
        assert_samples_equal(a, b)
    assert reader.scene("room_0").sdf is not None
    with tarfile.open(root / manifest["shards"][0]["path"]) as tar:  # webdataset key convention
        assert tar.getnames()[:3] == ["train_00000.json", "train_00000.npz", "train_00000.png"]


def test_same_samples_give_identical_bytes(tmp_path):
    samples = [make_sample(i) for i in range(4)]
    a = write_dir(tmp_path / "a", samples, max_samples=2)
    b = write_dir(tmp_path / "b", samples, max_samples=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_jpeg_option_and_byte_limit(tmp_path):
    samples = [make_sample(i, persons=1) for i in range(3)]
    root = write_dir(tmp_path / "j", samples, image_format="jpg", jpeg_quality=90, max_bytes=1)
    manifest = read_manifest(root)
    assert len(manifest["shards"]) == 3 and manifest["image_format"] == "jpg"
    back = list(ShardReader(root))
    assert back[0].image.shape == samples[0].image.shape  # lossy: only the shape is kept exactly
    np.testing.assert_array_equal(back[0].persons[0].vertices_map, samples[0].persons[0].vertices_map)


def test_writer_refuses_duplicates_and_existing_dir(tmp_path):
    root = write_dir(tmp_path / "d", [make_sample(0)])
    with pytest.raises(InputError, match="manifest.json: already exists"):
        ShardWriter(root)
    with ShardWriter(tmp_path / "e") as w:
        w.write(make_sample(1))
        with pytest.raises(InputError, match="already written"):
            w.write(make_sample(1))


def test_truncated_or_corrupt_shard_names_the_file(tmp_path):
    root = write_dir(tmp_path / "d", [make_sample(i, persons=2) for i in range(3)])
    shard = root / read_manifest(root)["shards"][0]["path"]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=str(shard.name)):
        list(ShardReader(root))
    with pytest.raises(InputError, match=str(shard.name)):
        ShardIndex(root)
    shard.write_bytes(data[:512 * 3])  # ends on a member boundary: fewer samples than listed
    with pytest.raises(InputError, match=f"{shard.name}.*(truncated|corrupt)"):
        list(ShardReader(root))
    corrupt = bytearray(data)
    start = data.find(b"PK\x03\x04")  # the first npz member
    corrupt[start:start + 400] = b"\0" * 400
    shard.write_bytes(bytes(corrupt))
    with pytest.raises(InputError, match=f"{shard.name}.*npz"):
        list(ShardReader(root))
    with pytest.raises(InputError, match="sha256"):
        list(ShardReader(root, verify=True))


def test_missing_manifest_and_scene_are_named(tmp_path):
    with pytest.raises(InputError, match="manifest.json: not found"):
        ShardReader(tmp_path)
    root = write_dir(tmp_path / "d", [make_sample(0)], scenes=())
    with pytest.raises(InputError, match="room_0"):
        SceneCache(root)["room_0"]


# --- datasets -----------------------------------------------------------------------------------------
def _keys(loader) -> list[str]:
    return [s.key for batch in loader for s in batch]


@pytest.mark.parametrize("max_samples", [2, 100])  # 5 shards (whole shards per worker) and 1 (round robin)
def test_dataloader_with_workers_yields_every_sample_once(tmp_path, max_samples):
    samples = [make_sample(i, persons=1) for i in range(9)]
    root = write_dir(tmp_path / "d", samples, max_samples=max_samples)
    loader = DataLoader(ShardStream(root), batch_size=2, num_workers=2, collate_fn=collate_samples)
    keys = _keys(loader)
    assert sorted(keys) == sorted(s.key for s in samples) and len(keys) == len(set(keys))
    # distributed ranks (2 ranks x 2 workers) together see every sample once
    per_rank = [_keys(DataLoader(ShardStream(root, rank=r, world_size=2, shuffle=True, shuffle_buffer=3),
                                 batch_size=2, num_workers=2, collate_fn=collate_samples)) for r in range(2)]
    assert sorted(per_rank[0] + per_rank[1]) == sorted(s.key for s in samples)


def test_stream_split_transform_and_scene_cache(tmp_path):
    samples = [make_sample(i, split="train" if i % 2 else "val", persons=1) for i in range(6)]
    root = write_dir(tmp_path / "d", samples, max_samples=2)

    def transform(sample, scenes):
        return {"key": sample.key, "points": torch.from_numpy(scenes[sample.scene_id].cloud[:2]),
                "loads": scenes.loads}

    ds = ShardStream(root, split="train", transform=transform)
    items = list(ds)
    assert len(ds) == 3 and [it["key"] for it in items] == [s.key for s in samples if s.split == "train"]
    assert all(it["loads"] == 1 for it in items)  # the scene was read once


def test_map_style_index(tmp_path):
    samples = [make_sample(i, split="test" if i < 4 else "val") for i in range(6)]
    root = write_dir(tmp_path / "d", samples, max_samples=4)
    ds = ShardIndex(root)
    assert len(ds) == 6 and ds.key(5) == samples[5].key
    assert_samples_equal(ds[5], samples[5])
    assert_samples_equal(ds[-1], samples[5])
    test = ShardIndex(root, split="test")
    assert [test.key(i) for i in range(len(test))] == [s.key for s in samples[:4]]
    loader = DataLoader(test, batch_size=3, num_workers=2, collate_fn=collate_samples)
    assert sorted(_keys(loader)) == sorted(s.key for s in samples[:4])
    assert ds.scene("room_0") is ds.scene("room_0")
