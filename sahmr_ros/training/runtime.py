"""Where and how a training process runs: torch.distributed from torchrun's environment, device, precision, RNGs.

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` starts the process group from them (gloo on CPU, nccl on CUDA). A plain
``sahmr train`` runs as rank 0 of 1 without a process group.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from sahmr_ros.errors import InputError
from sahmr_ros.networks.precision import cpu_supports_bf16  # re-exported: the one detection, shared with inference

__all__ = ["Distributed", "capture_rng", "cpu_supports_bf16", "init_distributed", "resolve_precision",
           "restore_rng"]


@dataclass(frozen=True)
class Distributed:
    """This process among the training processes.

    Attributes:
        rank, world_size, local_rank: as torchrun numbers them (0, 1, 0 without torchrun).
        device: the device this process trains on.
        started_here: True when :func:`init_distributed` created the process group (and ends it).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    started_here: bool = False

    @property
    def active(self) -> bool:
        """Return True when gradients are averaged over several processes."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Return True on rank 0, the only process that writes checkpoints and logs."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (no-op for one process)."""
        if self.active:
            dist.barrier()

    def close(self) -> None:
        """End the process group if this module started it."""
        if self.started_here and dist.is_initialized():
            dist.destroy_process_group()


def _device(preference: str, local_rank: int) -> torch.device:
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(preference)
    except RuntimeError as exc:
        raise InputError(f"device: {preference!r} is not a torch device ({exc})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device: {preference!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str = "auto") -> Distributed:
    """Join the training processes: torchrun's environment, an existing process group, or none.

    Args:
        device: the config's device; ``"auto"`` and ``"cuda"`` take ``cuda:LOCAL_RANK`` under torchrun.
    """
    if dist.is_available() and dist.is_initialized():  # e.g. torch.multiprocessing workers that set it up
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return Distributed(dist.get_rank(), dist.get_world_size(), local, _device(device, local))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return Distributed(0, 1, local, _device(device, local))
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 but this torch has no torch.distributed")
    dev = _device(device, local)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    return Distributed(dist.get_rank(), dist.get_world_size(), local, dev, started_here=True)


def resolve_precision(precision: str, device: torch.device) -> str:
    """Return ``"fp32"``, ``"bf16"`` or ``"fp16"`` for the config's ``precision`` on ``device``.

    ``auto``: bf16 on CUDA (fp16 where the GPU has no bf16) and on CPUs with AVX512-BF16 or AMX, else fp32.

    Raises:
        InputError: fp16 on a CPU (no gradient scaling there; use bf16), bf16 on a GPU without it.
    """
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and cpu_supports_bf16() else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise InputError("precision: fp16 trains on CUDA only (with a gradient scaler); use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError("precision: this GPU has no bf16; use fp16 or fp32")
    return precision


def autocast_dtype(precision: str) -> torch.dtype | None:
    """Return the autocast dtype of a resolved precision (None: fp32)."""
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def capture_rng() -> dict:
    """Return the global RNG states (python, numpy, torch CPU and CUDA) as plain, loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                       "gauss": float(gauss)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Set the global RNG states from :func:`capture_rng`'s output."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
