"""Where the networks may run in half precision and where they may not.

The pipeline's ``precision`` option runs the networks under ``torch.autocast`` (fp16 / bf16).
Absolute camera-frame coordinates do not survive that: bf16 keeps 8 significant bits, i.e. 3 cm
steps between 4 and 8 m, and fp16 overflows at 65504. So geometry (roots, anchors, scene points,
voxel coordinates and centres, offsets, vertices, the softmax-weighted refined root) and sums over
many tokens (the linear-attention normaliser) run in float32 or better, with autocast switched off
(:func:`full_precision`); only what a network layer consumes is cast by autocast.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

__all__ = ["full_precision", "at_least_float32"]


def full_precision(device: torch.device | str):
    """Context in which autocast is off on ``device`` (a no-op where autocast does not exist)."""
    device_type = torch.device(device).type
    if not torch.amp.is_autocast_available(device_type):
        return nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32 unless it is already float32 or float64 (half precision is widened)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
