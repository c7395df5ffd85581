"""Validation curves of ``sahmr train`` runs, and the budget a power-law fit says would reach a target.

Reads the ``{"kind": "val", ...}`` records of each run's ``metrics.jsonl``; runs that continue another
(``init`` from its checkpoint) are chained with ``RUN_DIR:OFFSET`` (the step the run started from), so the
x axis is the optimiser steps since the random initialisation. The fit is ``err = a * steps^-b`` by least
squares in log-log over the records at or after ``--fit-from``; the budget to reach ``--target`` follows
from it (steps, persons seen at ``--batch`` persons per step, and hours at ``--seconds-per-step``).

    python bench/val_curve.py /tmp/runs/rc=RCNet /tmp/s3/runs/rc2:1200="continued" --fit-runs 1 \\
        --metric root_error_mm --target 150 --batch 8 --seconds-per-step 1.2 -o docs/val_curve_root.png

Prints one line per record and the fit; writes the PNG (log-log axes, data and fitted line).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def read_validations(spec: str, metric: str) -> tuple[str, np.ndarray, np.ndarray]:
    """Return (label, steps since init, metric values) of one ``RUN_DIR[:OFFSET][=LABEL]``."""
    spec, _, label = spec.partition("=")
    path, _, offset = spec.partition(":")
    records = [json.loads(line) for line in (Path(path) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    val = [r for r in records if r.get("kind") == "val" and r.get(metric) is not None]
    if not val:
        raise SystemExit(f"val_curve: {path}/metrics.jsonl has no validation record with {metric!r}")
    steps = np.array([r["step"] for r in val], dtype=np.float64) + float(offset or 0)
    values = np.array([r[metric] for r in val], dtype=np.float64)
    return label or Path(path).name, steps, values


def power_law(steps: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Least-squares ``values = a * steps^-b`` in log-log; returns (a, b)."""
    slope, intercept = np.polyfit(np.log(steps), np.log(values), 1)
    return float(math.exp(intercept)), float(-slope)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="RUN_DIR[:OFFSET][=LABEL] (OFFSET: the step its init checkpoint had)")
    ap.add_argument("--fit-runs", type=int, default=None, help="fit only the first N runs (default: all)")
    ap.add_argument("--metric", default="root_error_mm")
    ap.add_argument("--target", type=float, default=150.0, help="value to reach (the metric's unit)")
    ap.add_argument("--fit-from", type=float, default=0.0, help="fit only records at or after this step")
    ap.add_argument("--batch", type=int, default=8, help="persons per optimiser step (for the budget)")
    ap.add_argument("--seconds-per-step", type=float, default=None, help="measured s/step (for the budget)")
    ap.add_argument("-o", "--out", default="val_curve.png")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    all_steps, all_values = [], []
    for i, spec in enumerate(args.runs):
        label, steps, values = read_validations(spec, args.metric)
        for s, v in zip(steps, values):
            print(f"{label} step {s:8.0f}  {args.metric} {v:9.1f}")
        ax.plot(steps, values, "o-", ms=3, label=label)
        if args.fit_runs is None or i < args.fit_runs:
            all_steps.append(steps)
            all_values.append(values)
    steps, values = np.concatenate(all_steps), np.concatenate(all_values)
    keep = steps >= args.fit_from
    if keep.sum() < 2:
        raise SystemExit("val_curve: fewer than 2 records to fit; lower --fit-from")
    a, b = power_law(steps[keep], values[keep])
    print(f"fit: {args.metric} = {a:.4g} * steps^-{b:.4f} over {int(keep.sum())} records "
          f"(steps {steps[keep].min():.0f}-{steps[keep].max():.0f})")
    grid = np.geomspace(steps[keep].min(), steps.max() * 8, 50)
    if b > 0:
        need = (a / args.target) ** (1.0 / b)
        budget = f"{need:.3g} steps = {need * args.batch:.3g} persons seen"
        if args.seconds_per_step:
            budget += f" = {need * args.seconds_per_step / 3600:.3g} h at {args.seconds_per_step} s/step"
        print(f"reaching {args.target:g}: {budget}")
        title = f"fit {a:.3g}·steps^-{b:.3f}; {args.target:g} at ~{need:.2g} steps"
    else:
        print(f"reaching {args.target:g}: not on this curve (it does not fall)")
        title = f"fit {a:.3g}·steps^-{b:.3f} (not falling)"
    ax.plot(grid, a * grid ** -b, "k--", lw=1, label="power-law fit")
    ax.axhline(args.target, color="tab:red", lw=1, ls=":", label=f"target {args.target:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("optimiser steps since random init")
    ax.set_ylabel(args.metric)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
