"""``sahmr infer`` end to end on files a user would have: image, camera YAML, pose, scene, boxes.

The input is the demo's synthetic room rendered with a known camera; the weights are a random
small-preset checkpoint. The outputs are checked against the pipeline run directly on the same arrays
and read back with independent readers (trimesh, a numpy PLY parse, PIL, json).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import trimesh
import yaml
from conftest import infer_args
from PIL import Image

from sahmr_ros import constants as C
from sahmr_ros.checkpoint import save_checkpoint
from sahmr_ros.errors import InputError
from sahmr_ros.infer import load_inputs
from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig
from sahmr_ros.pipeline import Pipeline, PipelineConfig


@pytest.fixture(scope="module")
def checkpoint(synthetic_model_dir, tmp_path_factory):
    """Random small-preset weights saved as a sahmr_ros checkpoint."""
    from sahmr_ros.body import load_body_assets

    torch.manual_seed(3)
    model = SAHMR(SAHMRConfig.small(), load_body_assets(synthetic_model_dir))
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt", model, "small")


def _args(files, checkpoint, out, **override):
    return infer_args(files, checkpoint, out, **override)


def _sahmr(*args):
    return subprocess.run([sys.executable, "-m", "sahmr_ros.cli", *args], capture_output=True, text=True, timeout=600)


def _read_labelled_ply(path):
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii")
    count = int(header.split("element vertex ")[1].split("\n")[0])
    rec = np.frombuffer(data[end:], dtype=[("xyz", "<f4", (3,)), ("label", "<i4"), ("rgb", "u1", (3,))], count=count)
    assert "property int label" in header
    return rec["xyz"], rec["label"], rec["rgb"]


def test_infer_writes_what_the_pipeline_computes(user_files, checkpoint, tmp_path):
    out = tmp_path / "out"
    r = _sahmr("infer", *_args(user_files, checkpoint, out))
    assert r.returncode == 0, r.stderr
    assert "person 0" in r.stdout and "person 1" in r.stdout

    # The same inference through the library on the in-memory arrays.
    scene = user_files["scene"]
    pipe = Pipeline.from_model_dir(user_files["model_dir"], checkpoint=checkpoint,
                                   config=PipelineConfig(device="cpu"))
    pipe.set_scene(scene.scene_points_map)
    frame = pipe.process(scene.image, scene.K, scene.T_map_camera, np.round(scene.boxes, 2))
    assert len(frame.persons) == 2

    summary = json.loads((out / "summary.json").read_text())
    assert [p["box_index"] for p in summary["persons"]] == [0, 1]
    assert summary["inputs"]["undistorted"] is False
    for p, s in zip(frame.persons, summary["persons"]):
        # The pose went through 7 printed numbers: allow for that rounding (1e-9 rad, 1e-12 m).
        np.testing.assert_allclose(s["root_map"], p.root_map, atol=1e-4)
        assert list(s["joints14_map"]) == list(C.JOINT14_NAMES)
        np.testing.assert_allclose(np.array(list(s["joints14_map"].values())), p.joints14_map, atol=1e-4)
        assert s["num_contact_points"] == len(p.contact_labels)

        mesh = trimesh.load(out / s["mesh"], process=False)
        assert mesh.vertices.shape == (C.NUM_VERTICES, 3) and mesh.faces.shape == (C.NUM_FACES, 3)
        np.testing.assert_array_equal(mesh.faces, pipe.faces)
        np.testing.assert_allclose(mesh.vertices, p.vertices_map, atol=1e-4)

        xyz, label, rgb = _read_labelled_ply(out / s["contacts"])
        np.testing.assert_allclose(xyz, p.contact_points_map, atol=1e-4)
        np.testing.assert_array_equal(label, p.contact_labels)
        np.testing.assert_array_equal(rgb, np.asarray(C.CONTACT_PART_COLORS, np.uint8)[label])
    assert set(summary["timings_ms"]) >= {"crop", "sparse_cnn", "transformer", "total"}
    with Image.open(out / "overlay.png") as im:
        assert im.size == (1400, 640)


def test_infer_obj_meshes_and_a_skipped_box(user_files, checkpoint, tmp_path):
    out = tmp_path / "out"
    outside = ["--box", "700,10,800,100"]  # beyond the 640x480 image
    args = _args(user_files, checkpoint, out, **{"--mesh-format": "obj"}) + outside
    r = _sahmr("infer", *args)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [s["box_index"] for s in summary["skipped"]] == [2]
    assert "boxes[2]" in summary["skipped"][0]["reason"]
    mesh = trimesh.load(out / "person_1_mesh.obj", process=False)
    assert mesh.vertices.shape == (C.NUM_VERTICES, 3)


def test_distorted_camera_is_undistorted_or_refused(user_files, checkpoint, tmp_path):
    cam = yaml.safe_load((user_files["dir"] / "camera.yaml").read_text())
    cam["distortion_coefficients"]["data"] = [-0.2, 0.05, 0.0, 0.0, 0.0]
    path = tmp_path / "distorted.yaml"
    path.write_text(yaml.safe_dump(cam))
    f = user_files
    inputs = load_inputs(f["dir"] / "image.png", path, f["pose"], f["dir"] / "scene.npz", f["boxes"])
    assert inputs.undistorted and not np.array_equal(inputs.image, f["scene"].image)
    r = _sahmr("infer", *_args(f, checkpoint, tmp_path / "out", **{"--camera": path, "--distortion": "refuse"}))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(path) in r.stderr and "distortion" in r.stderr


@pytest.mark.parametrize("model, coeffs, same_as", [
    ("plumb_bob", [-0.2, 0.05, 0.0, 0.0, 0.0] + [0.0] * 9, ("plumb_bob", [-0.2, 0.05, 0.0, 0.0, 0.0])),
    ("rational_polynomial", [-0.2, 0.05, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0], None),
    ("equidistant", [0.05, -0.01, 0.002, -0.0005], None),
])
def test_distortion_vector_lengths_in_infer(user_files, tmp_path, model, coeffs, same_as):
    from sahmr_ros.io import Camera, undistort_image

    f = user_files
    cam = yaml.safe_load((f["dir"] / "camera.yaml").read_text())
    cam["distortion_model"] = model
    cam["distortion_coefficients"] = {"rows": 1, "cols": len(coeffs), "data": coeffs}
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump(cam))
    inputs = load_inputs(f["dir"] / "image.png", path, f["pose"], f["dir"] / "scene.npz", f["boxes"])
    assert inputs.undistorted and not np.array_equal(inputs.image, f["scene"].image)
    if same_as is not None:  # 14 coefficients, the extra ones zero: exactly the 5-coefficient result
        h, w = f["scene"].image.shape[:2]
        want, _ = undistort_image(f["scene"].image, Camera(f["scene"].K, np.array(same_as[1]), w, h, same_as[0]))
        np.testing.assert_array_equal(inputs.image, want)


def _header_only_png(width, height):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def _write_bad_input(path):
    """Write the malformed file named by ``path``'s name; returns the path."""
    name = path.name
    if name in ("empty.npz", "empty.npy", "pose_empty.npy"):
        path.write_bytes(b"")
    elif name == "objects.npz":
        np.savez(path, points=np.array([[0.0, "x", None]], dtype=object))
    elif name == "neg.pcd":
        path.write_text("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 1\nHEIGHT 1\n"
                        "POINTS -1\nDATA ascii\n1 2 3\n")
    elif name == "neg.ply":
        path.write_text("ply\nformat ascii 1.0\nelement vertex -1\nproperty float x\nproperty float y\n"
                        "property float z\nend_header\n1 2 3\n")
    elif name == "huge.png":
        path.write_bytes(_header_only_png(20000, 20000))
    elif name == "d14.yaml":
        path.write_text("k: [500, 0, 320, 0, 500, 240, 0, 0, 1]\ndistortion_model: plumb_bob\n"
                        "d: [-0.2, 0.05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.001]\n")
    return path


@pytest.mark.parametrize("option, name, words", [
    ("--scene", "empty.npz", ["the file is empty"]),
    ("--scene", "empty.npy", ["the file is empty"]),
    ("--scene", "objects.npz", ["object array", "never unpickled"]),
    ("--scene", "neg.pcd", ["`POINTS`", "negative"]),
    ("--scene", "neg.ply", ["element vertex -1", ">= 0"]),
    ("--pose", "pose_empty.npy", ["the file is empty"]),
    ("--image", "huge.png", ["MAX_IMAGE_PIXELS", "smaller image"]),
    ("--camera", "d14.yaml", ["field `d`", "plumb_bob takes 5", "got 14"]),
])
def test_bad_input_files_give_one_line_and_exit_2(user_files, tmp_path, capsys, option, name, words):
    """Each bad file ends ``sahmr infer`` with one line naming the file and what to do, status 2."""
    from sahmr_ros.cli import main

    path = _write_bad_input(tmp_path / name)
    rc = main(["infer", *_args(user_files, tmp_path / "unused.pt", tmp_path / "out", **{option: path})])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("sahmr infer: error: "), err
    assert str(path) in err and all(w in err for w in words), err


@pytest.mark.parametrize("change, words", [
    ({"image_width": 1280}, ["camera.yaml", "width 1280", "image.png"]),
    ({"camera_matrix": {"rows": 3, "cols": 3, "data": [0.0] * 9}}, ["camera.yaml"]),
])
def test_inconsistent_camera_names_file_and_field(user_files, checkpoint, tmp_path, change, words):
    cam = yaml.safe_load((user_files["dir"] / "camera.yaml").read_text())
    cam.update(change)
    path = tmp_path / "camera.yaml"
    path.write_text(yaml.safe_dump(cam))
    r = _sahmr("infer", *_args(user_files, checkpoint, tmp_path / "out", **{"--camera": path}))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr


def test_bad_inputs_raise_input_errors_naming_the_input(user_files, checkpoint, tmp_path):
    f = user_files
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="broken.png"):
        load_inputs(broken, f["dir"] / "camera.yaml", f["pose"], f["dir"] / "scene.npz", f["boxes"])
    with pytest.raises(InputError, match="--box"):
        load_inputs(f["dir"] / "image.png", f["dir"] / "camera.yaml", f["pose"], f["dir"] / "scene.npz", [])
    with pytest.raises(InputError, match="--box #1"):
        load_inputs(f["dir"] / "image.png", f["dir"] / "camera.yaml", f["pose"], f["dir"] / "scene.npz", ["1,2,3"])
    r = _sahmr("infer", *_args(f, checkpoint, tmp_path / "out", **{"--model-dir": tmp_path / "empty"}))
    assert r.returncode == 2 and "SMPL_NEUTRAL" in r.stderr and "smpl.is.tue.mpg.de" in r.stderr
