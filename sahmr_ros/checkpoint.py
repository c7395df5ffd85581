"""sahmr_ros checkpoints: a state_dict plus the preset and provenance metadata.

File layout (``torch.save`` of a plain dict, read back with ``weights_only=True``)::

    {"format": "sahmr_ros", "format_version": 1, "preset": "official" | "small",
     "state_dict": {name: tensor}, "metadata": {str: str | int | float}}

Official release files (``sahmr_*_e30.pth``) are converted to this layout by
``sahmr import-checkpoint``; loading one directly is refused with a message saying so.
"""

from __future__ import annotations

from pathlib import Path

import torch

from sahmr_ros.errors import CheckpointError

__all__ = ["FORMAT", "FORMAT_VERSION", "save_checkpoint", "load_checkpoint", "load_state_strict"]

FORMAT = "sahmr_ros"
FORMAT_VERSION = 1


_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def save_checkpoint(path: str | Path, model: torch.nn.Module, preset: str, metadata: dict | None = None,
                    half: bool = False) -> Path:
    """Write ``model``'s state_dict with its preset and metadata; returns the path.

    Args:
        half: store floating-point tensors as float16, except the batch-norm statistics (float32: their
            range); :func:`load_state_strict` upcasts them again.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if half:
        state = {k: (v.half() if v.is_floating_point() and not k.endswith(_BN_STATS) else v) for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "preset": preset,
        "state_dict": state,
        "metadata": dict(metadata or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, expected_preset: str | None = None) -> dict:
    """Read and validate a sahmr_ros checkpoint (never executes pickled code).

    Args:
        path: ``.pt`` file written by :func:`save_checkpoint` or ``sahmr import-checkpoint``.
        expected_preset: refuse a checkpoint of another preset.

    Returns:
        The payload dict (keys ``preset``, ``state_dict``, ``metadata``, ...).

    Raises:
        CheckpointError: missing, unreadable, not a sahmr_ros checkpoint, or another preset.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"checkpoint {path}: unreadable or corrupt ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        if isinstance(payload, dict) and "network" in payload:
            raise CheckpointError(
                f"checkpoint {path}: this is an official SA-HMR release file; convert it first with "
                f"`sahmr import-checkpoint {path} -o OUT.pt`"
            )
        raise CheckpointError(f"checkpoint {path}: not a sahmr_ros checkpoint (no format='{FORMAT}' field)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: format_version {payload.get('format_version')!r} is not supported "
            f"(this sahmr_ros reads {FORMAT_VERSION})"
        )
    if not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path}: field 'state_dict' missing or not a dict")
    if expected_preset is not None and payload.get("preset") != expected_preset:
        raise CheckpointError(
            f"checkpoint {path}: preset {payload.get('preset')!r} does not match the requested preset "
            f"{expected_preset!r}; pass --preset {payload.get('preset')} or another checkpoint"
        )
    return payload


def load_state_strict(model: torch.nn.Module, state_dict: dict, where: str, preset: str) -> None:
    """Load every tensor of ``state_dict`` into ``model``, and nothing else; half-precision storage is upcast.

    Args:
        model: the module to fill (float32 parameters).
        state_dict: its weights (fp16 / bf16 storage allowed).
        where: how messages name the source, e.g. ``"checkpoint runs/x.pt"``.
        preset: the preset the model was built for (named in messages).

    Raises:
        CheckpointError: ``"<where>: does not fit the <preset> preset: ..."`` with the missing and unexpected
            keys, or the first tensor of another shape.
    """
    state = {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in state_dict.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shapes differ: torch lists one mismatch per line after the first
        lines = str(exc).splitlines()
        first = lines[1].strip() if len(lines) > 1 else str(exc)
        raise CheckpointError(f"{where}: does not fit the {preset} preset: {first}") from None
    if missing or unexpected:
        raise CheckpointError(f"{where}: does not fit the {preset} preset: {len(missing)} missing keys (first: "
                              f"{missing[:5]}), {len(unexpected)} unexpected keys (first: {unexpected[:5]})")
