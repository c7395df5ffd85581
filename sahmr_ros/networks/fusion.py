"""Inference-time derived weights: BatchNorm folded into the preceding convolution, and their cache.

In eval mode a BatchNorm is an affine map per channel, ``y = (x - mean) * g / sqrt(var + eps) + b``,
so ``bn(conv(x))`` equals one convolution with the weight scaled per output channel and a new bias.
Folding halves the number of operator calls of a conv+BN network (the small HRNet trunks are bound
by that count, not by arithmetic) and saves one pass over every feature map.

The folded tensors are computed at run time from the modules' current parameters and buffers and
cached on the conv module as a plain attribute (not a parameter or buffer, so ``state_dict`` and
checkpoint keys are unchanged). The cache is keyed on the storage address and version counter of
every tensor involved, so it is rebuilt after ``load_state_dict``, ``.to(...)``, an optimiser step
or any in-place change (e.g. of ``running_mean``). Training (train-mode BN, autograd) never uses it.
:func:`derived` is that cache for any tensors derived from parameters (the sparse CNN's folded kernels,
the mesh network's composed upsampling), :func:`bn_affine` the eval-mode BatchNorm as scale and shift.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["bn_affine", "bn_tensors", "can_fold", "conv_bn", "derived", "folded_conv_bn"]

_CACHE_ATTR = "_sahmr_folded_bn"
# Weights folded only where they are stored in float32 or better. Folded into bf16 weights (re-rounded,
# with a bf16 bias: likely the culprit where the bias nearly cancels the conv output), it moved a pelvis
# heatmap peak on the trained small default by a cell (1.2 m) and tripled the vertex error against fp32
# (test/test_precision_trained.py); half-precision weights keep a separate BN
_FOLD_DTYPES = (torch.float32, torch.float64)
_DERIVED: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _versions(tensors) -> tuple | None:
    """Version counters of ``tensors`` (None entries: 0); None when one is an inference tensor (it has none)."""
    try:
        return tuple([0 if t is None else t._version for t in tensors])
    except RuntimeError:  # an inference tensor: only its address can be compared
        return None


def derived(owner: nn.Module, tag: tuple, tensors: tuple, build):
    """``build()``, cached on ``owner`` under ``tag`` until any of ``tensors`` changes (storage or version).

    Weights derived for inference from parameters and buffers: an optimiser step, a ``load_state_dict``
    or a replaced parameter changes a tensor's version or storage, and the next call rebuilds. Nothing is
    stored in the module's state dict. Tensors created in inference mode have no version counter; for
    them only identity and address are compared.
    """
    entries = _DERIVED.get(owner)
    if entries is None:
        entries = _DERIVED[owner] = {}
    stamp = (tuple(t.data_ptr() for t in tensors), _versions(tensors))
    hit = entries.get(tag)
    if hit is not None and len(hit[0]) == len(tensors) and all(t is u for t, u in zip(tensors, hit[0])) \
            and hit[1] == stamp:
        return hit[2]
    value = build()
    entries[tag] = (tensors, stamp, value)
    return value


def bn_tensors(bn: nn.Module | None) -> tuple:
    """Return the parameters and running statistics a BatchNorm has (none for ``bn=None``)."""
    if bn is None:
        return ()
    return tuple(t for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var) if t is not None)


def bn_affine(bn: nn.Module | None, c_out: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as ``y * scale + shift``: ((Cout,), (Cout,)) in ``dtype`` (identity if None)."""
    if bn is None:
        return torch.ones(c_out, dtype=dtype, device=device), torch.zeros(c_out, dtype=dtype, device=device)
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("folding batch norm needs running statistics (track_running_stats=True)")
    scale = torch.rsqrt(bn.running_var.to(dtype) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(dtype)
    shift = -bn.running_mean.to(dtype) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.to(dtype)
    return scale, shift


def can_fold(bn: nn.BatchNorm2d) -> bool:
    """Tell whether ``bn`` may be folded now: eval mode, running statistics, autograd off.

    With grad enabled the unfolded modules run (the reference path: gradients reach the BN's
    parameters exactly as in training code); in train mode BN normalises with batch statistics.
    """
    buffers = bn._buffers  # not bn.running_mean: nn.Module.__getattr__ is slow (see _stamp)
    return (not bn.training and not torch.is_grad_enabled()
            and buffers.get("running_mean") is not None and buffers.get("running_var") is not None)


def _is_channels_last(t: torch.Tensor) -> bool:
    """Tell whether the 4-d tensor ``t`` is laid out channels_last (and not also plain contiguous)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


def _stamp(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple:
    """Addresses and version counters of the tensors the folded conv depends on, and the BN's eps.

    Read from the modules' dicts directly: ``nn.Module.__getattr__`` costs ~0.5 us a tensor,
    which over ~100 convs is a noticeable share of the small trunk's forward. Tensors created in
    inference mode have no version counter; for them only the address is compared (in-place
    changes to such tensors, possible only inside inference mode, are then not seen).
    """
    params, bn_params, buffers = conv._parameters, bn._parameters, bn._buffers
    tensors = (params["weight"], params.get("bias"), bn_params.get("weight"), bn_params.get("bias"),
               buffers.get("running_mean"), buffers.get("running_var"))
    return tuple([0 if t is None else t.data_ptr() for t in tensors]), _versions(tensors), bn.eps


def folded_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d,
                   memory_format: torch.memory_format | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the weight and bias of the convolution equal to ``bn(conv(x))`` in eval mode.

    Args:
        conv: Conv2d ``(C_out, C_in / groups, kh, kw)`` weight, optional ``(C_out,)`` bias.
        bn: BatchNorm2d over ``C_out`` channels with running statistics.
        memory_format: Layout of the returned weight; None: that of ``conv.weight``.

    Returns:
        ``weight (C_out, C_in / groups, kh, kw)`` and ``bias (C_out,)``, both in the dtype of
        ``conv.weight`` (folded in float32 or better, then cast), cached on ``conv`` until any of
        the tensors involved changes. Call only under :func:`can_fold` conditions: the result
        carries no autograd history.
    """
    key = (_stamp(conv, bn), memory_format)
    cached = conv.__dict__.get(_CACHE_ATTR)
    if cached is not None and cached[0] == key:
        return cached[1], cached[2]
    weight = conv.weight
    if memory_format is None:
        memory_format = torch.channels_last if _is_channels_last(weight) else torch.contiguous_format
    with torch.no_grad():
        acc = torch.promote_types(weight.dtype, torch.float32)
        scale, bias = bn_affine(bn, weight.shape[0], acc, weight.device)
        if conv.bias is not None:
            bias = bias + conv.bias.to(acc) * scale
        folded = (weight.to(acc) * scale.view(-1, *[1] * (weight.ndim - 1))).to(weight.dtype)
        folded = folded.contiguous(memory_format=memory_format)
        bias = bias.to(weight.dtype)
    conv.__dict__[_CACHE_ATTR] = (key, folded, bias)
    return folded, bias


def conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor, relu: bool = False,
            residual: torch.Tensor | None = None) -> torch.Tensor:
    """``act(bn(conv(x)) [+ residual])``, one folded convolution when :func:`can_fold` allows.

    Args:
        conv, bn: the layers (``bn`` over the conv's output channels).
        x: ``(B, C_in, H, W)`` input.
        relu: apply a ReLU at the end (after the residual sum).
        residual: optional ``(B, C_out, H', W')`` tensor added before the ReLU.

    Returns:
        ``(B, C_out, H', W')``. On the folded path (float32 / float64 conv weights only) the
        residual sum and ReLU are done in place on the conv's (fresh) output, and the folded weight
        is channels_last when ``x`` or ``conv.weight`` is (torch then runs the oneDNN convolution,
        whose output is channels_last too, so a network fed channels_last stays so); otherwise the
        modules run unchanged (autograd, train mode, half-precision weights).
    """
    if not can_fold(bn) or conv.padding_mode != "zeros" or conv.weight.dtype not in _FOLD_DTYPES:
        y = bn(conv(x))
        if residual is not None:
            y = y + residual
        return F.relu(y) if relu else y
    # a non-contiguous 4-d input is channels_last here; a contiguous one takes the weight's layout
    weight, bias = folded_conv_bn(conv, bn, None if x.is_contiguous() else torch.channels_last)
    y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    if residual is not None:
        y += residual
    return y.relu_() if relu else y
