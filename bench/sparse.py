"""Milliseconds per SPVCNN forward (and forward + backward) on the torch and spconv sparse backends.

    python bench/sparse.py                          # small + official, 1 and 2 threads, ~2,900 voxels
    python bench/sparse.py --presets small --threads 2 --repeats 50

Input: the voxels of a region of interest around a person 3 m in front of the camera (a standing
body, the floor under it and a wall behind it, 5 cm voxels, camera frame, 1.25 m around the root),
35 random input channels; random weights. spconv's CPU backward does not run, so its forward +
backward column reads "n/a" on CPU. Each cell: median (minimum) of ``--repeats`` runs after 3
warm-ups; on a machine shared with other work the minimum is the better estimate of a quiet one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sahmr_ros.data.probes import person_roi_voxels  # noqa: E402
from sahmr_ros.networks.spvcnn import SPVCNN, SPVCNNConfig  # noqa: E402


def _ms(fn, repeats: int) -> tuple[float, float]:
    """(median, minimum) milliseconds of ``fn`` over ``repeats`` runs after 3 warm-ups."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def measure(preset: str, backend: str, threads: int, coords: torch.Tensor, repeats: int):
    """((median, min) forward ms, (median, min) forward + backward ms or None) of one preset and backend."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = SPVCNNConfig.small() if preset == "small" else SPVCNNConfig.official()
    net = SPVCNN(config, rounding="floor" if preset == "small" else "trunc", sparse_backend=backend)
    feats = torch.randn(len(coords), config.in_channels, generator=torch.Generator().manual_seed(1))

    def forward():
        with torch.no_grad():
            net.eval()(coords, feats, 1)

    def train_step():
        net.train()
        net.zero_grad(set_to_none=True)
        net(coords, feats, 1).square().mean().backward()

    fwd = _ms(forward, repeats)
    if backend == "spconv" and coords.device.type == "cpu":
        return fwd, None
    return fwd, _ms(train_step, max(3, repeats // 2))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["small", "official"], choices=["small", "official"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--backends", nargs="+", default=["torch", "spconv"], choices=["torch", "spconv"])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    coords = person_roi_voxels()
    print(f"{len(coords)} voxels, torch {torch.__version__}, {torch.get_num_threads()} threads available")
    print("| preset | threads | backend | forward ms, median (min) | forward + backward ms, median (min) |")
    print("|---|---|---|---|---|")
    fwd = {}
    for preset in args.presets:
        for threads in args.threads:
            for backend in args.backends:
                f, fb = measure(preset, backend, threads, coords, args.repeats)
                fwd[preset, threads, backend] = f
                fb_text = "n/a (no CPU backward)" if fb is None else f"{fb[0]:.1f} ({fb[1]:.1f})"
                print(f"| {preset} | {threads} | {backend} | {f[0]:.1f} ({f[1]:.1f}) | {fb_text} |", flush=True)
    if "torch" in args.backends and "spconv" in args.backends:
        for preset in args.presets:
            for threads in args.threads:
                t, s = fwd[preset, threads, "torch"], fwd[preset, threads, "spconv"]
                print(f"{preset}, {threads} thread(s): forward torch / spconv = {t[0] / s[0]:.2f} "
                      f"(medians), {t[1] / s[1]:.2f} (minima)")


if __name__ == "__main__":
    main()
