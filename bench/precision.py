"""What fp16 / bf16 autocast costs in accuracy and buys in time, against fp32 (same weights, same frames).

    python bench/precision.py                          # shipped trained default, CPU, 2 scenes x 4 frames
    python bench/precision.py --scenes 4 --frames 8 --repeats 20
    python bench/precision.py --untrained --depth 6    # the old probe: random weights, roots pinned
    python bench/precision.py --untrained --preset official --precisions bf16
    python bench/precision.py --checkpoint models/sahmr_official.pt   # an imported official checkpoint

Default input: the embedded default's trained weights (``sahmr_ros/weights/small_synthetic.pt``, synthetic
body) on a synthetic split written by ``sahmr_ros.data.synth.synthesize`` (test split, ``--seed``),
evaluated as ``sahmr eval`` does (ground-truth boxes, ``scene_pitch=None``). Printed per precision:

* the difference from fp32 over every person of the split, metres: vertices (6890), H36M joints (14)
  and refined root, each as the max and the mean over persons (and vertices / joints) of the distance;
* the eval metrics (mean / median over the evaluated persons, mm): G-MPJPE, PA-MPJPE, root error;
* per-stage time (``FrameResult.timings_ms``) on the demo frame with 1 person: median of ``--repeats``
  after 2 warm-up frames.

``--checkpoint``: the same with another sahmr_ros checkpoint of either preset (an official one after
``sahmr import``) on the synthetic body. ``--untrained``: the previous behaviour: random (seed 0) weights
of ``--preset``, RCNet's depth head pinned so that the roots lie ``--depth`` metres away; differences
printed per person of the demo frame.
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
from sahmr_ros.pipeline import STAGES, Pipeline, PipelineConfig  # noqa: E402

EVAL_METRICS = (("G-MPJPE", "g_mpjpe_mm"), ("PA-MPJPE", "pa_mpjpe_mm"), ("root", "root_error_mm"))


# --- trained default on a synthetic split ----------------------------------------------------------
def person_outputs(pipe: Pipeline, data) -> dict[tuple[str, int], dict[str, np.ndarray]]:
    """Every person of the split through ``pipe``: {(sample key, box index): vertices, joints, root (map)}."""
    from sahmr_ros.evaluation.evaluate import frame_inputs

    out, scene_id = {}, None
    for i in range(len(data)):
        sample = data.sample(i)
        if not sample.persons:
            continue
        if sample.scene_id != scene_id:
            pipe.set_scene(data.scene(sample.scene_id).cloud)
            scene_id = sample.scene_id
        image, K = frame_inputs(sample)
        boxes = np.array([p.box_xyxy for p in sample.persons], np.float64).reshape(-1, 4)
        for p in pipe.process(image, K, sample.T_map_camera, boxes).persons:
            out[sample.key, p.box_index] = {"vertices": p.vertices_map, "joints": p.joints14_map,
                                            "root": p.root_map[None]}
    return out


def differences(ref: dict, other: dict) -> dict[str, tuple[float, float]]:
    """{vertices, joints, root: (max, mean) distance in metres} of ``other`` from ``ref`` over shared persons."""
    keys = sorted(set(ref) & set(other))
    out = {}
    for name in ("vertices", "joints", "root"):
        d = np.concatenate([np.linalg.norm(other[k][name].astype(np.float64) - ref[k][name], axis=1) for k in keys])
        out[name] = (float(d.max()), float(d.mean()))
    return out


def eval_metrics(pipe: Pipeline, data, j_regressor) -> dict[str, float]:
    """The ``sahmr eval`` metrics over the evaluated persons, mm: {key: (mean, median)}, and their number."""
    from sahmr_ros.evaluation.evaluate import evaluate

    rows = [r for r in evaluate(data, pipe, j_regressor, progress=False).rows if r["status"] == "ok"]
    values = {key: np.array([r[key] for r in rows], np.float64) for _, key in EVAL_METRICS}
    return {"persons": len(rows), **{key: (float(v.mean()), float(np.median(v))) for key, v in values.items()}}


def stage_times(pipe: Pipeline, scene, repeats: int) -> dict[str, float]:
    """Median ms per stage on the demo frame with its first person only (2 warm-up frames first)."""
    box = scene.boxes[:1]
    pipe.set_scene(scene.scene_points_map)
    for _ in range(2):
        pipe.process(scene.image, scene.K, scene.T_map_camera, box)
    runs = [pipe.process(scene.image, scene.K, scene.T_map_camera, box).timings_ms for _ in range(repeats)]
    return {s: float(np.median([r.get(s, 0.0) for r in runs])) for s in STAGES}


def run_trained(args, tmp: Path) -> None:
    from sahmr_ros.body.assets import load_h36m_regressor
    from sahmr_ros.data.synth import SynthConfig, synthesize
    from sahmr_ros.evaluation.evaluate import open_data

    model_dir = write_synthetic_model_dir(tmp / "body")
    data_dir = Path(args.data) if args.data else tmp / "data"
    if not args.data:
        threads = torch.get_num_threads()
        synthesize(data_dir, SynthConfig(split="test", scenes=args.scenes, frames_per_scene=args.frames,
                                         seed=args.seed), bags=False, progress=False)
        torch.set_num_threads(threads)  # synthesize leaves the process on one thread
    data = open_data(data_dir, "test", expect_body="synthetic")
    j_regressor = load_h36m_regressor(model_dir / C.H36M_REGRESSOR_FILENAME)
    demo = make_demo_scene(model_dir)
    precisions = ["fp32", *args.precisions]
    outputs, metrics, times = {}, {}, {}
    for precision in precisions:
        config = PipelineConfig(device=args.device, precision=precision, scene_pitch=None)  # as sahmr eval
        pipe = Pipeline.embedded_default(model_dir, config, checkpoint=args.checkpoint)
        outputs[precision] = person_outputs(pipe, data)
        metrics[precision] = eval_metrics(pipe, data, j_regressor)
        times[precision] = stage_times(Pipeline.embedded_default(model_dir, PipelineConfig(
            device=args.device, precision=precision), checkpoint=args.checkpoint), demo, args.repeats)
    print(f"weights: {pipe.weights_description}; device {pipe.device}, {torch.get_num_threads()} threads; "
          f"data: {data_dir} (test split, {len(data)} images, {len(outputs['fp32'])} persons, seed {args.seed})\n")

    print("Difference from fp32, metres (max / mean over persons and points); eval metrics, mm (mean / median over "
          f"the {metrics['fp32']['persons']} evaluated persons):\n")
    print("| precision | vertices max | vertices mean | joints max | joints mean | root max | root mean | "
          + " | ".join(name for name, _ in EVAL_METRICS) + " |")
    print("|---" * (7 + len(EVAL_METRICS)) + "|")
    for precision in precisions:
        diff = differences(outputs["fp32"], outputs[precision])
        cells = [f"{diff[n][k]:.1e}" for n in ("vertices", "joints", "root") for k in (0, 1)]
        cells += ["{:.1f} / {:.1f}".format(*metrics[precision][key]) for _, key in EVAL_METRICS]
        print(f"| {precision} | " + " | ".join(cells) + " |")
    print(f"\nPer-stage time, 1 person (demo frame), ms, median of {args.repeats}:\n")
    print("| precision | " + " | ".join(STAGES) + " |")
    print("|---" * (1 + len(STAGES)) + "|")
    for precision in precisions:
        print(f"| {precision} | " + " | ".join(f"{times[precision][s]:.1f}" for s in STAGES) + " |")


# --- untrained, roots pinned (the previous probe) --------------------------------------------------
def _pinned_pipeline(model_dir: Path, scene, device: str, precision: str, depth_m: float,
                     preset: str = "small") -> Pipeline:
    from sahmr_ros.body import load_body_assets
    from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig

    body = load_body_assets(model_dir)
    torch.manual_seed(0)
    model = SAHMR(SAHMRConfig.from_preset(preset), body)
    pipe = Pipeline(model, body.faces, PipelineConfig(device=device, precision=precision), f"{preset}, random")
    width = float(np.max(scene.boxes[:, 2:] - scene.boxes[:, :2]) * C.CROP_SCALE)
    conv = pipe.model.rcnet.root_net.out_conv
    with torch.no_grad():
        conv.weight[C.ROOT_NET_DEPTH_CHANNEL].zero_()
        conv.bias[C.ROOT_NET_DEPTH_CHANNEL] = depth_m * width / scene.K[0, 0]
    pipe.set_scene(scene.scene_points_map)
    return pipe


def run_untrained(args, tmp: Path) -> None:
    model_dir = write_synthetic_model_dir(tmp)
    scene = make_demo_scene(model_dir)
    frames = {p: _pinned_pipeline(model_dir, scene, args.device, p, args.depth, args.preset).process(
        scene.image, scene.K, scene.T_map_camera, scene.boxes) for p in ["fp32", *args.precisions]}
    print(f"{args.preset} preset, untrained weights (seed 0); device {args.device}, roots pinned at {args.depth} m; "
          "differences to fp32 in metres")
    for precision in args.precisions:
        for a, b in zip(frames["fp32"].persons, frames[precision].persons):
            error = np.linalg.norm(b.vertices_map - a.vertices_map, axis=1)
            print(f"{precision} person {a.box_index} (z {a.root_camera[2]:.2f} m): "
                  f"coarse root {np.linalg.norm(b.coarse_root_camera - a.coarse_root_camera):.1e}, "
                  f"refined root {np.linalg.norm(b.root_camera - a.root_camera):.1e}, "
                  f"vertices max {error.max():.1e} mean {error.mean():.1e}, "
                  f"ROI voxels {a.num_roi_voxels} / {b.num_roi_voxels}, "
                  f"contacts {len(a.contact_labels)} / {len(b.contact_labels)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp16"])
    ap.add_argument("--untrained", action="store_true", help="random weights, roots pinned at --depth (old probe)")
    ap.add_argument("--preset", default="small", choices=("small", "official"), help="--untrained: the preset")
    ap.add_argument("--checkpoint", default=None,
                    help="a sahmr_ros checkpoint (either preset, e.g. an imported official one) instead of the "
                         "shipped weights")
    ap.add_argument("--depth", type=float, default=3.0, help="--untrained: pinned root depth, metres")
    ap.add_argument("--data", default=None, help="an existing sahmr synth directory (synthetic body; test split)")
    ap.add_argument("--scenes", type=int, default=2, help="scenes of the generated split")
    ap.add_argument("--frames", type=int, default=4, help="frames per scene of the generated split")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated split")
    ap.add_argument("--repeats", type=int, default=10, help="timed frames per precision")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sahmr_bench_precision_") as tmp:
        (run_untrained if args.untrained else run_trained)(args, Path(tmp))


if __name__ == "__main__":
    main()
