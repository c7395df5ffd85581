"""Where the networks may run in half precision and where they may not.

The pipeline's ``precision`` option runs the networks under ``torch.autocast`` (fp16 / bf16).
Absolute camera-frame coordinates do not survive that: bf16 keeps 8 significant bits, i.e. 3 cm
steps between 4 and 8 m, and fp16 overflows at 65504. So geometry (roots, anchors, scene points,
voxel coordinates and centres, offsets, vertices, the softmax-weighted refined root) and sums over
many tokens (the linear-attention normaliser) run in float32 or better, with autocast switched off
(:func:`full_precision`); only what a network layer consumes is cast by autocast.

``auto`` (:func:`resolve_precision`) picks bf16 where the CPU computes it natively (AVX512-BF16 or AMX:
oneDNN runs bf16 convolutions and GEMMs on those units), fp32 elsewhere and on CUDA.

On CPU autocast would cast every weight at every call; :func:`store_weights_in` stores the dense layers'
weights in the half dtype once instead, and the 2-d convolutions channels_last (oneDNN's fast layout).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from sahmr_ros.constants import PRECISIONS
from sahmr_ros.errors import InputError

__all__ = ["PRECISIONS", "at_least_float32", "autocast_dtype", "cpu_supports_bf16", "full_precision",
           "resolve_precision", "store_weights_in"]

_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# /proc/cpuinfo flags of native bf16 arithmetic: AVX512-BF16 (dot products) and AMX (tile matrix multiply)
_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Layers whose weights feed a GEMM or convolution; norms keep float32 parameters (autocast runs
# LayerNorm in float32 on CPU, and BatchNorm takes half inputs with float32 statistics)
_DENSE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)


def cpu_supports_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Tell whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX), from its cpuinfo flags.

    torch's own report (``torch.backends.cpu.get_cpu_capability()``) stops at ``"AVX512"`` and does not
    say whether the bf16 instructions exist, so the kernel's flags decide. Where ``cpuinfo`` cannot be
    read (not Linux), False: without those instructions bf16 is emulated and slower than fp32.
    """
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:
        return False
    return bool(flags & _BF16_CPU_FLAGS)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """Return the precision inference runs in on ``device``: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    ``auto``: bf16 on a CPU with AVX512-BF16 or AMX (:func:`cpu_supports_bf16`), else fp32. On CUDA
    ``auto`` is fp32: the half-precision error of the trained weights is measured on CPU only
    (``bench/precision.py``), and the small preset is not limited by GPU arithmetic; ask for fp16 /
    bf16 explicitly there. The other values are returned as they are.

    Raises:
        InputError: an unknown precision (the message lists the choices).
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision: {precision!r} unknown; choose {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if torch.device(device).type == "cpu" and cpu_supports_bf16() else "fp32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """Return the autocast dtype of a resolved precision (None: fp32, no autocast)."""
    if precision not in _AUTOCAST_DTYPES:
        raise InputError(f"precision: {precision!r} is not resolved; expected one of {', '.join(_AUTOCAST_DTYPES)}")
    return _AUTOCAST_DTYPES[precision]


def full_precision(device: torch.device | str):
    """Context in which autocast is off on ``device`` (a no-op where autocast does not exist)."""
    device_type = torch.device(device).type
    if not torch.amp.is_autocast_available(device_type):
        return nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32 unless it is already float32 or float64 (half precision is widened)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def store_weights_in(modules: Iterable[nn.Module], dtype: torch.dtype) -> None:
    """Store the weights of the dense layers inside ``modules`` in ``dtype``, 2-d convolutions channels_last.

    For inference under ``torch.autocast(dtype=dtype)`` on CPU: autocast then finds the weights already
    in its dtype instead of casting them at every call, and oneDNN runs the convolutions in its
    channels_last layout (their outputs follow it). Linear, Conv1d / Conv2d and Embedding layers are
    converted; normalisation layers keep float32 parameters. Pass only modules that run under
    autocast: a converted layer called with autocast off gets float32 inputs and half weights, which
    torch refuses.
    """
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, _DENSE_LAYERS):
                layer.to(dtype)
            if isinstance(layer, nn.Conv2d):
                layer.to(memory_format=torch.channels_last)
