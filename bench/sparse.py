"""Milliseconds per SPVCNN forward (and forward + backward) on the torch and spconv sparse backends.

    python bench/sparse.py                          # small + official, 1 and 2 threads, fp32 and bf16
    python bench/sparse.py --presets small --threads 1 --backends torch --precisions fp32 bf16 --repeats 50

Input: the voxels of a region of interest around a person 3 m in front of the camera (a standing
body, the floor under it and a wall behind it, 5 cm voxels, camera frame, 1.25 m around the root),
35 random input channels; random weights. spconv's CPU backward does not run, so its forward +
backward column reads "n/a" on CPU. Each cell: median (minimum) of ``--repeats`` runs after 3
warm-ups; on a machine shared with other work the minimum is the better estimate of a quiet one.
``bf16``: the forward under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (the pipeline's ``precision:
bf16``; the torch backend's sparse convolutions then multiply bf16 operands and sum in float32); the
forward + backward column is always float32. The forward runs in eval mode without autograd, so the
torch backend takes its inference path (batch norms folded into the convolutions, see
``sahmr_ros.networks.sparse.fused_conv``); the forward + backward column runs the training path.
The torch backend's forward is split into map building (lookup grids, kernel maps, point <-> voxel
maps) and layers: the minimum of the same forward over a context whose maps are already built, and
the forward's minimum minus it (minima: the two are timed one after the other, and medians taken at
different moments of a shared machine's load do not subtract; alternating the two calls perturbs the
allocator and slows both).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sahmr_ros.data.probes import person_roi_voxels  # noqa: E402
from sahmr_ros.networks.sparse import SparseContext  # noqa: E402
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


def measure(preset: str, backend: str, threads: int, coords: torch.Tensor, repeats: int, precision: str = "fp32",
            train: bool = True):
    """((median, min) forward ms, (median, min) forward + backward ms or None, (maps, layers) ms or None).

    ``precision``: ``"fp32"``, or ``"bf16"`` for the forward under CPU bf16 autocast (the training step
    is float32 either way; timed only with ``train`` and fp32). The split (minima) is for the torch backend.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = SPVCNNConfig.small() if preset == "small" else SPVCNNConfig.official()
    net = SPVCNN(config, rounding="floor" if preset == "small" else "trunc", sparse_backend=backend)
    feats = torch.randn(len(coords), config.in_channels, generator=torch.Generator().manual_seed(1))

    def forward():
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            net.eval()(coords, feats, 1)

    def train_step():
        net.train()
        net.zero_grad(set_to_none=True)
        net(coords, feats, 1).square().mean().backward()

    ctx = SparseContext(coords, 1, rounding=net.rounding, backend=backend)
    points, batch = coords[:, 1:].float(), coords[:, 0].to(torch.int64)

    def layers():  # the inference forward over maps built by an earlier call
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            net.eval()._forward_fused(coords, feats, points, batch, ctx)

    fwd = _ms(forward, repeats)
    split = None
    if backend == "torch":
        lay = _ms(layers, repeats)[1]
        split = (fwd[1] - lay, lay)
    if not train or precision != "fp32" or (backend == "spconv" and coords.device.type == "cpu"):
        return fwd, None, split
    return fwd, _ms(train_step, max(3, repeats // 2)), split


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["small", "official"], choices=["small", "official"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--backends", nargs="+", default=["torch", "spconv"], choices=["torch", "spconv"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                    help="also time forward + backward (float32)")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    coords = person_roi_voxels()
    print(f"{len(coords)} voxels, torch {torch.__version__}, {torch.get_num_threads()} threads available")
    print("| preset | threads | backend | precision | forward ms, median (min) | maps + layers ms (min) |"
          " forward + backward ms, median (min) |")
    print("|---|---|---|---|---|---|---|")
    fwd = {}
    for preset in args.presets:
        for threads in args.threads:
            for backend in args.backends:
                for precision in args.precisions:
                    f, fb, split = measure(preset, backend, threads, coords, args.repeats, precision, args.train)
                    fwd[preset, threads, backend, precision] = f
                    if not args.train or precision != "fp32":
                        fb_text = "-"
                    else:
                        fb_text = "n/a (no CPU backward)" if fb is None else f"{fb[0]:.1f} ({fb[1]:.1f})"
                    split_text = "-" if split is None else f"{split[0]:.1f} + {split[1]:.1f}"
                    print(f"| {preset} | {threads} | {backend} | {precision} | {f[0]:.1f} ({f[1]:.1f}) | {split_text} "
                          f"| {fb_text} |", flush=True)
    for preset in args.presets:
        for threads in args.threads:
            for precision in args.precisions:
                if "torch" in args.backends and "spconv" in args.backends:
                    t, s = fwd[preset, threads, "torch", precision], fwd[preset, threads, "spconv", precision]
                    print(f"{preset}, {threads} thread(s), {precision}: forward torch / spconv = {t[0] / s[0]:.2f} "
                          f"(medians), {t[1] / s[1]:.2f} (minima)")
            if {"fp32", "bf16"} <= set(args.precisions):
                for backend in args.backends:
                    a, b = fwd[preset, threads, backend, "fp32"], fwd[preset, threads, backend, "bf16"]
                    print(f"{preset}, {threads} thread(s), {backend}: forward fp32 / bf16 = {a[0] / b[0]:.2f} "
                          f"(medians), {a[1] / b[1]:.2f} (minima)")


if __name__ == "__main__":
    main()
