"""Throughput of ``sahmr synth``: samples per second on this machine, and where the time goes.

Generates a split into a temporary directory (or ``--out``) with ``--workers`` processes and prints
samples/s, persons/s and the milliseconds per sample and worker of each stage (room, scan cloud,
SDF grid, placing people, choosing the camera, rendering, ground truth); the rest of the wall time
is process start-up, PNG/npz encoding, shard and bag writing::

    python bench/synth.py --scenes 8 --frames-per-scene 8 --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from sahmr_ros.data.synth import SynthConfig, default_workers, synthesize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--frames-per-scene", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default: one per CPU)")
    parser.add_argument("--split", default="train", choices=("train", "val", "test"))
    parser.add_argument("--bags", action="store_true", help="also write rosbag2 files (as for the test split)")
    parser.add_argument("--out", default=None, help="keep the data here (default: a temporary directory)")
    args = parser.parse_args(argv)
    workers = args.workers or default_workers()
    config = SynthConfig(split=args.split, scenes=args.scenes, frames_per_scene=args.frames_per_scene, seed=0)
    with tempfile.TemporaryDirectory(prefix="sahmr_bench_synth_") as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "data"
        stats = synthesize(out, config, workers=workers, bags=args.bags, progress=True)
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    n = stats["samples"]
    print(f"{n} samples, {stats['persons']} persons in {stats['seconds']:.1f} s with {workers} worker(s) on "
          f"{os.cpu_count()} CPUs: {stats['samples_per_s']:.2f} samples/s, {stats['persons'] / stats['seconds']:.2f} "
          f"persons/s, {size / n / 2**20:.2f} MiB per sample (scenes included)")
    staged = sum(stats["stages_s"].values())
    print("ms per sample and worker: " + ", ".join(f"{k} {1e3 * v / n:.0f}" for k, v in stats["stages_s"].items())
          + f"; staged total {1e3 * staged / n:.0f}; other (start-up, encoding, writing) "
          f"{1e3 * (stats['seconds'] * workers - staged) / n:.0f}")
    print(f"at this rate: {stats['samples_per_s'] * 3600 * 12:.0f} samples in 12 hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
