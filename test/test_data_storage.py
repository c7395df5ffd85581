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


# --- official RICH / PROX evaluation data ---------------------------------------------------------------
NX = 10475  # SMPL-X vertices


def _official_assets(tmp_path: Path, rng: np.random.Generator) -> dict:
    """Fake J_regressor, part ids and SMPL-X -> SMPL transfer (selection of the first 6890 vertices)."""
    import pickle

    import scipy.sparse

    reg = rng.uniform(size=(17, C.NUM_VERTICES))
    reg /= reg.sum(1, keepdims=True)
    parts = rng.integers(0, 8, size=C.NUM_VERTICES)
    mtx = scipy.sparse.csr_matrix((np.ones(C.NUM_VERTICES), (np.arange(C.NUM_VERTICES), np.arange(C.NUM_VERTICES))),
                                  shape=(C.NUM_VERTICES, 2 * NX))  # the release's matrix also has 2 x 10475 columns
    transfer = tmp_path / "models" / "model_transfer" / "smplx2smplh_deftrafo_setup.pkl"
    transfer.parent.mkdir(parents=True)
    with open(transfer, "wb") as f:
        pickle.dump({"mtx": mtx}, f, protocol=2)
    np.save(tmp_path / "models" / C.H36M_REGRESSOR_FILENAME, reg)
    np.save(tmp_path / "models" / C.SEG_PART_INFO_FILENAME,
            np.array({"predefined_segparts": list(C.SEG_PART_NAMES), "verts6890_pids": parts.astype(np.float64),
                      "verts431_pids": np.zeros(C.NUM_VERTICES_COARSE)}, dtype=object), allow_pickle=True)
    return {"reg": reg, "parts": parts, "transfer": transfer, "model_dir": tmp_path / "models"}


def _smplx_body(rng: np.random.Generator, centre) -> np.ndarray:
    return (np.asarray(centre) + rng.normal(scale=0.3, size=(NX, 3))).astype(np.float32).astype(np.float64)


def _official_scene_files(folder: Path, stem: str, sdf_stem: str, json_stem: str, rng, body) -> tuple:
    from sahmr_ros.io import write_mesh  # noqa: F401  (imported by the callers' meshes)

    near = body[rng.choice(C.NUM_VERTICES, 200)] + rng.uniform(-0.06, 0.06, size=(200, 3))
    cloud = np.concatenate([near, rng.uniform(-5, 5, size=(100, 3))]).astype(np.float32)
    np.save(folder / f"{stem}.npy", np.array({"points": cloud, "pitch": np.array([0.02])}, dtype=object),
            allow_pickle=True)
    sdf = rng.normal(size=4 ** 3).astype(np.float32)
    np.save(folder / f"{sdf_stem}.npy", sdf)
    (folder / f"{json_stem}.json").write_text(json.dumps({"min": [-1, -2, -3], "max": [1, 2, 3], "dim": 4}))
    return cloud, sdf


def _brute_force_labels(cloud, verts, parts, exclude=()) -> np.ndarray:
    keep = (parts != 0) & ~np.isin(parts, exclude)
    d = np.linalg.norm(cloud[:, None].astype(np.float64) - verts[keep][None], axis=-1)
    return np.where(d.min(1) < 0.07, parts[keep][d.argmin(1)], 0)


def _write_rich(root: Path, rng, assets) -> dict:
    from sahmr_ros.io import write_mesh

    support = root / "sahmr_support"
    info = support / "scene_info" / "Gym"
    (info / "calibration").mkdir(parents=True)
    T_w2c = np.eye(4)
    T_w2c[:3, :3] = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])  # world z up -> camera y down
    T_w2c[:3, 3] = [0.1, 1.2, 4.0]
    K_full = np.array([[4000.0, 0, 2056], [0, 4010.0, 1504], [0, 0, 1]])
    data = "<data>{}</data>"
    (info / "calibration" / "003.xml").write_text(
        '<?xml version="1.0"?>\n<opencv_storage>\n'
        f'<CameraMatrix type_id="opencv-matrix"><rows>3</rows><cols>4</cols><dt>d</dt>'
        f'{data.format(" ".join(map(repr, T_w2c[:3].ravel().tolist())))}</CameraMatrix>\n'
        f'<Intrinsics type_id="opencv-matrix"><rows>3</rows><cols>3</cols><dt>d</dt>'
        f'{data.format(" ".join(map(repr, K_full.ravel().tolist())))}</Intrinsics>\n'
        f'<Distortion type_id="opencv-matrix"><rows>5</rows><cols>1</cols><dt>d</dt>'
        f'{data.format("0.01 -0.02 0 0 0")}</Distortion>\n</opencv_storage>\n')
    body = _smplx_body(rng, [0.0, 0.0, 0.9])
    cloud, sdf = _official_scene_files(info, "scan_camcoord_world", "scan_camcoord_mysdf", "scan_camcoord_mysdf",
                                       rng, body)
    test = support / "test_split"
    for d in ("meta", "image", "gt_smplx_mesh", "contact/Gym_013_pushup1/cam_03"):
        (test / d).mkdir(parents=True)
    metas, truth = [], []
    for i in range(2):
        img_key = f"Gym_013_pushup1_{i:05d}_03"
        verts = body + i * 0.01
        write_mesh(test / "gt_smplx_mesh" / f"{img_key}.ply", verts, np.array([[0, 1, 2]]))
        contact = rng.uniform(size=C.NUM_VERTICES) < 0.2
        np.save(test / "contact" / "Gym_013_pushup1" / "cam_03" / f"{i:05d}.npy", np.packbits(contact))
        image = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8)
        from PIL import Image
        Image.fromarray(image).save(test / "image" / f"{img_key}.png")
        lurb = np.array([1500.0 + 10 * i, 800.0, 2300.0 + 10 * i, 1600.0])
        metas.append({"img_key": img_key, "cam_key": "Gym_3", "cap_name": "Gym", "scan_name": "scan_camcoord",
                      "scene_key": "Gym_scan_camcoord", "seq_name": "Gym_013_pushup1", "frame_name": f"{i:05d}",
                      "gender": "male", "test_squared_bbx_lurb": lurb,
                      "contact_file": f"/data/RICH/test_contact/Gym_013_pushup1/cam_03/{i:05d}.npy"})
        truth.append({"verts": verts, "contact": contact, "image": image, "lurb": lurb})
    np.save(test / "meta" / "test3116.npy", np.array(metas, dtype=object), allow_pickle=True)
    return {"T_w2c": T_w2c, "K_full": K_full, "cloud": cloud, "sdf": sdf, "truth": truth}


def test_official_rich_reader_on_the_release_layout(tmp_path):
    from sahmr_ros.data.official import OfficialRichTest, detect_official, open_official
    from sahmr_ros.geometry import square_crop_boxes

    rng = np.random.default_rng(0)
    assets = _official_assets(tmp_path, rng)
    fx = _write_rich(tmp_path / "RICH", rng, assets)
    assert detect_official(tmp_path / "RICH") == "rich"
    ds = OfficialRichTest(tmp_path / "RICH", assets["reg"], assets["transfer"], assets["parts"])
    assert len(ds) == 2 and ds.scene_ids == ["Gym_scan_camcoord"]
    for i, truth in enumerate(fx["truth"]):
        s = ds[i]
        p = s.persons[0]
        np.testing.assert_array_equal(s.image, truth["image"])
        np.testing.assert_allclose(s.T_map_camera, np.linalg.inv(fx["T_w2c"]), atol=1e-12)
        verts = truth["verts"][:C.NUM_VERTICES]
        np.testing.assert_allclose(p.vertices_map, verts, atol=1e-6)
        cam = verts @ fx["T_w2c"][:3, :3].T + fx["T_w2c"][:3, 3]
        np.testing.assert_allclose(p.vertices_camera, cam, atol=1e-5)
        np.testing.assert_allclose(p.root_map, assets["reg"][0] @ verts, atol=1e-6)
        np.testing.assert_allclose(p.joints14_camera, (assets["reg"] @ cam)[list(C.H36M_J17_TO_J14)], atol=1e-5)
        np.testing.assert_array_equal(p.vertex_contact, truth["contact"])
        assert p.category == "pushup" and s.sequence_id == "Gym_013_pushup1" and s.frame_index == i
        # crop intrinsics: a point projects to (original pixel - corner) * scale
        uv_full = cam @ fx["K_full"].T
        uv_full = uv_full[:, :2] / uv_full[:, 2:]
        uv_crop = cam @ s.K.T
        lurb = truth["lurb"]
        np.testing.assert_allclose(uv_crop[:, :2] / uv_crop[:, 2:], (uv_full - lurb[:2]) * 223 / (lurb[2] - lurb[0]),
                                   atol=1e-6)
        np.testing.assert_allclose(square_crop_boxes(p.box_xyxy[None])[0], [0, 0, 223, 223], atol=1e-9)
        labels = _brute_force_labels(fx["cloud"], p.vertices_map.astype(np.float64), assets["parts"])
        np.testing.assert_array_equal(p.scene_contact_indices, np.flatnonzero(labels))
        np.testing.assert_array_equal(p.scene_contact_labels, labels[labels > 0])
        assert len(p.scene_contact_indices) > 0
    scene = ds.scene(s.scene_id)
    np.testing.assert_array_equal(scene.cloud, fx["cloud"])
    np.testing.assert_array_equal(scene.sdf.values, fx["sdf"].reshape(4, 4, 4))
    np.testing.assert_array_equal(scene.sdf.bounds_min, [-1, -2, -3])
    # the same command path: the model directory's files, and the samples store in shards unchanged
    ds2 = open_official(tmp_path / "RICH" / "sahmr_support", assets["model_dir"])
    assert_samples_equal(ds2[1], ds[1])
    root = write_dir(tmp_path / "shards", [ds[0], ds[1]], scenes=[scene])
    for a, b in zip([ds[0], ds[1]], ShardReader(root)):
        assert_samples_equal(a, b)


def test_official_prox_reader_on_the_release_layout(tmp_path):
    import pickle

    from PIL import Image

    from sahmr_ros.data.official import OfficialProxQuant, detect_official
    from sahmr_ros.io import read_image, write_mesh

    rng = np.random.default_rng(1)
    assets = _official_assets(tmp_path, rng)
    support = tmp_path / "PROX" / "quantitative" / "sahmr_support"
    for d in ("meta", "img2gtbbx", "vicon/calibration", "image/vicon_03301_01/Color", "gt_mosh_mesh/vicon_03301_01"):
        (support / d).mkdir(parents=True)
    T_c2w = np.eye(4)
    T_c2w[:3, :3] = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    T_c2w[:3, 3] = [1.0, 2.0, 1.5]
    (support / "vicon/calibration/cam2world_vicon.json").write_text(json.dumps(T_c2w.tolist()))
    (support / "vicon/calibration/Color.json").write_text(json.dumps(
        {"f": [1060.5, 1060.4], "c": [951.3, 536.1], "k": [0.05, -0.1, 0, 0, 0], "name": "Color"}))
    body_cam = _smplx_body(rng, [0.0, 0.2, 2.5])
    body_map = body_cam[:C.NUM_VERTICES] @ T_c2w[:3, :3].T + T_c2w[:3, 3]
    cloud, _ = _official_scene_files(support / "vicon", "vicon_voxel_world", "vicon_sdf", "vicon", rng,
                                     np.concatenate([body_map, body_map[:NX - C.NUM_VERTICES]]))
    img_key = "vicon_03301_01_s001_frame_00001__00.00.00.029"
    write_mesh(support / "gt_mosh_mesh/vicon_03301_01/s001_frame_00001.ply", body_cam, np.array([[0, 1, 2]]))
    Image.fromarray(rng.integers(0, 256, size=(54, 96, 3), dtype=np.uint8)).save(
        support / "image/vicon_03301_01/Color/s001_frame_00001.jpg")
    with open(support / "meta/mosh_mesh_test.pkl", "wb") as f:
        pickle.dump([{"img_key": img_key, "scene_name": "vicon",
                      "img_file": "/d/PROX/quantitative/recordings/vicon_03301_01/Color/s001_frame_00001.jpg",
                      "body_file": "/d/PROX/quantitative/mosh/vicon_03301_01/s001_frame_00001.ply"}], f)
    with open(support / "img2gtbbx/mosh_mesh.pkl", "wb") as f:
        pickle.dump({img_key: np.array([30.0, 5.0, 60.0, 50.0])}, f)
    assert detect_official(tmp_path / "PROX" / "quantitative") == "prox"
    ds = OfficialProxQuant(tmp_path / "PROX" / "quantitative", assets["reg"], assets["transfer"], assets["parts"])
    s = ds[0]
    p = s.persons[0]
    assert s.key == "vicon_03301_01_s001_frame_00001__00-00-00-029" and s.extra["img_key"] == img_key
    raw = read_image(support / "image/vicon_03301_01/Color/s001_frame_00001.jpg")
    np.testing.assert_array_equal(s.image, raw[:, ::-1])  # mirrored as the official loader does
    np.testing.assert_allclose(s.K, [[1060.5, 0, 951.3], [0, 1060.4, 536.1], [0, 0, 1]])
    np.testing.assert_allclose(s.T_map_camera, T_c2w)
    np.testing.assert_array_equal(p.box_xyxy, [30, 5, 60, 50])
    np.testing.assert_allclose(p.vertices_map, body_map, atol=1e-5)
    np.testing.assert_allclose(p.vertices_camera, body_cam[:C.NUM_VERTICES], atol=1e-5)
    assert not p.vertex_contact.any() and s.distortion_model == "none"
    labels = _brute_force_labels(cloud, p.vertices_map.astype(np.float64), assets["parts"], exclude=(3, 4))
    np.testing.assert_array_equal(p.scene_contact_indices, np.flatnonzero(labels))
    assert not np.isin(p.scene_contact_labels, [3, 4]).any()
    assert ds.scene("vicon").sdf.values.shape == (4, 4, 4)


def test_official_reader_names_missing_files(tmp_path):
    from sahmr_ros.data.official import OfficialRichTest, load_smplx_to_smpl, open_official

    with pytest.raises(InputError, match="smpl-x.is.tue.mpg.de"):
        load_smplx_to_smpl(tmp_path / "nope.pkl")
    with pytest.raises(InputError, match="no official SA-HMR evaluation data"):
        open_official(tmp_path, tmp_path)
    rng = np.random.default_rng(2)
    assets = _official_assets(tmp_path, rng)
    _write_rich(tmp_path / "RICH", rng, assets)
    mesh = next((tmp_path / "RICH/sahmr_support/test_split/gt_smplx_mesh").glob("*.ply"))
    mesh.unlink()
    ds = OfficialRichTest(tmp_path / "RICH", assets["reg"], assets["transfer"])
    with pytest.raises(InputError, match=mesh.name):
        [ds[i] for i in range(len(ds))]
