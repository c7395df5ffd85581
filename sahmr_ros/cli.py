"""The ``sahmr`` command: ``sahmr demo``, ``sahmr import-checkpoint``, ``sahmr info``.

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

__all__ = ["main", "build_parser"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from sahmr_ros.demo.run import run_demo

    run_demo(Path(args.out), checkpoint=args.checkpoint, device=args.device, seed=args.seed)
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

    from sahmr_ros.body import model_file_status

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
    ok = True
    for status in model_file_status(model_dir):
        mark = "found  " if status.found else "MISSING"
        print(f"  [{mark}] {status.path.relative_to(model_dir)!s:<32} {status.description}")
        if not status.found:
            ok = False
            print(f"            get it from: {status.source}")
    if (model_dir / C.SYNTHETIC_MARKER_FILENAME).is_file():
        print("  note: this directory holds the SYNTHETIC body (sahmr demo), not SMPL")
    checkpoints = sorted(model_dir.glob("*.pt")) + sorted(model_dir.glob("checkpoints/*.pt"))
    print(f"  checkpoints: {', '.join(p.name for p in checkpoints) if checkpoints else 'none (*.pt)'}")
    if not ok:
        print("some model files are missing: see models/README.md; `sahmr demo` needs none of them")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sahmr", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the embedded default on a synthetic room (no downloads)")
    demo.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    demo.add_argument("--checkpoint", default=None,
                      help="a sahmr_ros checkpoint, either preset (default: UNTRAINED random small-preset weights)")
    demo.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the untrained default weights")
    demo.set_defaults(func=_cmd_demo)

    imp = sub.add_parser("import-checkpoint", help="convert an official SA-HMR release .pth to a sahmr_ros .pt")
    imp.add_argument("source", help="official checkpoint, e.g. sahmr_rich_e30.pth")
    imp.add_argument("-o", "--output", required=True, help="sahmr_ros checkpoint to write (.pt)")
    imp.set_defaults(func=_cmd_import)

    info = sub.add_parser("info", help="versions, device and which model files are present")
    info.add_argument("--model-dir", default="models", help="model directory to check (default: models)")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SahmrError as exc:
        print(f"sahmr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
