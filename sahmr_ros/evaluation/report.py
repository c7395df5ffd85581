"""The report of ``sahmr eval``: per-person rows, summary (JSON + markdown) and plots.

Files written into the report directory (:func:`write_report`)::

    per_sample.csv           one row per ground-truth person (evaluate.ROW_COLUMNS); also
                             per_sample.parquet when pyarrow is installed
    summary.json             every metric overall, per pose category and per distance band (:func:`summarize`)
    summary.md               the same as markdown tables, with the plots linked
    plots/cdf_pose.png       CDFs of G-MPJPE, G-MPVE, MPJPE, MPVE, PA-MPJPE (mm)
    plots/cdf_root.png       CDFs of the refined and coarse root errors (mm)
    plots/cdf_scene.png      CDFs of PenE and ConFE (m, sums over the vertices)
    plots/contact_parts.png  contact precision and recall per body part, and overall
    plots/samples.png        the worst and the median samples (by mean G-MPVE): image overlay and top view

Means are over the persons evaluated (status ``ok``), as the official evaluation averages over frames;
persons skipped, missing or with a non-finite estimate are counted in the outcome shares instead.
Contact precision / recall / F1 of a group come from the counts summed over its persons (not a mean
of per-person ratios), as the official ``VoxSeg_metric`` sums over frames.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sahmr_ros.evaluation.evaluate import (
    COUNT_COLUMNS,
    METRIC_COLUMNS,
    PART_NAMES,
    ROW_COLUMNS,
    EvalResult,
    distance_bands,
)
from sahmr_ros.evaluation.metrics import ContactCounts, outcome_shares

__all__ = [
    "REPORT_FORMAT",
    "group_metrics",
    "markdown_report",
    "read_rows",
    "select_samples",
    "summarize",
    "write_csv",
    "write_plots",
    "write_report",
]

REPORT_FORMAT = "sahmr_ros.eval"
REPORT_VERSION = 1
CSV_NAME, PARQUET_NAME, JSON_NAME, MARKDOWN_NAME, PLOTS_DIR = (
    "per_sample.csv", "per_sample.parquet", "summary.json", "summary.md", "plots")
_INT_COLUMNS = {"person", "num_contact_points", "num_roi_voxels", *COUNT_COLUMNS}
_STR_COLUMNS = {"sample", "scene", "category", "distance_band", "gt_flags", "status", "flags", "skip_reason"}
UNITS = {"g_mpjpe_mm": "mm", "g_mpve_mm": "mm", "mpjpe_mm": "mm", "mpve_mm": "mm", "pa_mpjpe_mm": "mm",
         "pene_m": "m (sum over the 6890 vertices)", "confe_m": "m (sum over the 6890 vertices)",
         "root_error_mm": "mm", "coarse_root_error_mm": "mm", "contact_precision": "share",
         "contact_recall": "share", "contact_f1": "share", "flagged": "share of persons",
         "skipped": "share of persons", "flagged_or_skipped": "share of persons"}
_TABLE = (("G-MPJPE", "g_mpjpe_mm", "{:.1f}"), ("G-MPVE", "g_mpve_mm", "{:.1f}"), ("MPJPE", "mpjpe_mm", "{:.1f}"),
          ("MPVE", "mpve_mm", "{:.1f}"), ("PA-MPJPE", "pa_mpjpe_mm", "{:.1f}"), ("PenE", "pene_m", "{:.3f}"),
          ("ConFE", "confe_m", "{:.3f}"), ("root", "root_error_mm", "{:.0f}"),
          ("coarse root", "coarse_root_error_mm", "{:.0f}"), ("contact P", "contact_precision", "{:.3f}"),
          ("contact R", "contact_recall", "{:.3f}"), ("contact F1", "contact_f1", "{:.3f}"),
          ("flagged", "flagged", "{:.1%}"), ("skipped", "skipped", "{:.1%}"))


# --- rows ----------------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Write the rows as CSV (header :data:`ROW_COLUMNS`; empty cell = not computed)."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(ROW_COLUMNS)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in ROW_COLUMNS])
    return path


def read_rows(path: str | Path) -> list[dict]:
    """Read ``per_sample.csv`` back into typed rows (numbers as float / int, empty cells as NaN)."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if k in _STR_COLUMNS:
                    row[k] = v
                elif k in _INT_COLUMNS:
                    row[k] = int(v)
                else:
                    row[k] = float(v) if v != "" else math.nan
            out.append(row)
    return out


def _write_parquet(rows: Sequence[dict], path: Path) -> Path | None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    pq.write_table(pa.table({c: [r[c] for r in rows] for c in ROW_COLUMNS}), path)
    return path


# --- summary -------------------------------------------------------------------------------------------
def _mean(values) -> float:
    v = np.asarray([x for x in values if not math.isnan(x)], np.float64)
    return float(v.mean()) if len(v) else math.nan


def group_metrics(rows: Sequence[dict]) -> dict[str, float]:
    """Every metric of a group of persons.

    Returns:
        ``persons`` (all ground-truth persons), ``evaluated`` (status ok), the means of
        :data:`~sahmr_ros.evaluation.evaluate.METRIC_COLUMNS` over the evaluated persons (NaN where none
        has a value), contact ``contact_precision`` / ``_recall`` / ``_f1`` overall and ``.../<part>``
        from the summed counts, and :func:`~sahmr_ros.evaluation.metrics.outcome_shares`
        (``flagged``, ``skipped``, ``flagged_or_skipped``, ``flag/<name>``; missing persons count as
        skipped).
    """
    ok = [r for r in rows if r["status"] == "ok"]
    out: dict[str, float] = {"persons": float(len(rows)), "evaluated": float(len(ok))}
    for c in METRIC_COLUMNS:
        out[c] = _mean(r[c] for r in ok)
    counts = ContactCounts.zeros()
    for r in ok:
        counts = counts + ContactCounts(*(np.array([r[f"contact_{kind}_{p}"] for p in PART_NAMES], np.int64)
                                          for kind in ("tp", "pred", "gt")))
    out.update(counts.scores())
    processed = [r for r in rows if r["status"] in ("ok", "non_finite")]
    shares = outcome_shares([tuple(f for f in r["flags"].split("|") if f) for r in processed],
                            len(rows) - len(processed))
    shares.pop("num_persons")
    out.update(shares)
    return out


def summarize(rows: Sequence[dict]) -> dict[str, dict]:
    """Metrics (:func:`group_metrics`) ``overall``, ``per_category`` and ``per_distance_band``.

    Categories are sorted by name; distance bands in order (only those with persons).
    """
    categories = sorted({r["category"] for r in rows})
    bands = [b for b in distance_bands() if any(r["distance_band"] == b for r in rows)]
    return {
        "overall": group_metrics(rows),
        "per_category": {c: group_metrics([r for r in rows if r["category"] == c]) for c in categories},
        "per_distance_band": {b: group_metrics([r for r in rows if r["distance_band"] == b]) for b in bands},
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _fmt(value: float, fmt: str) -> str:
    return "n/a" if value is None or math.isnan(value) else fmt.format(value)


def markdown_report(summary: dict, run: dict, plots: dict[str, str]) -> str:
    """Return the markdown summary: run description, the metrics table, per-part contacts, the plots."""
    lines = [f"# sahmr eval: {run.get('data', '')} ({run.get('split', '')} split)", ""]
    lines += [f"- weights: {run.get('weights', '')}", f"- evaluated path: {run.get('path_description', '')}",
              f"- data: {run.get('data_kind', '')}, body model {run.get('body_model', '')}; "
              f"{run.get('samples', 0)} images, {run.get('persons', 0)} persons",
              f"- device {run.get('device', '')}, precision {run.get('precision', '')}; "
              f"{run.get('wall_s', 0.0):.1f} s"]
    if run.get("untrained"):
        lines += ["", "**UNTRAINED weights (the embedded default's random initialisation, --untrained): these "
                      "numbers are a floor to beat, not an estimate of the method.**"]
    lines += ["", "Pose errors in mm, world (map) frame; MPJPE / MPVE after pelvis alignment; PenE / ConFE in "
                  "metres summed over the 6890 vertices (official units); root errors in mm; contact precision / "
                  "recall / F1 over scene points (7 cm ground truth); means over the persons evaluated.", ""]
    header = ["group", "persons"] + [name for name, _, _ in _TABLE]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def table_row(name: str, m: dict) -> str:
        cells = [name, f"{int(m['persons'])}"] + [_fmt(m.get(key, math.nan), fmt) for _, key, fmt in _TABLE]
        return "| " + " | ".join(cells) + " |"

    lines.append(table_row("**overall**", summary["overall"]))
    for name, m in summary["per_category"].items():
        lines.append(table_row(f"category: {name}", m))
    for name, m in summary["per_distance_band"].items():
        lines.append(table_row(f"distance {name}", m))
    overall = summary["overall"]
    lines += ["", "Contacts per body part (overall):", "", "| part | precision | recall | F1 |", "|---|---|---|---|"]
    for part in PART_NAMES:
        cells = [_fmt(overall[f"contact_{k}/{part}"], "{:.3f}") for k in ("precision", "recall", "f1")]
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    flags = [k for k in overall if k.startswith("flag/")]
    if flags:
        lines += ["", "Flags: " + ", ".join(f"{k[5:]} {overall[k]:.1%}" for k in flags)]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({path})" for name, path in plots.items()]
    return "\n".join(lines) + "\n"


# --- plots ---------------------------------------------------------------------------------------------
def select_samples(rows: Sequence[dict], count: int = 4) -> tuple[list[str], list[str]]:
    """Pick the ``count`` worst and ``count`` median samples by their mean G-MPVE over evaluated persons.

    Returns:
        (worst keys, worst first; median keys, nearest the median first), disjoint.
    """
    per: dict[str, list[float]] = {}
    for r in rows:
        if r["status"] == "ok" and not math.isnan(r["g_mpve_mm"]):
            per.setdefault(r["sample"], []).append(r["g_mpve_mm"])
    ranked = sorted(per, key=lambda k: (-float(np.mean(per[k])), k))
    worst = ranked[:count]
    rest = [k for k in ranked if k not in worst]
    middle = (len(ranked) - 1) / 2
    median = sorted(rest, key=lambda k: (abs(ranked.index(k) - middle), k))[:count]
    return worst, median


def _panel(view, faces, title: str):
    from sahmr_ros.geometry import invert_transform, transform_points
    from sahmr_ros.visualization.figures import ImageOverlay, SamplePanel, TopView

    sample, T = view.sample, view.sample.T_map_camera
    T_camera_map = invert_transform(T)
    meshes: list = [None] * len(sample.persons)
    est_roots = np.full((len(sample.persons), 3), np.nan)
    contacts, labels = [], []
    for p in view.persons:
        meshes[p.box_index] = transform_points(T_camera_map, np.asarray(p.vertices_map, np.float64))
        est_roots[p.box_index] = np.asarray(p.root_map, np.float64)
        contacts.append(np.asarray(p.contact_points_map, np.float64).reshape(-1, 3))
        labels.append(np.asarray(p.contact_labels, np.int64).reshape(-1))
    cloud = np.asarray(view.scene.cloud, np.float64)
    if len(cloud) > 200_000:  # the top view rasterises at 4 cm: a subset draws the same picture
        cloud = cloud[:: len(cloud) // 200_000 + 1]
    overlay = ImageOverlay(view.image, view.K, meshes, faces if view.persons else None,
                           np.array([p.box_xyxy for p in sample.persons]).reshape(-1, 4))
    top = TopView(cloud, T[:3, 3], T[:3, 2], np.array([p.root_map for p in sample.persons]).reshape(-1, 3),
                  est_roots, contacts, labels)  # NaN rows (no estimate) keep the colours by person
    return SamplePanel(overlay, top, title)


def write_plots(result: EvalResult, rows: Sequence[dict], summary: dict, plots_dir: str | Path,
                faces=None, grid_count: int = 4) -> dict[str, Path]:
    """Write the PNG plots (module docstring); returns {name: path}. The sample grid needs ``faces``."""
    from sahmr_ros.visualization.figures import plot_contact_parts, plot_error_cdfs, plot_sample_grid

    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    ok = [r for r in rows if r["status"] == "ok"]
    where = "node code path" if result.path == "node" else "pipeline"
    out: dict[str, Path] = {}
    if not ok:
        return out

    def column(c):
        return np.array([r[c] for r in ok], np.float64)

    out["error CDFs: pose"] = plot_error_cdfs(
        {"G-MPJPE": column("g_mpjpe_mm"), "G-MPVE": column("g_mpve_mm"), "MPJPE": column("mpjpe_mm"),
         "MPVE": column("mpve_mm"), "PA-MPJPE": column("pa_mpjpe_mm")}, "mm", plots_dir / "cdf_pose.png",
        title=f"pose errors per person ({where}, {len(ok)} persons)")
    out["error CDFs: root"] = plot_error_cdfs(
        {"root (refined)": column("root_error_mm"), "root (coarse, RCNet)": column("coarse_root_error_mm")}, "mm",
        plots_dir / "cdf_root.png", title=f"root errors per person ({where})")
    out["error CDFs: scene"] = plot_error_cdfs(
        {"PenE": column("pene_m"), "ConFE": column("confe_m")}, "m", plots_dir / "cdf_scene.png",
        title="penetration and contact-fit errors per person (sums over the vertices)")
    overall = summary["overall"]
    precision = {p: overall[f"contact_precision/{p}"] for p in PART_NAMES}
    recall = {p: overall[f"contact_recall/{p}"] for p in PART_NAMES}
    precision["overall"], recall["overall"] = overall["contact_precision"], overall["contact_recall"]
    out["contact precision / recall per part"] = plot_contact_parts(
        precision, recall, plots_dir / "contact_parts.png", title=f"contacts over scene points ({where})")
    worst, median = select_samples(rows, grid_count)
    if faces is not None and worst:
        views = result.views(worst + median)
        mean = {k: float(np.mean([r["g_mpve_mm"] for r in ok if r["sample"] == k])) for k in worst + median}
        panels = [_panel(views[k], faces, f"worst {i + 1}: {k}, G-MPVE {mean[k]:.0f} mm")
                  for i, k in enumerate(worst)]
        panels += [_panel(views[k], faces, f"median: {k}, G-MPVE {mean[k]:.0f} mm") for k in median]
        out["worst and median samples"] = plot_sample_grid(
            panels, plots_dir / "samples.png", columns=2,
            title=f"worst {len(worst)} and median {len(median)} samples by mean G-MPVE ({where})")
    return out


# --- everything ----------------------------------------------------------------------------------------
def write_report(result: EvalResult, out_dir: str | Path, run: dict, faces=None, plots: bool = True) -> dict:
    """Write the per-person CSV (and Parquet), summary.json, summary.md and the plots into ``out_dir``.

    Args:
        result: from :func:`~sahmr_ros.evaluation.evaluate.evaluate` or ``evaluate_bags``.
        out_dir: the report directory (created).
        run: what was evaluated (data, split, weights, device, ...), copied into the JSON's ``run``.
        faces: (F, 3) mesh faces for the sample grid (``Pipeline.faces``); None: no grid.
        plots: write the PNG plots.

    Returns:
        The summary dict written as JSON (``files`` lists what was written, relative to ``out_dir``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = result.rows
    summary = summarize(rows)
    files = {"per_sample_csv": write_csv(rows, out_dir / CSV_NAME)}
    parquet = _write_parquet(rows, out_dir / PARQUET_NAME)
    if parquet is not None:
        files["per_sample_parquet"] = parquet
    written = write_plots(result, rows, summary, out_dir / PLOTS_DIR, faces) if plots else {}
    relative = {name: str(p.relative_to(out_dir)) for name, p in written.items()}
    run = dict(run, path=result.path, samples=result.num_samples, persons=len(rows), wall_s=result.wall_s,
               images_per_s=result.num_samples / result.wall_s if result.wall_s > 0 else math.nan)
    files["summary_markdown"] = out_dir / MARKDOWN_NAME
    files["summary_json"] = out_dir / JSON_NAME
    payload = {
        "format": REPORT_FORMAT, "format_version": REPORT_VERSION, "run": run, "units": UNITS,
        "metrics": summary, "plots": relative,
        "files": {k: str(Path(v).relative_to(out_dir)) for k, v in files.items()} | {
            "bag_outputs": [str(p) for p in result.outputs]},
        "notes": result.notes,
    }
    payload = _json_safe(payload)
    (out_dir / MARKDOWN_NAME).write_text(markdown_report(summary, run, relative), encoding="utf-8")
    (out_dir / JSON_NAME).write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return payload
