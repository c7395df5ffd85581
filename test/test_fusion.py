"""Tests of sahmr_ros.networks.fusion: BatchNorm folded into the preceding convolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sahmr_ros.networks.fusion import can_fold, conv_bn, folded_conv_bn


def _layers(bias: bool, affine: bool, seed: int = 0) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    torch.manual_seed(seed)
    conv = nn.Conv2d(5, 7, 3, stride=2, padding=1, bias=bias)
    bn = nn.BatchNorm2d(7, affine=affine, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 3.0)
        if affine:
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.normal_()
    return conv, bn.eval()


@pytest.mark.parametrize("bias, affine", [(False, True), (True, True), (True, False)])
@pytest.mark.parametrize("relu", [False, True])
def test_conv_bn_folded_equals_modules(bias, affine, relu):
    conv, bn = _layers(bias, affine)
    x, residual = torch.randn(2, 5, 9, 11), torch.randn(2, 7, 5, 6)
    ref = torch.relu(bn(conv(x)) + residual) if relu else bn(conv(x)) + residual
    with torch.no_grad():
        assert can_fold(bn)
        out = conv_bn(conv, bn, x, relu=relu, residual=residual)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-5, atol=1e-6)


def test_folded_weights_are_cached_until_a_tensor_changes():
    conv, bn = _layers(True, True)
    with torch.no_grad():
        w1, b1 = folded_conv_bn(conv, bn)
        assert folded_conv_bn(conv, bn)[0] is w1  # cached
        bn.running_var.add_(1.0)  # in place: same address, new version
        w2, b2 = folded_conv_bn(conv, bn)
    assert w2 is not w1 and not torch.equal(w2, w1)
    assert "_sahmr_folded_bn" not in dict(conv.named_buffers()) and len(conv.state_dict()) == 2


def test_layout_and_dtype_follow_the_conv_weight():
    conv, bn = _layers(False, True)
    conv.to(torch.bfloat16).to(memory_format=torch.channels_last)
    with torch.no_grad():
        weight, bias = folded_conv_bn(conv, bn)
    assert weight.dtype == bias.dtype == torch.bfloat16
    assert weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 5, 8, 8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv_bn(conv, bn, x)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)


def test_not_folded_with_grad_or_in_train_mode():
    conv, bn = _layers(False, True)
    assert not can_fold(bn)  # grad enabled: the modules run, gradients reach the BN
    conv_bn(conv, bn, torch.randn(2, 5, 8, 8), relu=True).sum().backward()
    assert bn.weight.grad is not None and conv.weight.grad is not None
    bn.train()
    with torch.no_grad():
        assert not can_fold(bn)
        before = bn.running_mean.clone()
        conv_bn(conv, bn, torch.randn(2, 5, 8, 8))
    assert not torch.equal(bn.running_mean, before)  # batch statistics, running ones updated


def test_non_zero_padding_modes_run_unfolded():
    conv, bn = _layers(False, True)
    conv.padding_mode = "reflect"
    x = torch.randn(1, 5, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(conv_bn(conv, bn, x), bn(conv(x)))


def test_half_precision_weights_run_unfolded():
    """A bf16 conv keeps its separate BN: folding would round the (cancelling) bias to bf16 too."""
    conv, bn = _layers(True, True)
    conv.to(torch.bfloat16)
    x = torch.randn(1, 5, 8, 8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv_bn(conv, bn, x)
        ref = bn(conv(x))
    assert "_sahmr_folded_bn" not in conv.__dict__  # nothing folded or cached
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
