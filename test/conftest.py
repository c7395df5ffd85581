"""Shared fixtures: the synthetic body model directory, a user's inference input files, and the
official reference files."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the body with ``n`` torch threads; the process's own count is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """One torch thread unless the test sets more (two are very slow on a loaded 2-core machine); restored after."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def demo_scene(synthetic_model_dir):
    """The demo's synthetic room, two posed people and the rendered camera image (one per test module)."""
    from sahmr_ros.demo.run import make_demo_scene

    return make_demo_scene(synthetic_model_dir)


@pytest.fixture(scope="module")
def pipeline(synthetic_model_dir, demo_scene):
    """The embedded default's untrained init (small preset, seed 0, CPU) with the demo room latched (one per
    test module): the tests using it check structure, not accuracy, and were measured with these weights."""
    import torch

    from sahmr_ros.pipeline import Pipeline, PipelineConfig

    torch.manual_seed(0)
    pipe = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu"), weights="untrained")
    pipe.set_scene(demo_scene.scene_points_map)
    return pipe


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


CAMERA_FRAME = "camera"


class NodeHarness:
    """The node's callbacks wired as ``sahmr_node`` wires them (own worker thread), without rclpy.

    The last ``keep`` outputs go to :attr:`published` (FrameOutput; a mesh marker array is ~1 MB per
    person, so long runs keep few), every published stamp to :meth:`served`, log lines to
    :attr:`lines`; :meth:`frame` sends one complete valid frame (TF, image, camera_info, detections)
    and waits until the worker is idle.
    """

    def __init__(self, factory, pipeline, params=None, keep: int = 8):
        import collections

        from sahmr_ros.ros.callbacks import NodeCallbacks
        from sahmr_ros.ros.core import NodeParams, PerceptionCore

        params = params or NodeParams(tf_timeout_s=0.0)
        self.f = factory
        self.published = collections.deque(maxlen=keep)
        self.lines, self._served = [], []
        self.core = PerceptionCore(pipeline, params, factory)
        self.cb = NodeCallbacks(self.core, self._publish, lambda level, line: self.lines.append(line),
                                tf_wait_s=params.tf_timeout_s, log_period_s=0.0)

    def _publish(self, out):
        self.published.append(out)
        self._served.append(out.stamp_ns)

    def header(self, stamp, frame=CAMERA_FRAME):
        from sahmr_ros.ros.messages import ns_to_time

        return self.f.make("std_msgs/msg/Header", stamp=ns_to_time(self.f, stamp), frame_id=frame)

    def tf(self, stamp, T, parent="map", child=CAMERA_FRAME, static=False):
        from sahmr_ros.ros.conversions import matrix_to_transform

        self.cb.on_tf(self.f.make("tf2_msgs/msg/TFMessage",
                                  transforms=[matrix_to_transform(self.f, self.header(stamp, parent), child, T)]),
                      static)

    def frame(self, scene, stamp, boxes=None, tf=True):
        """Send TF, image, camera_info and detections stamped ``stamp``; wait until processed."""
        from sahmr_ros.ros.conversions import boxes_to_detections, intrinsics_to_camera_info, rgb_to_image

        if tf:
            self.tf(stamp, scene.T_map_camera)
        h, w = scene.image.shape[:2]
        boxes = scene.boxes if boxes is None else boxes
        self.cb.on_input("image", rgb_to_image(self.f, self.header(stamp), scene.image))
        self.cb.on_input("camera_info", intrinsics_to_camera_info(self.f, self.header(stamp), scene.K, w, h))
        self.cb.on_input("detections", boxes_to_detections(self.f, self.header(stamp), boxes))
        self.wait()

    def wait(self, timeout_s: float = 60.0):
        """Wait until the worker has nothing pending or running."""
        import time

        deadline = time.monotonic() + timeout_s
        while not self.cb.worker.idle() and time.monotonic() < deadline:
            time.sleep(0.002)

    def served(self):
        """Stamps of the frames published so far."""
        return list(self._served)
