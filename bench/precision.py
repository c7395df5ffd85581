"""How far fp16 / bf16 autocast moves the pipeline's outputs from fp32 (same weights, same frame).

    python bench/precision.py                       # small preset, CPU, roots pinned 3 m away
    python bench/precision.py --depth 6 --device cuda

Input: the demo's synthetic room and people (no downloads) and the embedded default's untrained
(seed 0) weights; RCNet's depth head is pinned so that the roots lie ``--depth`` metres away and the
ROIs hold scene points. Printed per person: the coarse and refined root differences, the vertex
differences (max / mean, metres), and the ROI voxel and contact counts of both precisions.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sahmr_ros import constants as C  # noqa: E402
from sahmr_ros.body.synthetic import write_synthetic_model_dir  # noqa: E402
from sahmr_ros.demo.run import make_demo_scene  # noqa: E402
from sahmr_ros.pipeline import Pipeline, PipelineConfig  # noqa: E402


def _pipeline(model_dir: Path, scene, device: str, precision: str, depth_m: float) -> Pipeline:
    pipe = Pipeline.embedded_default(model_dir, PipelineConfig(device=device, precision=precision),
                                     weights="untrained")  # the figures README quotes were measured with these
    width = float(np.max(scene.boxes[:, 2:] - scene.boxes[:, :2]) * C.CROP_SCALE)
    conv = pipe.model.rcnet.root_net.out_conv
    with torch.no_grad():
        conv.weight[C.ROOT_NET_DEPTH_CHANNEL].zero_()
        conv.bias[C.ROOT_NET_DEPTH_CHANNEL] = depth_m * width / scene.K[0, 0]
    pipe.set_scene(scene.scene_points_map)
    return pipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--depth", type=float, default=3.0, help="pinned root depth, metres")
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp16"])
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = write_synthetic_model_dir(Path(tmp))
        scene = make_demo_scene(model_dir)
        frames = {p: _pipeline(model_dir, scene, args.device, p, args.depth).process(
            scene.image, scene.K, scene.T_map_camera, scene.boxes) for p in ["fp32", *args.precisions]}
    print(f"device {args.device}, roots pinned at {args.depth} m; differences to fp32 in metres")
    for precision in args.precisions:
        for a, b in zip(frames["fp32"].persons, frames[precision].persons):
            error = np.linalg.norm(b.vertices_map - a.vertices_map, axis=1)
            print(f"{precision} person {a.box_index} (z {a.root_camera[2]:.2f} m): "
                  f"coarse root {np.linalg.norm(b.coarse_root_camera - a.coarse_root_camera):.1e}, "
                  f"refined root {np.linalg.norm(b.root_camera - a.root_camera):.1e}, "
                  f"vertices max {error.max():.1e} mean {error.mean():.1e}, "
                  f"ROI voxels {a.num_roi_voxels} / {b.num_roi_voxels}, "
                  f"contacts {len(a.contact_labels)} / {len(b.contact_labels)}")


if __name__ == "__main__":
    main()
