"""Write the model card of a weights file: sahmr_ros/weights/{small_synthetic.pt, small_synthetic.json, MODEL_CARD.md}.

    OMP_NUM_THREADS=1 python bench/model_card.py --weights models/progress/small_synthetic_progress.pt \\
        --train-info bench/train_info/small_synthetic_progress.json --work-dir /tmp/sahmr_card
    python bench/model_card.py --train-info sahmr_ros/weights/small_synthetic.json   # again, same weights

Steps: (1) read the weights (preset, parameters, storage, sha256; at most 40 MB) and the training
information (a JSON file: summary, limits, training recipe, targets; a previous card is accepted too),
completed and cross-checked with the checkpoint's own metadata (checkpoint step, batch, lr, precision,
validation metric per stage); (2) generate the held-out and the check splits with their ``sahmr synth``
commands into the work directory (a directory already there, or one given with ``--held-out-data`` /
``--check-data``, is reused after checking its manifest records the same generator arguments);
(3) evaluate the weights and the untrained default on the held-out split and the weights on the check split,
the latter at 1 and at ``--check-threads`` torch threads to measure how exactly it reproduces (CPU, fp32,
as ``sahmr eval --demo``); (4) write the checkpoint (copied unless it is already the output), the JSON
and MODEL_CARD.md (rendered from the JSON) into ``--out-dir``, and load them back as the pipeline does.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sahmr_ros  # noqa: E402
from sahmr_ros import weights as W  # noqa: E402
from sahmr_ros.checkpoint import load_checkpoint  # noqa: E402
from sahmr_ros.errors import SahmrError  # noqa: E402
from sahmr_ros.io import sha256_file  # noqa: E402
from sahmr_ros.evaluation.card import (  # noqa: E402
    CARD_METRICS,
    check_data_dir,
    compare_metrics,
    evaluate_embedded,
    metric_tolerance,
    render_model_card,
    synth_from_command,
)

HELD_OUT_COMMAND = "sahmr synth --out DIR --split test --scenes 8 --frames-per-scene 8 --seed 0"
CHECK_COMMAND = "sahmr synth --out DIR --split test --scenes 2 --frames-per-scene 4 --seed 0 --no-bags"
# Allowed difference of each check metric (evaluation/card.metric_tolerance): max(absolute for the unit,
# relative x value). CPU fp32 at 1 and 2 torch threads reproduces far closer (the card records by how much).
TOLERANCE = {"mm": 1.0, "m": 0.01, "share": 1e-3, "relative": 1e-3}
SHIPPED_EVAL = "sahmr eval --data DIR --demo -o OUT --device cpu"
UNTRAINED_EVAL = "sahmr eval --data DIR --demo --untrained -o OUT --device cpu"


def _log(step: str, text: str) -> None:
    print(f"[{step}] {text}", flush=True)


def _weights_info(path: Path) -> tuple[dict, dict]:
    """(card's ``weights`` section without ``path``, checkpoint metadata)."""
    size = path.stat().st_size
    if size > W.MAX_CHECKPOINT_BYTES:
        raise SahmrError(f"{path}: {size / 1e6:.1f} MB; the shipped weights must stay within "
                         f"{W.MAX_CHECKPOINT_BYTES / 1e6:.0f} MB (store them in fp16)")
    payload = load_checkpoint(path)
    state = payload["state_dict"]
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values() if v.is_floating_point()})
    storage = f"{'/'.join(dtypes)} storage" + (", upcast to float32 on load" if dtypes != ["float32"] else "")
    params = sum(v.numel() for k, v in state.items() if v.is_floating_point() and "running_" not in k)
    info = {"file": W.CHECKPOINT_FILENAME, "preset": payload["preset"], "bytes": size, "sha256": sha256_file(path),
            "storage": storage, "parameters": int(params), "tensors": len(state)}
    return info, payload.get("metadata", {})


def _merge_stage(stage: dict, metadata: dict) -> dict:
    """Complete a stage of the training info from the checkpoint's ``<stage>_meta``; refuse contradictions."""
    import yaml

    meta = metadata.get(f"{stage['stage']}_meta") or {}
    found = {"checkpoint_step": meta.get("step"), "batch_size": meta.get("batch_size"),
             "precision": meta.get("precision")}
    if meta.get("config_yaml"):
        found["lr"] = (yaml.safe_load(meta["config_yaml"]).get("optimizer") or {}).get("lr")
    out = dict(stage)
    for key, value in found.items():
        if value is None:
            continue
        if key in out and out[key] != value:
            raise SahmrError(f"training info, stage {stage['stage']}: {key} {out[key]!r}, the checkpoint's "
                             f"metadata says {value!r}")
        out[key] = value
    validation = {k[4:]: v for k, v in meta.items() if k.startswith("val_")}
    if validation:
        out["validation"] = {**validation, **out.get("validation", {})}
    return out


def _data(name: str, command: str, given: str | None, work: Path, workers: int) -> Path:
    if given:
        check_data_dir(given, command)
        _log(name, f"reusing {given} (its manifest records the same generator arguments)")
        return Path(given)
    out = work / name
    if (out / "manifest.json").is_file():
        check_data_dir(out, command)
        _log(name, f"reusing {out}")
        return out
    if out.exists():
        shutil.rmtree(out)  # an interrupted run
    _log(name, f"generating: {command.replace('DIR', str(out))}")
    stats = synth_from_command(command, out, workers=workers, progress=True)
    _log(name, f"{stats['samples']} images, {stats['persons']} persons in {stats['seconds']:.0f} s")
    return out


def _evaluate(step: str, data: Path, what: str, threads: int, **kw) -> dict:
    torch.set_num_threads(threads)
    _log(step, f"evaluating {what} on {data} ({threads} torch thread(s))")
    result = evaluate_embedded(data, progress=True, **kw)
    m = result["metrics"]
    _log(step, f"{result['weights']}: G-MPJPE {m['g_mpjpe_mm']:.1f} mm, root median {m['root_error_mm_median']:.0f} "
               f"mm, PA-MPJPE {m['pa_mpjpe_mm']:.1f} mm ({result['seconds']:.0f} s)")
    return result


def _targets(targets: list[dict], mine: dict, untrained: dict) -> list[dict]:
    out = []
    for t in targets:
        value, floor = mine.get(t["metric"]), untrained.get(t["metric"])
        if "max" in t:
            met = value is not None and value <= t["max"]
        elif "min" in t:
            met = value is not None and value >= t["min"]
        elif t.get("vs_untrained") in ("lower", "higher"):
            met = value is not None and floor is not None and (
                value < floor if t["vs_untrained"] == "lower" else value > floor)
        else:
            raise SahmrError(f"target {t}: needs max, min or vs_untrained: lower | higher")
        out.append({**t, "value": value, "untrained": floor, "met": bool(met)})
    return out


def _observations(mine: dict, untrained: dict) -> list[str]:
    units = {k: (label, u) for k, label, u in CARD_METRICS}
    moves = [f"{units[k][0]} {untrained[k]:.0f} -> {mine[k]:.0f} mm" for k in
             ("g_mpjpe_mm_median", "root_error_mm_median", "pa_mpjpe_mm")
             if mine.get(k) is not None and untrained.get(k) is not None]
    out = ["Against the untrained default: " + ", ".join(moves) + "."] if moves else []
    if mine.get("contact_precision") is None:
        out.append("Predicts no contact point on the held-out split (contact precision n/a, recall and F1 0).")
    return out


def _hardware() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cpus} CPU(s) visible, no GPU used"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(W.WEIGHTS_DIR / W.CHECKPOINT_FILENAME),
                        help="sahmr_ros checkpoint to describe (default: the shipped one)")
    parser.add_argument("--train-info", required=True,
                        help="JSON with summary, limits, training (date, hardware, wall_time, data, stages, notes) "
                             "and targets; a previous card works too")
    parser.add_argument("--work-dir", default="/tmp/sahmr_model_card", help="where the splits are generated")
    parser.add_argument("--held-out-data", default=None, help="reuse this held-out split (checked)")
    parser.add_argument("--check-data", default=None, help="reuse this check split (checked)")
    parser.add_argument("--held-out-command", default=HELD_OUT_COMMAND)
    parser.add_argument("--check-command", default=CHECK_COMMAND)
    parser.add_argument("--check-threads", type=int, default=2,
                        help="also evaluate the check split at this many torch threads (reproduction measure)")
    parser.add_argument("--workers", type=int, default=1, help="sahmr synth worker processes")
    parser.add_argument("--out-dir", default=str(W.WEIGHTS_DIR), help="default: the package's sahmr_ros/weights")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        card = _build(args, argv, started)
    except SahmrError as exc:
        print(f"model_card: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir}: {W.CHECKPOINT_FILENAME}, {W.CARD_FILENAME}, {W.MODEL_CARD_FILENAME} "
          f"in {card['generated']['seconds']:.0f} s")
    return 0


def _build(args, argv, started) -> dict:
    weights_path, out_dir, work = Path(args.weights).resolve(), Path(args.out_dir).resolve(), Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    info = json.loads(Path(args.train_info).read_text(encoding="utf-8"))
    weights_info, metadata = _weights_info(weights_path)
    _log("weights", f"{weights_path}: {weights_info['preset']} preset, {weights_info['bytes'] / 1e6:.1f} MB, "
                    f"{weights_info['storage']}, sha256 {weights_info['sha256'][:16]}...")
    training = dict(info["training"])
    training["stages"] = [_merge_stage(s, metadata) for s in training["stages"]]
    targets = [{k: v for k, v in t.items() if k not in ("value", "untrained", "met")}
               for t in (info.get("targets") or info.get("held_out", {}).get("targets") or [])]

    held_dir = _data("held_out", args.held_out_command, args.held_out_data, work, args.workers)
    check_dir = _data("check", args.check_command, args.check_data, work, args.workers)

    mine = _evaluate("held_out", held_dir, "the weights", 1, checkpoint=weights_path)
    floor = _evaluate("held_out", held_dir, "the untrained default", 1, weights="untrained")
    check = _evaluate("check", check_dir, "the weights", 1, checkpoint=weights_path)
    again = _evaluate("check", check_dir, "the weights again", args.check_threads, checkpoint=weights_path)
    torch.set_num_threads(1)
    worst = max(((abs(again["metrics"][k] - check["metrics"][k]) / metric_tolerance(k, check["metrics"][k], TOLERANCE),
                  k) for k, _, _ in CARD_METRICS
                 if check["metrics"][k] is not None and again["metrics"][k] is not None), default=(0.0, ""))
    bad = compare_metrics(again["metrics"], check["metrics"], TOLERANCE)
    if bad:
        raise SahmrError("the check split does not reproduce at 1 and "
                         f"{args.check_threads} threads within the tolerance: " + "; ".join(bad))
    ratio, key = worst
    measured = (f"the largest difference between 1 and {args.check_threads} torch threads when this card was "
                f"generated: {ratio:.1e} of its tolerance" + (
                    f" ({key}: {abs(again['metrics'][key] - check['metrics'][key]):.1e} "
                    f"{dict((k, u) for k, _, u in CARD_METRICS)[key]})" if key else ""))
    _log("check", measured)

    card = {
        "format": W.CARD_FORMAT, "format_version": W.CARD_FORMAT_VERSION, "name": W.NAME,
        "summary": info["summary"],
        "weights": {**weights_info, "path": W.display_path(W.CHECKPOINT_FILENAME)},
        "limits": info["limits"],
        "training": training,
        "held_out": {"data_command": args.held_out_command, "eval_command": SHIPPED_EVAL,
                     "untrained_eval_command": UNTRAINED_EVAL, "device": "cpu", "precision": "fp32",
                     "metrics": mine["metrics"], "untrained_metrics": floor["metrics"],
                     "targets": _targets(targets, mine["metrics"], floor["metrics"]),
                     "observations": _observations(mine["metrics"], floor["metrics"])},
        "check": {"data_command": args.check_command, "eval_command": SHIPPED_EVAL, "device": "cpu",
                  "precision": "fp32", "metrics": check["metrics"], "tolerance": {**TOLERANCE, "measured": measured}},
        "generated": {"by": "bench/model_card.py", "command": shlex.join(["python", "bench/model_card.py", *argv]),
                      "date": datetime.date.today().isoformat(), "hardware": _hardware(),
                      "sahmr_ros_version": sahmr_ros.__version__, "torch_version": torch.__version__,
                      "torch_threads": 1, "seconds": time.perf_counter() - started},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / W.CHECKPOINT_FILENAME
    if target.resolve() != weights_path:
        shutil.copyfile(weights_path, target)
    (out_dir / W.CARD_FILENAME).write_text(json.dumps(card, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    (out_dir / W.MODEL_CARD_FILENAME).write_text(render_model_card(card), encoding="utf-8")
    shipped = W.shipped_weights(out_dir)  # what Pipeline.embedded_default will check
    _log("done", shipped.description)
    return card


if __name__ == "__main__":
    sys.exit(main())
