"""Soak the node's code path: N frames through its callbacks with the resident memory sampled.

Each frame is what the node receives: a /tf sample, an image, its camera_info and detections, fed to
:class:`~sahmr_ros.ros.callbacks.NodeCallbacks` (the functions ``sahmr_node`` subscribes) with the
real latest-frame worker and the embedded default pipeline (small preset, CPU). Stressors, any
combination (``--stress``):

* ``k``: camera_info's K (and a plumb_bob distortion) changes every frame, so every per-calibration
  cache (the undistortion grid) sees a new key each frame;
* ``backwards``: every ``--jump-every`` frames the stamps jump back to the start (a bag replayed
  with ``--loop``), which restarts the synchroniser and the TF history.

Prints the per-frame time and RSS every ``--report-every`` frames, then the growth of the resident
memory from the end of the warm-up (``--warmup`` of the frames) to the end; exits 1 when it exceeds
``--max-growth-pct`` (default 2 %)::

    python bench/soak.py --frames 10000 --stress k backwards
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

from sahmr_ros.body.synthetic import write_synthetic_model_dir
from sahmr_ros.demo.run import make_demo_scene
from sahmr_ros.pipeline import Pipeline, PipelineConfig
from sahmr_ros.ros.callbacks import NodeCallbacks
from sahmr_ros.ros.conversions import boxes_to_detections, intrinsics_to_camera_info, matrix_to_transform, rgb_to_image
from sahmr_ros.ros.core import NodeParams, PerceptionCore
from sahmr_ros.ros.interfaces import make_typestore
from sahmr_ros.ros.messages import RosbagsFactory, ns_to_time

S = 1_000_000_000
T0 = 1_700_000_000 * S
PERIOD_NS = S // 15  # 15 Hz camera


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--stress", nargs="*", default=[], choices=["k", "backwards"])
    parser.add_argument("--jump-every", type=int, default=500, help="frames between jumps back in time")
    parser.add_argument("--persons", type=int, default=2, help="boxes per frame (the demo has 2 people)")
    parser.add_argument("--warmup", type=float, default=0.1, help="share of the frames before the baseline")
    parser.add_argument("--report-every", type=int, default=500)
    parser.add_argument("--max-growth-pct", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="sahmr_soak_") as tmp:
        model_dir = write_synthetic_model_dir(tmp)
        scene = make_demo_scene(model_dir)
        torch.manual_seed(0)
        pipeline = Pipeline.embedded_default(model_dir, PipelineConfig(device="cpu"),
                                             weights="untrained")  # as when the README's figures were measured
    pipeline.set_scene(scene.scene_points_map)
    f = RosbagsFactory(make_typestore())
    params = NodeParams(tf_timeout_s=0.0, distortion="undistort")
    core = PerceptionCore(pipeline, params, f)
    served = []
    errors: list[str] = []
    cb = NodeCallbacks(core, lambda out: served.append(out.stamp_ns),
                       lambda level, line: errors.append(line) if level != "info" else None,
                       tf_wait_s=0.0, log_period_s=0.0)
    h, w = scene.image.shape[:2]
    boxes = np.resize(scene.boxes, (args.persons, 4))
    rng = np.random.default_rng(0)

    def header(stamp: int, frame: str = "camera"):
        return f.make("std_msgs/msg/Header", stamp=ns_to_time(f, stamp), frame_id=frame)

    print(f"soak: {args.frames} frames, {args.persons} persons, stress {args.stress or 'none'}, "
          f"torch threads {torch.get_num_threads()}")
    warm_frame = max(1, int(args.warmup * args.frames))
    baseline = peak = None
    started = last = time.perf_counter()
    for i in range(args.frames):
        k = i % args.jump_every if "backwards" in args.stress else i
        stamp = T0 + k * PERIOD_NS
        K, d = scene.K, (0.0,) * 5
        if "k" in args.stress:
            K = scene.K.copy()
            K[[0, 1], [0, 1]] *= 1.0 + 0.02 * rng.standard_normal()
            K[:2, 2] += rng.uniform(-2.0, 2.0, 2)
            d = (-0.01 * rng.random(), 0.001, 0.0, 0.0, 0.0)
        cb.on_tf(f.make("tf2_msgs/msg/TFMessage", transforms=[
            matrix_to_transform(f, header(stamp, "map"), "camera", scene.T_map_camera)]), False)
        cb.on_input("image", rgb_to_image(f, header(stamp), scene.image))
        cb.on_input("camera_info", intrinsics_to_camera_info(f, header(stamp), K, w, h, D=d))
        cb.on_input("detections", boxes_to_detections(f, header(stamp), boxes))
        while not cb.worker.idle():
            time.sleep(0.0005)
        if i + 1 == warm_frame:
            baseline = rss_mb()
        if baseline is not None:
            peak = max(peak or 0.0, rss_mb())
        if (i + 1) % args.report_every == 0 or i + 1 == args.frames:
            now = time.perf_counter()
            n = args.report_every if (i + 1) % args.report_every == 0 else (i + 1) % args.report_every
            print(f"  frame {i + 1:6d}: {1e3 * (now - last) / n:7.1f} ms/frame, RSS {rss_mb():7.1f} MiB, "
                  f"served {len(served)}, errors {len(errors)}", flush=True)
            last = now
    cb.close()
    end = rss_mb()
    growth = 100.0 * (end - baseline) / baseline
    wall = time.perf_counter() - started
    print(f"frames served {len(served)}/{args.frames}, errors {len(errors)}, sync time jumps "
          f"{core.sync.time_jumps}, {wall:.0f} s ({1e3 * wall / args.frames:.1f} ms/frame)")
    print(f"RSS after warm-up (frame {warm_frame}) {baseline:.1f} MiB, end {end:.1f} MiB, peak {peak:.1f} MiB: "
          f"growth {growth:+.2f} % (limit {args.max_growth_pct} %)")
    for line in errors[:5]:
        print("  error:", line.splitlines()[0])
    ok = growth <= args.max_growth_pct and len(served) == args.frames
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
