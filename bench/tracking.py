"""Tracks and temporal smoothing measured on synthetic sequences with ground truth, through ``sahmr bag``.

    python bench/tracking.py                                   # 2 sequences of 40 frames at 10 fps
    python bench/tracking.py --scenes 3 --frames 60 --data /tmp/seq   # keeps (and reuses) the data
    python bench/tracking.py --min-cutoff-hz 0.5 --beta 0.5    # other filter parameters

Generates ``sahmr synth --sequence`` data (people walking at about 1 m/s and people standing or
sitting still, a moving camera, detections without ids so the node's own tracker assigns tracks), runs
every sequence's bag through the node's code path (:func:`sahmr_ros.ros.bag.run_bag`, the embedded
default weights, ``Pipeline.embedded_default``) and compares, per ground-truth person, the raw
per-frame estimates and the smoothed ones that each published frame carries:

* G-MPJPE (mm, 14 joints, map frame);
* acceleration error (mm/frame^2: ``|a_pred - a_gt|`` with ``a`` the second finite difference of
  the 14 map-frame joints, over runs of consecutive frames; HMMR / VIBE) and the acceleration itself;
* tracks: predicted track ids per ground-truth person, identity switches, and whether the ids read
  back from the output bag are those of the core.

The lag the filters add is a property of the filters on these motions, so it is measured on the
ground truth itself, as estimates of known quality: each person's ground-truth root and joints, with
and without Gaussian noise (``--noise-root-m``, ``--noise-joints-m``), go through a fresh
:class:`~sahmr_ros.tracking.PeopleTracker` at the sequence's stamps; the lag is the delay (frames, ms)
that best aligns the output with the ground truth (:func:`sahmr_ros.evaluation.temporal.trajectory_lag`),
for the root (Kalman) and the root-relative joints (One-Euro), on the walkers. (On the network's
estimates the alignment is meaningless while their errors dwarf the motion.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sahmr_ros.evaluation.temporal import acceleration, acceleration_error, trajectory_lag  # noqa: E402
from sahmr_ros.tracking import PeopleTracker, TrackingParams  # noqa: E402

BOX_MATCH_PX = 0.5  # the detections are the ground-truth boxes
MIN_LAG_FRAMES = 10  # a walker's run must be this long for its lag to be measured


def _runs(frames: list[int]) -> list[slice]:
    """Slices of the maximal runs of consecutive frame indices (``frames`` ascending)."""
    out, start = [], 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or frames[i] != frames[i - 1] + 1:
            out.append(slice(start, i))
            start = i
    return out


def generate(data: Path, args) -> None:
    from sahmr_ros.data.synth import SynthConfig, synthesize

    if (data / "manifest.json").exists():
        print(f"reusing {data}")
        return
    config = SynthConfig(split="test", scenes=args.scenes, frames_per_scene=args.frames, seed=args.seed,
                         sequence=True, fps=args.fps, people=tuple(args.people))
    t0 = time.perf_counter()
    stats = synthesize(data, config, workers=args.workers, bags=True, progress=False,
                       command=["bench/tracking.py", *sys.argv[1:]])
    print(f"generated {stats['samples']} frames, {stats['persons']} persons in {time.perf_counter() - t0:.0f} s")


def run(data: Path, out: Path, tracking: TrackingParams, device: str):
    """Run every bag; returns {(scene, gt track): per-frame rows} and a list of notes."""
    from sahmr_ros.body.synthetic import write_synthetic_model_dir
    from sahmr_ros.data.dataset import ShardIndex
    from sahmr_ros.evaluation.bags import bag_split_dir, read_bag_index, read_humans
    from sahmr_ros.pipeline import Pipeline, PipelineConfig
    from sahmr_ros.ros.bag import run_bag
    from sahmr_ros.ros.core import NodeParams

    index = ShardIndex(data)
    position = {index.key(i): i for i in range(len(index))}
    split_dir = bag_split_dir(data, "test")
    frames = read_bag_index(split_dir)
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = Pipeline.embedded_default(write_synthetic_model_dir(tmp), PipelineConfig(device=device))
    print(f"weights: {pipeline.weights_description}")
    rows: dict[tuple[str, int], list] = {}
    notes = []
    for bag in dict.fromkeys(f.bag for f in frames):
        keys = {f.stamp_ns: f.key for f in frames if f.bag == bag}
        published = {}

        def collect(output, keys=keys, published=published):
            sample = index.sample(position[keys[output.stamp_ns]])
            published[output.stamp_ns] = [t.track_id for t in output.tracks]
            for tp in output.tracks:
                gap = [np.abs(p.box_xyxy - tp.raw.box_xyxy).max() for p in sample.persons]
                gt = sample.persons[int(np.argmin(gap))]
                assert min(gap) <= BOX_MATCH_PX, "an estimate without its ground-truth person"
                rows.setdefault((sample.scene_id, gt.track_id), []).append(dict(
                    frame=sample.frame_index, track_id=tp.track_id, category=gt.category,
                    gt=gt.joints14_map, gt_root=gt.root_map, raw=tp.raw.joints14_map.astype(np.float64),
                    smoothed=tp.smoothed.joints14_map.astype(np.float64),
                    raw_root=tp.raw.root_map.astype(np.float64),
                    smoothed_root=tp.smoothed.root_map.astype(np.float64)))

        t0 = time.perf_counter()
        summary = run_bag(split_dir / bag, out / bag, NodeParams(tf_timeout_s=0.0), pipeline, progress=False,
                          tracking=tracking, on_frame=collect, log=lambda line: None)
        wall = time.perf_counter() - t0
        back = {stamp: [h.track_id for h in humans] for stamp, humans in read_humans(out / bag)}
        notes.append(f"{bag}: {summary.frames_processed} frames, {summary.persons} persons in {summary.tracks} "
                     f"tracks, {wall:.1f} s; track ids read back from the bag equal the core's: {back == published}")
    return rows, notes


def measure(rows, fps: float, timeout_s: float) -> dict:
    """Means over every ground-truth person of each metric, raw and smoothed.

    An identity switch is a new predicted track id for a person seen again within ``timeout_s``; a new
    id after a longer absence is what the tracker promises (a re-appearance), counted apart.
    """
    out = {k: [] for k in ("g_mpjpe_raw", "g_mpjpe_smoothed", "accel_err_raw", "accel_err_smoothed", "accel_gt",
                           "accel_raw", "accel_smoothed")}
    ids_per_person, switches, reappearances, walker_runs = [], 0, 0, 0
    for (scene, _), seq in sorted(rows.items()):
        seq = sorted(seq, key=lambda r: r["frame"])
        names = ("gt", "raw", "smoothed", "gt_root", "raw_root", "smoothed_root")
        a = {k: np.array([r[k] for r in seq]) for k in names}
        for mode in ("raw", "smoothed"):
            out[f"g_mpjpe_{mode}"] += list(1000 * np.linalg.norm(a[mode] - a["gt"], axis=-1).mean(axis=1))
        ids_per_person.append(len({r["track_id"] for r in seq}))
        for r0, r1 in zip(seq, seq[1:]):
            if r0["track_id"] != r1["track_id"]:
                if (r1["frame"] - r0["frame"]) / fps <= timeout_s:
                    switches += 1
                else:
                    reappearances += 1
        for run in _runs([r["frame"] for r in seq]):
            if run.stop - run.start < 3:
                continue
            gt = a["gt"][run]
            out["accel_gt"] += list(acceleration(gt))
            for mode in ("raw", "smoothed"):
                out[f"accel_err_{mode}"] += list(acceleration_error(a[mode][run], gt))
                out[f"accel_{mode}"] += list(acceleration(a[mode][run]))
            walker_runs += seq[0]["category"] == "walking" and run.stop - run.start >= MIN_LAG_FRAMES
    result = {k: float(np.nanmean(v)) if v else float("nan") for k, v in out.items()}
    result.update(persons=len(rows), estimates=len(out["g_mpjpe_raw"]), walker_runs=int(walker_runs),
                  ids_per_person=float(np.mean(ids_per_person)), id_switches=switches,
                  new_ids_after_absence=reappearances, fps=fps)
    return result


def _gt_person(root, joints, box):
    from sahmr_ros.pipeline import PersonResult

    zeros = np.zeros((0, 3), np.float32)
    return PersonResult(box_index=0, box_xyxy=np.asarray(box, np.float64), score=1.0,
                        root_map=np.asarray(root, np.float32), root_camera=np.zeros(3), coarse_root_camera=np.zeros(3),
                        joints14_map=np.asarray(joints, np.float32), vertices_map=zeros, contact_points_map=zeros,
                        contact_labels=np.zeros(0, np.int64), num_roi_voxels=1)


def filter_on_ground_truth(rows, tracking: TrackingParams, fps: float, noise_root: float, noise_joints: float,
                           seed: int = 0) -> dict:
    """The filters alone on each person's ground truth (plus noise): lags, acceleration error, G-MPJPE."""
    rng = np.random.default_rng(seed)
    out = {k: [] for k in ("lag_root", "lag_pose", "accel_err_in", "accel_err_out", "g_mpjpe_in", "g_mpjpe_out")}
    for (scene, track), seq in sorted(rows.items()):
        seq = sorted(seq, key=lambda r: r["frame"])
        tracker = PeopleTracker(tracking)
        gt = np.array([r["gt"] for r in seq])
        gt_root = np.array([r["gt_root"] for r in seq])
        noisy_root = gt_root + rng.normal(0, noise_root, gt_root.shape) if noise_root else gt_root
        noisy = gt - gt_root[:, None] + noisy_root[:, None] + (rng.normal(0, noise_joints, gt.shape) if noise_joints
                                                               else 0.0)
        smoothed, smoothed_root = [], []
        for r, root, joints in zip(seq, noisy_root, noisy):
            stamp = 1_000_000_000 + int(round(r["frame"] * 1e9 / fps))
            (tp,) = tracker.update(stamp, [_gt_person(root, joints, (0, 0, 10, 10))], [f"{scene}/{track}"]).persons
            smoothed.append(tp.smoothed.joints14_map.astype(np.float64))
            smoothed_root.append(tp.smoothed.root_map.astype(np.float64))
        smoothed, smoothed_root = np.array(smoothed), np.array(smoothed_root)
        inp = noisy.astype(np.float32).astype(np.float64)
        out["g_mpjpe_in"] += list(1000 * np.linalg.norm(inp - gt, axis=-1).mean(axis=1))
        out["g_mpjpe_out"] += list(1000 * np.linalg.norm(smoothed - gt, axis=-1).mean(axis=1))
        for run in _runs([r["frame"] for r in seq]):
            if run.stop - run.start < 3:
                continue
            out["accel_err_in"] += list(acceleration_error(inp[run], gt[run]))
            out["accel_err_out"] += list(acceleration_error(smoothed[run], gt[run]))
            if seq[0]["category"] == "walking" and run.stop - run.start >= MIN_LAG_FRAMES:
                out["lag_root"].append(trajectory_lag(smoothed_root[run], gt_root[run]))
                out["lag_pose"].append(trajectory_lag(smoothed[run] - smoothed_root[run][:, None],
                                                      gt[run] - gt_root[run][:, None]))
    return {k: float(np.nanmean(v)) if v else float("nan") for k, v in out.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="sequence data directory (generated if absent)")
    parser.add_argument("--scenes", type=int, default=2, help="sequences (one per room)")
    parser.add_argument("--frames", type=int, default=40, help="frames per sequence")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--people", type=int, nargs=2, default=(2, 3), metavar=("MIN", "MAX"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--noise-root-m", type=float, default=0.05, help="root noise of the filter-only run")
    parser.add_argument("--noise-joints-m", type=float, default=0.02, help="joint noise of the filter-only run")
    defaults = TrackingParams()
    for name in ("min_cutoff_hz", "beta", "d_cutoff_hz", "root_accel_noise", "root_measurement_noise_m"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = ("min_cutoff_hz", "beta", "d_cutoff_hz", "root_accel_noise", "root_measurement_noise_m")
    tracking = TrackingParams(**{k: getattr(args, k) for k in names})
    with tempfile.TemporaryDirectory(prefix="sahmr_bench_tracking_") as tmp:
        data = args.data or Path(tmp) / "data"
        generate(data, args)
        rows, notes = run(data, Path(tmp) / "out", tracking, args.device)
    m = measure(rows, args.fps, tracking.track_timeout_s)
    ms = 1000.0 / args.fps
    print("\n".join(notes))
    print(f"tracking: {tracking}")
    print(f"{m['persons']} ground-truth persons, {m['estimates']} estimates, {m['walker_runs']} walker runs of "
          f">= {MIN_LAG_FRAMES} frames; predicted track ids per person {m['ids_per_person']:.2f}: identity "
          f"switches {m['id_switches']}, new ids after an absence longer than the track timeout "
          f"{m['new_ids_after_absence']}")
    print("| | raw | smoothed |\n|---|---|---|")
    print(f"| G-MPJPE (mm) | {m['g_mpjpe_raw']:.1f} | {m['g_mpjpe_smoothed']:.1f} |")
    print(f"| acceleration error (mm/frame^2) | {m['accel_err_raw']:.1f} | {m['accel_err_smoothed']:.1f} |")
    print(f"| acceleration (mm/frame^2; ground truth {m['accel_gt']:.1f}) | {m['accel_raw']:.1f} | "
          f"{m['accel_smoothed']:.1f} |")
    print(f"\nthe filters alone on the ground truth as estimates ({m['walker_runs']} walker runs for the lags):")
    print("| input | G-MPJPE in -> out (mm) | accel. error in -> out (mm/frame^2) | root lag | pose lag |")
    print("|---|---|---|---|---|")
    for label, root_noise, joint_noise in (("exact", 0.0, 0.0), (f"noise root {args.noise_root_m * 100:g} cm, joints "
                                                                 f"{args.noise_joints_m * 100:g} cm",
                                                                 args.noise_root_m, args.noise_joints_m)):
        g = filter_on_ground_truth(rows, tracking, args.fps, root_noise, joint_noise, seed=args.seed)
        print(f"| {label} | {g['g_mpjpe_in']:.1f} -> {g['g_mpjpe_out']:.1f} | {g['accel_err_in']:.1f} -> "
              f"{g['accel_err_out']:.1f} | {g['lag_root']:+.2f} frames ({g['lag_root'] * ms:+.0f} ms) | "
              f"{g['lag_pose']:+.2f} frames ({g['lag_pose'] * ms:+.0f} ms) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
