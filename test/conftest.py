"""Shared fixtures: the synthetic body model directory, a user's inference input files, and the
official reference files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_model_dir(tmp_path_factory) -> Path:
    """A model directory holding the synthetic body (SMPL format, not SMPL) and its assets."""
    from sahmr_ros.body.synthetic import write_synthetic_model_dir

    return write_synthetic_model_dir(tmp_path_factory.mktemp("synthetic_model"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the checkout (official reference files); skips when absent."""
    path = Path(__file__).resolve().parents[2] / "shared"
    if not path.is_dir():
        pytest.skip("../shared not present: official reference files are not available")
    return path


@pytest.fixture(scope="session")
def user_files(synthetic_model_dir, tmp_path_factory) -> dict:
    """The files a user passes to ``sahmr infer`` (image, camera YAML, pose, scene, boxes), written
    from the demo's synthetic room; ``scene`` holds the in-memory originals."""
    import numpy as np
    import yaml
    from PIL import Image
    from scipy.spatial.transform import Rotation

    from sahmr_ros.demo.run import make_demo_scene

    d = tmp_path_factory.mktemp("infer_inputs")
    scene = make_demo_scene(synthetic_model_dir)
    Image.fromarray(scene.image).save(d / "image.png")
    h, w = scene.image.shape[:2]
    (d / "camera.yaml").write_text(yaml.safe_dump({  # camera_calibration layout
        "image_width": w, "image_height": h, "camera_name": "test",
        "camera_matrix": {"rows": 3, "cols": 3, "data": scene.K.reshape(-1).tolist()},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.0] * 5},
    }))
    t = scene.T_map_camera[:3, 3]
    q = Rotation.from_matrix(scene.T_map_camera[:3, :3]).as_quat()  # x y z w
    np.savez(d / "scene.npz", points=scene.scene_points_map)
    return {"dir": d, "scene": scene, "pose": " ".join(f"{v:.12f}" for v in [*t, *q]),
            "boxes": [",".join(f"{v:.2f}" for v in b) for b in scene.boxes], "model_dir": synthetic_model_dir}


def infer_args(files: dict, checkpoint, out, **override) -> list[str]:
    """``sahmr infer`` arguments for :func:`user_files` (``override``: option -> value)."""
    options = {"--image": files["dir"] / "image.png", "--camera": files["dir"] / "camera.yaml",
               "--pose": files["pose"], "--scene": files["dir"] / "scene.npz", "--checkpoint": checkpoint,
               "--model-dir": files["model_dir"], "-o": out, "--device": "cpu"}
    options.update(override)
    args = [str(a) for kv in options.items() for a in kv]
    for box in files["boxes"]:
        args += ["--box", box]
    return args
