"""Half precision on the trained embedded default: each CPU precision stays near fp32 on synthetic frames.

The shipped weights (``sahmr_ros/weights/small_synthetic.pt``) run in fp32, bf16 and fp16 autocast on three
frames: the demo room (2 people, 2.7 and 3.0 m away) and a synthetic test split of 1 scene x 2 frames
(seed 0; 1 person each, 5.5 and 3.1 m away). Per person, the distance to fp32 of the map-frame outputs
must stay within these tolerances, metres: (vertices max, vertices mean, joints max, refined root).

Measured on the development machine (Xeon with AVX512-BF16, 1 thread; ``bench/precision.py`` prints the
same over a larger split), the largest over the four persons:

* bf16: 1.0e-2, 4.0e-3, 8.0e-3, 3.9e-3;
* fp16: 1.8e-3, 1.3e-3, 1.6e-3, 1.3e-3.

The tolerances are 1.5-2x those: the trunks' rounding differs between CPUs and thread counts. They are
tight enough that geometry computed in bf16 (the vertices rounded to bf16: 1.6-3.1 cm steps at 2-8 m)
fails them. These frames were chosen without a heatmap argmax flip: on some persons of larger splits bf16
moves RCNet's pelvis peak to a neighbouring cell (up to 0.2 m coarse root, 0.13 m vertices where the ROI
is empty), which ``bench/precision.py`` reports and these tolerances do not cover.
"""

from __future__ import annotations

import numpy as np
import pytest

from sahmr_ros.pipeline import Pipeline, PipelineConfig

TOLERANCE_M = {  # (vertices max, vertices mean, joints max, refined root)
    "bf16": (1.5e-2, 7e-3, 1.4e-2, 7e-3),
    "fp16": (4e-3, 3e-3, 3.2e-3, 3e-3),
}


@pytest.fixture(scope="module")
def frames(synthetic_model_dir, demo_scene, tmp_path_factory):
    """(scene cloud, image, K, T_map_camera, boxes) of the demo frame and of a 1 x 2 synthetic test split."""
    import torch

    from sahmr_ros.data.synth import SynthConfig, synthesize
    from sahmr_ros.evaluation.evaluate import frame_inputs, open_data

    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("precision_split")
    synthesize(out, SynthConfig(split="test", scenes=1, frames_per_scene=2, seed=0), bags=False, progress=False)
    torch.set_num_threads(threads)  # synthesize sets one thread for its body-model batches
    data = open_data(out, "test", expect_body="synthetic")
    s = demo_scene
    result = [(s.scene_points_map, s.image, s.K, s.T_map_camera, s.boxes)]
    for i in range(len(data)):
        sample = data.sample(i)
        image, K = frame_inputs(sample)
        boxes = np.array([p.box_xyxy for p in sample.persons], np.float64).reshape(-1, 4)
        result.append((data.scene(sample.scene_id).cloud, image, K, sample.T_map_camera, boxes))
    return result


def _persons(model_dir, frames, precision: str) -> list:
    pipe = Pipeline.embedded_default(model_dir, PipelineConfig(device="cpu", precision=precision))
    persons = []
    for cloud, image, K, T_map_camera, boxes in frames:
        pipe.set_scene(cloud)
        persons += pipe.process(image, K, T_map_camera, boxes).persons
    return persons


@pytest.fixture(scope="module")
def fp32_persons(synthetic_model_dir, frames):
    return _persons(synthetic_model_dir, frames, "fp32")


@pytest.mark.parametrize("precision", sorted(TOLERANCE_M))
def test_half_precision_stays_near_fp32_on_the_trained_default(synthetic_model_dir, frames, fp32_persons,
                                                               one_torch_thread, precision):
    """Every person of the frames: vertices, joints and refined root within TOLERANCE_M of fp32 (module docstring)."""
    vertex_max, vertex_mean, joint_max, root_tol = TOLERANCE_M[precision]
    half = _persons(synthetic_model_dir, frames, precision)
    assert len(half) == len(fp32_persons) == 4
    for a, b in zip(fp32_persons, half):
        assert b.vertices_map.dtype == np.float32 and np.isfinite(b.vertices_map).all() and not b.flags
        vertices = np.linalg.norm(b.vertices_map.astype(np.float64) - a.vertices_map, axis=1)
        joints = np.linalg.norm(b.joints14_map.astype(np.float64) - a.joints14_map, axis=1)
        root = float(np.linalg.norm(b.root_map.astype(np.float64) - a.root_map))
        where = f"{precision}, person {a.box_index} at {a.root_camera[2]:.2f} m"
        assert vertices.max() <= vertex_max, f"{where}: vertices max {vertices.max():.2e} m"
        assert vertices.mean() <= vertex_mean, f"{where}: vertices mean {vertices.mean():.2e} m"
        assert joints.max() <= joint_max, f"{where}: joints max {joints.max():.2e} m"
        assert root <= root_tol, f"{where}: root {root:.2e} m"
