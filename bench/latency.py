"""Per-stage latency of the SA-HMR pipeline, per preset, device and number of persons.

    python bench/latency.py                      # small + official on the default device
    python bench/latency.py --presets small --persons 1 4 8 16 --repeats 5
    python bench/latency.py --device cuda --precision bf16

Input: the demo's synthetic room and people (no downloads), boxes repeated to N persons. Weights
are random, so RCNet's depth head is pinned to put each root about 3 m away: the sparse CNN then
sees a realistic region of interest (untrained weights would put the root anywhere). The last
table checks that per-frame time does not grow with the size of the map: the same frame with
2 million extra map points far away.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sahmr_ros.body import load_body_assets  # noqa: E402
from sahmr_ros.body.synthetic import write_synthetic_model_dir  # noqa: E402
from sahmr_ros.demo.run import make_demo_scene  # noqa: E402
from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig  # noqa: E402
from sahmr_ros.pipeline import STAGES, Pipeline, PipelineConfig  # noqa: E402

TARGET_DEPTH_M = 3.0


def _pipeline(preset: str, body, device: str, precision: str) -> Pipeline:
    torch.manual_seed(0)
    model = SAHMR(SAHMRConfig.from_preset(preset), body)
    return Pipeline(model, body.faces, PipelineConfig(device=device, precision=precision), f"{preset}, random")


def _pin_depth(pipe: Pipeline, K: np.ndarray, box_width_px: float) -> None:
    """Make the depth channel constant so that Z = TARGET_DEPTH_M for a crop of this width."""
    conv = pipe.model.rcnet.root_net.out_conv
    with torch.no_grad():
        conv.weight[1].zero_()
        conv.bias[1] = TARGET_DEPTH_M * box_width_px / K[0, 0]


def _boxes(scene, n: int) -> np.ndarray:
    reps = [scene.boxes[i % len(scene.boxes)] + (i // len(scene.boxes)) * np.array([3.0, 0, 3.0, 0])
            for i in range(n)]
    return np.array(reps)


def _measure(pipe: Pipeline, scene, boxes, repeats: int) -> dict[str, float]:
    pipe.process(scene.image, scene.K, scene.T_map_camera, boxes)  # warm-up
    runs = [pipe.process(scene.image, scene.K, scene.T_map_camera, boxes).timings_ms for _ in range(repeats)]
    return {s: float(np.median([r[s] for r in runs])) for s in STAGES}


def _table(title: str, rows: list[tuple[str, dict[str, float]]], base: dict[str, float] | None) -> None:
    print(f"\n{title}")
    head = f"{'':>14}" + "".join(f"{s:>12}" for s in STAGES)
    print(head)
    for name, t in rows:
        print(f"{name:>14}" + "".join(f"{t[s]:12.1f}" for s in STAGES))
    if rows:
        last = rows[-1][1]
        print(f"{'share %':>14}" + "".join(f"{100 * last[s] / last['total']:12.1f}" for s in STAGES))
    if base is not None:
        for name, t in rows[1:]:
            print(f"{name + ' / 1':>14}" + "".join(f"{t[s] / max(base[s], 1e-9):12.2f}" for s in STAGES))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["small", "official"])
    ap.add_argument("--persons", nargs="+", type=int, default=[1, 4, 8])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = write_synthetic_model_dir(Path(tmp) / "synthetic_model")
        body = load_body_assets(model_dir)
        scene = make_demo_scene(model_dir)
    width = float(np.median(np.max(scene.boxes[:, 2:] - scene.boxes[:, :2], axis=1)) * 1.15)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, scene {len(scene.scene_points_map)} pts")

    for preset in args.presets:
        pipe = _pipeline(preset, body, args.device, args.precision)
        _pin_depth(pipe, scene.K, width)
        pipe.set_scene(scene.scene_points_map)
        n_params = sum(p.numel() for p in pipe.model.parameters()) / 1e6
        rows = []
        for n in args.persons:
            t = _measure(pipe, scene, _boxes(scene, n), args.repeats)
            rows.append((f"{n} person" + ("s" if n > 1 else ""), t))
            print(f"  {preset} {n} persons: total {t['total']:.0f} ms", flush=True)
        _table(f"{preset} preset ({n_params:.1f} M params), {pipe.device}, {args.precision}, ms (median of "
               f"{args.repeats})", rows, rows[0][1])

        rng = np.random.default_rng(0)
        far = rng.uniform([40, 40, 0], [400, 400, 3], size=(2_000_000, 3)).astype(np.float32)
        pipe.set_scene(np.concatenate([scene.scene_points_map, far]))
        big = _measure(pipe, scene, _boxes(scene, 1), args.repeats)
        _table(f"{preset}: map with 2,000,000 extra points ({len(pipe.scene)} after 2 cm voxels), 1 person",
               [("room only", rows[0][1]), ("room + 2M", big)], rows[0][1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
