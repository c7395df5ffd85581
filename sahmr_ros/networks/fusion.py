"""Inference-time folding of BatchNorm into the preceding convolution.

In eval mode a BatchNorm is an affine map per channel, ``y = (x - mean) * g / sqrt(var + eps) + b``,
so ``bn(conv(x))`` equals one convolution with the weight scaled per output channel and a new bias.
Folding halves the number of operator calls of a conv+BN network (the small HRNet trunks are bound
by that count, not by arithmetic) and saves one pass over every feature map.

The folded tensors are computed at run time from the modules' current parameters and buffers and
cached on the conv module as a plain attribute (not a parameter or buffer, so ``state_dict`` and
checkpoint keys are unchanged). The cache is keyed on the storage address and version counter of
every tensor involved, so it is rebuilt after ``load_state_dict``, ``.to(...)``, an optimiser step
or any in-place change (e.g. of ``running_mean``). Training (train-mode BN, autograd) never uses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["can_fold", "conv_bn", "folded_conv_bn"]

_CACHE_ATTR = "_sahmr_folded_bn"
# Weights folded only where they are stored in float32 or better. Folded into bf16 weights (re-rounded,
# with a bf16 bias: likely the culprit where the bias nearly cancels the conv output), it moved a pelvis
# heatmap peak on the trained small default by a cell (1.2 m) and tripled the vertex error against fp32
# (test/test_precision_trained.py); half-precision weights keep a separate BN
_FOLD_DTYPES = (torch.float32, torch.float64)


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
    try:
        versions = tuple([0 if t is None else t._version for t in tensors])
    except RuntimeError:  # an inference tensor
        versions = None
    return tuple([0 if t is None else t.data_ptr() for t in tensors]), versions, bn.eps


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
        scale = torch.rsqrt(bn.running_var.to(acc) + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.to(acc)
        shift = -bn.running_mean.to(acc) if conv.bias is None else conv.bias.to(acc) - bn.running_mean
        bias = shift * scale
        if bn.bias is not None:
            bias = bias + bn.bias.to(acc)
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
