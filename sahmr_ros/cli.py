"""The ``sahmr`` command: demo, infer, bag, eval, synth, train, scene prepare, import-checkpoint, info.

Every error the tools raise on purpose (bad input, missing model files, bad checkpoints) is printed
as one clear message and exit status 2; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata
from pathlib import Path

from sahmr_ros import constants as C
from sahmr_ros.errors import SahmrError

__all__ = ["main", "build_parser", "synth_config_from_args"]


def _add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--precision`` (the pipeline's :class:`~sahmr_ros.pipeline.PipelineConfig` precision)."""
    parser.add_argument("--precision", default="fp32", choices=C.PRECISIONS,
                        help="fp16/bf16: networks in half precision (on CPU their weights stored so), geometry in "
                             "float32; auto: bf16 on CPUs with AVX512-BF16 / AMX, else fp32 (default fp32; README "
                             "Benchmarks: bf16 pays for the official preset on CPU)")


def _cmd_demo(args: argparse.Namespace) -> int:
    from sahmr_ros.demo.run import run_demo

    run_demo(Path(args.out), checkpoint=args.checkpoint, device=args.device, seed=args.seed,
             weights="untrained" if args.untrained else "shipped", precision=args.precision)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from sahmr_ros.checkpoint import load_checkpoint
    from sahmr_ros.importer import import_checkpoint

    out = import_checkpoint(args.source, args.output)
    meta = load_checkpoint(out)["metadata"]
    print(f"wrote {out} (official preset; source {meta['source_file']} sha256 {meta['source_sha256'][:16]}..., "
          f"{meta['dropped_unused_keys']} unused official keys dropped)")
    return 0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    spconv_dists = [d for d in ("spconv", "spconv-cu118", "spconv-cu120", "spconv-cu121", "spconv-cu124",
                                "spconv-cu126") if _version(d) != "not installed"]
    import sahmr_ros

    print(f"sahmr_ros  {sahmr_ros.__version__}")
    print(f"python     {platform.python_version()} ({sys.executable})")
    print(f"torch      {torch.__version__}")
    print(f"spconv     {', '.join(f'{d} {_version(d)}' for d in spconv_dists) or 'not installed'}")
    print(f"smplx      {_version('smplx')}")
    print(f"numpy      {_version('numpy')}")
    cuda = torch.cuda.is_available()
    dev = f"cuda ({torch.cuda.get_device_name(0)})" if cuda else "cpu (CUDA not available)"
    print(f"device     {dev}")
    model_dir = Path(args.model_dir)
    print(f"model dir  {model_dir.resolve()}")
    from sahmr_ros.body import validate_model_dir

    checks = validate_model_dir(model_dir)
    for check in checks:
        status = check.status
        mark = "ok     " if check.ok else ("MISSING" if not status.found else "INVALID")
        print(f"  [{mark}] {status.path.relative_to(model_dir)!s:<32} {status.description}")
        if check.ok:
            print(f"            {check.detail}")
        elif not status.found:
            print(f"            get it from: {status.source}")
        else:
            print(f"            problem: {check.problem}")
            print(f"            get a good copy from: {status.source}")
    if (model_dir / C.SYNTHETIC_MARKER_FILENAME).is_file():
        print("  note: this directory holds the SYNTHETIC body (sahmr demo), not SMPL")
    checkpoints = sorted(model_dir.glob("*.pt")) + sorted(model_dir.glob("checkpoints/*.pt"))
    print(f"  checkpoints: {', '.join(p.name for p in checkpoints) if checkpoints else 'none (*.pt)'}")
    bad = [c for c in checks if not c.ok]
    if bad:
        print(f"{len(bad)} of {len(checks)} model files missing or invalid: see models/README.md; "
              "`sahmr demo` needs none of them")
        return 1
    print("model directory OK")
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from sahmr_ros.infer import load_inputs, run_infer
    from sahmr_ros.pipeline import Pipeline, PipelineConfig

    inputs = load_inputs(args.image, args.camera, args.pose, args.scene, args.box, distortion=args.distortion)
    print(f"[1/3] inputs: {inputs.image.shape[1]}x{inputs.image.shape[0]} image"
          f"{' (undistorted)' if inputs.undistorted else ''}, {len(inputs.scene_points_map)} scene points, "
          f"{len(inputs.boxes)} boxes")
    config = PipelineConfig(device=args.device, precision=args.precision)
    pipe = Pipeline.from_model_dir(args.model_dir, checkpoint=args.checkpoint, config=config)
    print(f"[2/3] weights: {pipe.weights_description}; device {pipe.device}, precision {pipe.precision}")
    summary = run_infer(inputs, pipe, args.output, mesh_format=args.mesh_format)
    for p in summary["persons"]:
        x, y, z = p["root_map"]
        parts = ", ".join(f"{k} {n}" for k, n in p["contact_points_by_part"].items()) or "none"
        flags = f" [{', '.join(p['flags'])}]" if p["flags"] else ""
        print(f"  person {p['box_index']}: root (map) {x:.3f} {y:.3f} {z:.3f} m; contacts: {parts}{flags}")
    for s in summary["skipped"]:
        print(f"  skipped box {s['box_index']}: {s['reason']}")
    print(f"  total {summary['timings_ms']['total']:.0f} ms")
    print(f"[3/3] wrote {args.output}/: summary.json, overlay.png and "
          f"{len(summary['persons'])} x (mesh .{args.mesh_format}, contacts .ply)")
    return 0


_BAG_SKIPS = ("image_qos", "diagnostics_period_s", "meshes_topic", "contacts_topic", "humans_topic",
              "diagnostics_topic")  # node-only settings; output topics keep the node's names


def _add_node_param_options(parser: argparse.ArgumentParser) -> None:
    """One option per node parameter (``--image-topic``...), defaults and help from the node's table."""
    from dataclasses import fields

    from sahmr_ros.ros.core import PARAMETERS, NodeParams

    for f in fields(NodeParams):
        if f.name in _BAG_SKIPS:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = f"{PARAMETERS[f.name]} (default: {default!r})"
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif isinstance(default, tuple):
            parser.add_argument(flag, default=",".join(default), metavar="A,B", help=help_text + "; comma-separated")
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_text)


def _add_tracking_options(parser: argparse.ArgumentParser) -> None:
    """One option per ``tracking.*`` node parameter (``--tracking-beta``...), defaults and help from its table."""
    from dataclasses import fields

    from sahmr_ros.tracking import TRACKING_PARAMETERS, TrackingParams

    group = parser.add_argument_group("tracking and smoothing (the node's tracking.* parameters)")
    for f in fields(TrackingParams):
        flag = "--tracking-" + f.name.replace("_", "-")
        help_text = f"{TRACKING_PARAMETERS[f.name]} (default: {f.default!r})"
        if isinstance(f.default, bool):
            group.add_argument(flag, dest=f"tracking_{f.name}", action=argparse.BooleanOptionalAction,
                               default=f.default, help=help_text)
        else:
            group.add_argument(flag, dest=f"tracking_{f.name}", type=type(f.default), default=f.default,
                               help=help_text)


def _tracking_params_from_args(args: argparse.Namespace):
    from dataclasses import fields

    from sahmr_ros.tracking import TrackingParams

    return TrackingParams(**{f.name: getattr(args, f"tracking_{f.name}") for f in fields(TrackingParams)})


def _node_params_from_args(args: argparse.Namespace):
    from dataclasses import fields

    from sahmr_ros.ros.core import NodeParams

    values = {}
    for f in fields(NodeParams):
        if f.name in _BAG_SKIPS:
            continue
        value = getattr(args, f.name)
        if isinstance(f.default, tuple):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        values[f.name] = value
    return NodeParams(**values)


def _cmd_bag(args: argparse.Namespace) -> int:
    from sahmr_ros.errors import InputError
    from sahmr_ros.io import read_point_cloud
    from sahmr_ros.ros.bag import check_bag_paths, run_bag
    from sahmr_ros.ros.core import build_pipeline

    params = _node_params_from_args(args)
    tracking = _tracking_params_from_args(args)
    check_bag_paths(args.input, args.output)  # before the minutes a model may take to load
    pipe = build_pipeline(params)
    print(f"weights: {pipe.weights_description}; device {pipe.device}")
    if args.scene:
        scene = pipe.set_scene(read_point_cloud(args.scene, sample_mesh_surface=True))
        print(f"scene from {args.scene}: {len(scene)} voxels (a scene topic in the bag replaces it)")
    summary = run_bag(args.input, args.output, params, pipe, copy_inputs=args.copy_inputs, distro=args.distro,
                      progress=not args.no_progress, tracking=tracking)
    print("\n".join(summary.lines()))
    failure = summary.no_frame_line()
    if failure:
        raise InputError(failure)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import tempfile

    from sahmr_ros import __version__
    from sahmr_ros.body.assets import load_h36m_regressor
    from sahmr_ros.errors import InputError
    from sahmr_ros.evaluation.evaluate import evaluate, evaluate_bags, open_data, pipeline_body_model
    from sahmr_ros.evaluation.report import write_report
    from sahmr_ros.pipeline import Pipeline, PipelineConfig

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit: expected a number of samples >= 1, got {args.limit}")
    if args.untrained and not args.demo:
        raise InputError("--untrained: only with --demo (the embedded default's random initialisation)")
    # refusals first (no data, empty split, body model mismatch, no bags), before any weights load
    body = "synthetic" if args.demo else pipeline_body_model(args.model_dir)
    data = open_data(args.data, args.split, model_dir=args.model_dir, smplx_to_smpl=args.smplx_to_smpl,
                     expect_body=body)
    if args.bag:
        from sahmr_ros.evaluation.bags import bag_split_dir

        bags = bag_split_dir(data.root, data.split)
        if not bags.is_dir() or not any(bags.iterdir()):
            raise InputError(f"{bags}: no rosbag2 files for split {data.split!r}; --bag needs the split's bags "
                             "(sahmr synth writes them to DIR/bags/<split>/); run without --bag to evaluate the "
                             "pipeline directly")
    print(f"data: {data.root} ({data.kind}, split {data.split!r}, {len(data)} images, {data.body_model} body)")
    # scene_pitch=None: the pipeline sees the data's cloud as stored (official protocol; contacts counted on it)
    config = PipelineConfig(device=args.device, precision=args.precision, scene_pitch=None)
    with tempfile.TemporaryDirectory(prefix="sahmr_eval_body_") as tmp:
        if args.demo:
            from sahmr_ros.body.synthetic import write_synthetic_model_dir

            model_dir = write_synthetic_model_dir(tmp)
            pipe = Pipeline.embedded_default(model_dir, config, weights="untrained" if args.untrained else "shipped")
        else:
            model_dir = Path(args.model_dir)
            pipe = Pipeline.from_model_dir(model_dir, checkpoint=args.checkpoint, config=config)
        j_regressor = load_h36m_regressor(Path(model_dir) / C.H36M_REGRESSOR_FILENAME)
    print(f"weights: {pipe.weights_description}; device {pipe.device}, precision {pipe.precision}")
    if args.untrained:
        print("!! demo --untrained: the weights are UNTRAINED (random); the metrics are a floor, not the method's")
    out = Path(args.output)
    if args.bag:
        result = evaluate_bags(data, pipe, j_regressor, out, limit=args.limit, progress=not args.no_progress)
        print("\n".join(result.notes))
        described = "the node's code path (sahmr bag) on the split's rosbag2 files"
    else:
        result = evaluate(data, pipe, j_regressor, limit=args.limit, progress=not args.no_progress)
        described = "the pipeline, ground-truth boxes batched per image"
    run = {"command": "sahmr eval", "sahmr_ros_version": __version__, "data": str(data.root),
           "data_kind": data.kind, "split": data.split, "body_model": data.body_model,
           "weights": pipe.weights_description, "checkpoint": str(args.checkpoint) if args.checkpoint else None,
           "untrained": bool(args.untrained), "device": str(pipe.device), "precision": pipe.precision,
           "limit": args.limit, "path_description": described}
    report = write_report(result, out, run, faces=pipe.faces, plots=not args.no_plots)
    m = report["metrics"]["overall"]

    def num(key, scale=1.0, fmt="{:.1f}"):
        return "n/a" if m.get(key) is None else fmt.format(m[key] * scale)

    print(f"{int(m['evaluated'])} of {int(m['persons'])} persons evaluated in {result.num_samples} images "
          f"({result.wall_s:.1f} s): G-MPJPE {num('g_mpjpe_mm')} mm, G-MPVE {num('g_mpve_mm')} mm, "
          f"PA-MPJPE {num('pa_mpjpe_mm')} mm, root {num('root_error_mm', fmt='{:.0f}')} mm, "
          f"contact F1 {num('contact_f1', fmt='{:.3f}')}, skipped {num('skipped', 100)} %")
    print(f"report: {out / 'summary.md'} (table), {out / 'summary.json'}, {out / 'per_sample.csv'}, "
          f"plots in {out / 'plots'}")
    return 0


def synth_config_from_args(args: argparse.Namespace):
    """Return the :class:`~sahmr_ros.data.synth.SynthConfig` of parsed ``sahmr synth`` arguments.

    Also replays recorded commands (model cards, :mod:`sahmr_ros.evaluation.card`), so every generator
    option belongs here.
    """
    from sahmr_ros.data.synth import SynthConfig

    return SynthConfig(split=args.split, scenes=args.scenes, frames_per_scene=args.frames_per_scene,
                       seed=args.seed, people=(args.min_people, args.max_people), model_dir=args.model_dir,
                       sequence=args.sequence, fps=args.fps)


def _cmd_scene_prepare(args: argparse.Namespace) -> int:
    from sahmr_ros.io import read_pose
    from sahmr_ros.maps.prepare import (PrepareOptions, check_output_path, parse_crop, prepare_scene,
                                        write_prepared_scene)

    check_output_path(args.output)
    options = PrepareOptions(
        transform=None if args.transform is None else read_pose(args.transform, "T_map_input", "--transform"),
        crop=None if args.crop is None else parse_crop(args.crop), remove_outliers=not args.keep_outliers,
        sdf=args.sdf, sdf_spacing=args.sdf_spacing)
    prepared = prepare_scene(args.input, options)
    out = write_prepared_scene(prepared, args.output)
    print("\n".join(prepared.summary_lines()))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): load it with scene_file:={out}, sahmr bag --scene or "
          "sahmr infer --scene")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from sahmr_ros.data.synth import default_workers, synthesize
    from sahmr_ros.errors import InputError

    config = synth_config_from_args(args)
    out = Path(args.out)
    if (out / "manifest.json").exists():
        raise InputError(f"{out}: already holds a data set (manifest.json); choose another --out or delete it")
    workers = args.workers or default_workers()
    stats = synthesize(out, config, workers=workers, bags=args.bags, progress=not args.no_progress,
                       command=["sahmr", *sys.argv[1:]] if argv_is_cli() else [])
    stages = ", ".join(f"{k} {1e3 * v / stats['samples']:.0f}" for k, v in stats["stages_s"].items())
    print(f"wrote {stats['samples']} samples ({stats['persons']} persons) of split {config.split!r} to {out} in "
          f"{stats['seconds']:.1f} s: {stats['samples_per_s']:.2f} samples/s with {workers} worker(s); "
          f"ms per sample and worker: {stages}")
    print(f"evaluate: sahmr eval --data {out} --split {config.split} --demo -o {out}_eval")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from sahmr_ros.errors import InputError
    from sahmr_ros.training.config import load_config
    from sahmr_ros.training.trainer import train

    if args.resume is None and args.output is None:
        raise InputError("-o/--output: the run directory is required for a new run (or continue one with --resume)")
    if args.resume is not None and args.output is not None and \
            Path(args.output).resolve() != Path(args.resume).resolve():
        raise InputError("-o/--output: a resumed run stays in its directory; omit -o or give the --resume directory")
    if args.config is None and args.resume is None:
        raise InputError("--config: required for a new run")
    config = load_config(args.config) if args.config else None
    run_dir = args.resume or args.output
    result = train(config, run_dir, resume=args.resume is not None, init=args.init, until_step=args.until_step,
                   max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes,
                   progress=not args.no_progress)
    if result.step < result.total_steps:
        print(f"continue with: sahmr train --resume {run_dir}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from sahmr_ros.training.export import export_weights

    out = export_weights(args.checkpoint, args.output, rcnet=args.rcnet, precise_bn_data=args.precise_bn,
                         split=args.split, batches=args.batches, model_dir=args.model_dir, half=not args.fp32)
    print(f"sahmr export: wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def argv_is_cli() -> bool:
    """Tell whether this process is the ``sahmr`` command (its argv is worth recording)."""
    return Path(sys.argv[0]).name in ("sahmr", "__main__.py", "cli.py")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sahmr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the embedded default on a synthetic room (no downloads)")
    demo.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    demo_weights = demo.add_mutually_exclusive_group()
    demo_weights.add_argument("--checkpoint", default=None,
                              help="a sahmr_ros checkpoint, either preset (default: the embedded default, the "
                                   "small-preset weights shipped in sahmr_ros/weights/, see its MODEL_CARD.md)")
    demo_weights.add_argument("--untrained", action="store_true",
                              help="random small-preset weights (--seed) instead: the floor the model card compares "
                                   "with")
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the --untrained weights (default: 0)")
    _add_precision_argument(demo)
    demo.set_defaults(func=_cmd_demo)

    imp = sub.add_parser("import-checkpoint", help="convert an official SA-HMR release .pth to a sahmr_ros .pt")
    imp.add_argument("source", help="official checkpoint, e.g. sahmr_rich_e30.pth")
    imp.add_argument("-o", "--output", required=True, help="sahmr_ros checkpoint to write (.pt)")
    imp.set_defaults(func=_cmd_import)

    inf = sub.add_parser("infer", help="recover the people in your own image (map frame meshes and contacts)")
    inf.add_argument("--image", required=True, help="camera image (PNG, JPEG, ...)")
    inf.add_argument("--camera", required=True,
                     help="intrinsics .yaml/.json: ROS camera_info YAML, `ros2 topic echo` of CameraInfo, "
                          "or K / fx fy cx cy")
    inf.add_argument("--pose", required=True,
                     help="T_map_camera: file (.txt .npy .json .yaml) or 16 numbers (4x4 row-major) or "
                          "7 numbers 'tx ty tz qx qy qz qw'")
    inf.add_argument("--scene", required=True, help="map-frame scene: a `sahmr scene prepare` .npz, or .ply .pcd "
                                                    ".obj .glb .e57 .las .npy (meshes are sampled)")
    inf.add_argument("--box", action="append", default=[], metavar="X1,Y1,X2,Y2",
                     help="a person box in pixels; repeat for several people")
    inf.add_argument("--checkpoint", required=True, help="sahmr_ros checkpoint (.pt; see `sahmr import-checkpoint`)")
    inf.add_argument("--model-dir", default="models", help="SMPL + official body files (default: models)")
    inf.add_argument("-o", "--output", required=True, help="output directory")
    inf.add_argument("--distortion", choices=("undistort", "refuse"), default="undistort",
                     help="non-zero distortion: undistort the image (default) or refuse it")
    inf.add_argument("--mesh-format", choices=("ply", "obj"), default="ply", help="mesh files (default: ply)")
    inf.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    _add_precision_argument(inf)
    inf.set_defaults(func=_cmd_infer)

    bag_description = ("Replays INPUT through exactly the node's code path (latched scene, synchronisation, TF "
                       "from /tf and /tf_static, filters, conversions, pipeline) and writes the node's output "
                       "topics into OUTPUT (MCAP).")
    bag = sub.add_parser("bag", help="run the node's code path on a rosbag2 (MCAP/sqlite3) and write its "
                                     "output topics to an MCAP bag", description=bag_description)
    bag.add_argument("input", help="rosbag2 directory, .mcap or .db3 file")
    bag.add_argument("-o", "--output", required=True, help="output MCAP bag directory (must not exist)")
    bag.add_argument("--scene", default=None, help="scene file (a `sahmr scene prepare` .npz, or .ply .pcd .obj "
                                                   ".glb .e57 .las .npy) when the bag has none")
    bag.add_argument("--copy-inputs", action="store_true", help="also copy the input messages into OUTPUT")
    bag.add_argument("--distro", default="jazzy", choices=("jazzy", "humble"), help="message definitions")
    bag.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_node_param_options(bag)
    _add_tracking_options(bag)
    bag.set_defaults(func=_cmd_bag)

    ev = sub.add_parser("eval", help="evaluate a checkpoint on a data split (the paper's metrics, report and plots)",
                        description="Runs the pipeline (or, with --bag, the node's code path) over a data split with "
                                    "the ground-truth boxes and writes per-person metrics (CSV), a summary (JSON and "
                                    "markdown: overall, per pose category, per distance band) and plots into -o.")
    ev.add_argument("--data", required=True,
                    help="data directory: sahmr synth output (manifest.json), or official RICH / PROX evaluation data")
    ev.add_argument("--split", default="test", help="split to evaluate (default: test)")
    weights = ev.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", default=None, help="sahmr_ros checkpoint (.pt), with the body of --model-dir")
    weights.add_argument("--demo", action="store_true",
                         help="the embedded default with the synthetic body: the small-preset weights shipped in "
                              "sahmr_ros/weights/ (see its MODEL_CARD.md)")
    ev.add_argument("--untrained", action="store_true",
                    help="with --demo: random small-preset weights (seed 0) instead of the shipped ones, the floor "
                         "the model card compares with")
    ev.add_argument("--model-dir", default="models",
                    help="body files of the checkpoint (SMPL + official files, or a synthetic body directory); "
                         "official data also reads its regressor and part ids here (default: models)")
    ev.add_argument("--smplx-to-smpl", default=None,
                    help="official data: smplx2smplh_deftrafo_setup.pkl (default: MODEL_DIR/model_transfer/...)")
    ev.add_argument("-o", "--output", required=True, help="report directory")
    ev.add_argument("--bag", action="store_true",
                    help="evaluate the node's code path on the split's rosbag2 files (DATA/bags/<split>/)")
    ev.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    _add_precision_argument(ev)
    ev.add_argument("--no-plots", action="store_true", help="write the tables only")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.set_defaults(func=_cmd_eval)

    syn = sub.add_parser("synth", help="generate RICH/PROX-like samples with exact ground truth (procedural rooms, "
                                       "posed bodies, rendered images)",
                         description="Writes a data split (webdataset-style tar shards, scenes, manifest; the test "
                                     "split also as rosbag2 files) that sahmr eval and the training datasets read. "
                                     "The same arguments give the same bytes, whatever --workers.")
    syn.add_argument("--out", required=True, help="data directory to create")
    syn.add_argument("--split", default="test", choices=("train", "val", "test"), help="split (default: test)")
    syn.add_argument("--scenes", type=int, default=4, help="procedural rooms (default: 4)")
    syn.add_argument("--frames-per-scene", type=int, default=8, help="images per room (default: 8)")
    syn.add_argument("--seed", type=int, default=0, help="master seed (default: 0)")
    syn.add_argument("--workers", type=int, default=0, help="worker processes (default: one per CPU)")
    syn.add_argument("--min-people", type=int, default=1, help="people per image, at least (default: 1)")
    syn.add_argument("--max-people", type=int, default=4, help="people per image, at most (default: 4)")
    syn.add_argument("--model-dir", default=None,
                     help="body model directory (SMPL + official files); default: the synthetic body")
    bags = syn.add_mutually_exclusive_group()
    bags.add_argument("--bags", dest="bags", action="store_true", default=None,
                      help="also write rosbag2 files (default: for the test split)")
    bags.add_argument("--no-bags", dest="bags", action="store_false", help="no rosbag2 files")
    syn.add_argument("--sequence", action="store_true",
                     help="each room is one sequence of --frames-per-scene frames at --fps: people walking along "
                          "floor paths and people standing or sitting still, a moving camera, track ids in the "
                          "ground truth (bags: the frame period, detections without ids)")
    syn.add_argument("--fps", type=float, default=10.0, help="frames per second of a sequence (default: 10)")
    syn.add_argument("--no-progress", action="store_true", help="no progress bar")
    syn.set_defaults(func=_cmd_synth)

    tr = sub.add_parser("train", help="train or fine-tune SA-HMR (one process, or many with torchrun)",
                        description="Trains the stage of the config (rcnet, mesh, joint) on its data sources and "
                                    "writes a run directory: checkpoints (sahmr eval --checkpoint), training state, "
                                    "TensorBoard events, validation reports. Under torchrun every process runs this "
                                    "command: torchrun --nproc_per_node=N -m sahmr_ros.cli train --config C.yaml "
                                    "-o RUN.")
    tr.add_argument("--config", default=None,
                    help="training config (YAML; see config/train_small.yaml); optional with --resume (default: the "
                         "run's own config.yaml)")
    tr.add_argument("-o", "--output", default=None, help="run directory of a new run")
    tr.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue this run from its last checkpoint")
    tr.add_argument("--init", default=None, metavar="CHECKPOINT",
                    help="start from these weights (sahmr_ros checkpoint, e.g. from sahmr import-checkpoint); "
                         "replaces the config's init")
    tr.add_argument("--until-step", type=int, default=None, help="stop after this step (checkpoint written)")
    tr.add_argument("--max-minutes", type=float, default=None,
                    help="stop after this much training time (checkpoint written; continue with --resume)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar (periodic lines only)")
    tr.set_defaults(func=_cmd_train)

    ex = sub.add_parser("export", help="weights to ship from sahmr train checkpoints (stages combined, precise "
                                       "batch norm, fp16 storage)")
    ex.add_argument("checkpoint", help="a sahmr_ros checkpoint, e.g. the mesh stage's RUN/checkpoints/best.pt")
    ex.add_argument("-o", "--output", required=True, help="the file to write")
    ex.add_argument("--rcnet", default=None, metavar="CHECKPOINT",
                    help="take the RCNet from this checkpoint (e.g. the rcnet stage's best.pt)")
    ex.add_argument("--precise-bn", default=None, metavar="DATA",
                    help="recalibrate batch-norm statistics on this sahmr synth directory (un-augmented crops)")
    ex.add_argument("--split", default="train", help="split of --precise-bn data")
    ex.add_argument("--batches", type=int, default=32, help="batches of 4 images for --precise-bn")
    ex.add_argument("--model-dir", default=None, help="body files of the data (default: the synthetic body)")
    ex.add_argument("--fp32", action="store_true", help="store float32 (default: float16, statistics float32)")
    ex.set_defaults(func=_cmd_export)

    scene = sub.add_parser("scene", help="maps: `sahmr scene prepare` makes a robot's mesh or cloud a scene file")
    prep = scene.add_subparsers(dest="scene_command", required=True).add_parser(
        "prepare", help="mesh or cloud (.ply .pcd .obj .glb .gltf .e57 .las .laz) -> scene .npz",
        description="Transforms a mesh or cloud into the map frame, crops it, drops non-finite points, samples a "
                    "mesh's surface, voxelises at 2 cm as the pipeline does, removes outliers and adds an SDF grid "
                    "(PenE); writes a compressed .npz with its provenance that the node (scene_file), sahmr bag "
                    "--scene and sahmr infer --scene load as it is.")
    prep.add_argument("input", help="the map: .ply .pcd .obj .glb .gltf .e57 .las .laz")
    prep.add_argument("-o", "--output", required=True, help="scene file to write (.npz)")
    prep.add_argument("--transform", default=None,
                      help="T_map_input, the map pose of the file's frame, as --pose of sahmr infer: file (.txt .npy "
                           ".json .yaml) or 16 numbers (4x4 row-major) or 7 'tx ty tz qx qy qz qw'")
    prep.add_argument("--crop", default=None, metavar="XMIN,YMIN,ZMIN,XMAX,YMAX,ZMAX",
                      help="keep this axis-aligned box of the map frame (metres, after --transform); write "
                           "--crop=-5,... when the first number is negative")
    prep.add_argument("--sdf", default="auto", choices=("auto", "signed", "unsigned", "none"),
                      help="auto: signed from a watertight mesh, else none (default); unsigned: distance to surface")
    prep.add_argument("--sdf-spacing", type=float, default=0.05, help="SDF node spacing in metres (default: 0.05)")
    prep.add_argument("--keep-outliers", action="store_true", help="skip the statistical outlier removal")
    prep.set_defaults(func=_cmd_scene_prepare)

    info = sub.add_parser("info", help="versions, device, and a file-by-file check of a model directory")
    info.add_argument("--model-dir", default="models", help="model directory to check (default: models)")
    info.set_defaults(func=_cmd_info)
    return parser


def quiet_third_party_logs() -> None:
    """Silence torch.fx's deprecation notice that spconv triggers on every run (noise, not a problem)."""
    import logging

    logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_third_party_logs()
    try:
        return args.func(args)
    except SahmrError as exc:
        print(f"sahmr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the command has said what it kept (sahmr train: its checkpoint)
        print(f"sahmr {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
