"""Tests of sahmr_ros.networks.hrnet: official key layout, output shapes, determinism."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from sahmr_ros.errors import InputError
from sahmr_ros.networks.hrnet import HRNet, HRNetConfig

_REFERENCE = (Path(__file__).resolve().parents[2] / "shared" / "reference"
              / "sahmr_official_state_dict.txt")
_ROOT_NET_PREFIX = "net.rcnet.root_net.hrnet."
_METRO_BACKBONE_PREFIX = "net.metro_enhanced.backbone."


def _reference_entries(prefix: str) -> dict[str, tuple[int, ...]]:
    """Official ``key -> shape`` under ``prefix`` (stripped), from the reference key list."""
    if not _REFERENCE.is_file():
        pytest.skip(f"../shared/reference not present: {_REFERENCE} is missing")
    entries = {}
    for line in _REFERENCE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, _dtype = line.split("\t")
        if key.startswith(prefix):
            entries[key[len(prefix):]] = tuple(ast.literal_eval(shape))
    assert entries, f"no reference entries under {prefix!r}"
    return entries


def _state_dict_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _assert_same_entries(ours: dict, official: dict) -> None:
    missing = sorted(set(official) - set(ours))
    unexpected = sorted(set(ours) - set(official))
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    wrong = {k: (ours[k], official[k]) for k in official if ours[k] != official[k]}
    assert not wrong, f"shape mismatches (ours, official): {dict(list(wrong.items())[:5])}"


def test_w64_stride4_matches_official_root_net_keys():
    official = _reference_entries(_ROOT_NET_PREFIX)
    with torch.device("meta"):
        model = HRNet(HRNetConfig.w64(), "stride4")
    _assert_same_entries(_state_dict_shapes(model), official)
    assert list(model.state_dict()) == list(official)  # same order too


def test_w64_features_matches_official_metro_backbone_keys():
    official = _reference_entries(_METRO_BACKBONE_PREFIX)
    official = {k: v for k, v in official.items() if not k.startswith("classifier.")}
    with torch.device("meta"):
        model = HRNet(HRNetConfig.w64(), "features")
    _assert_same_entries(_state_dict_shapes(model), official)


@pytest.mark.parametrize("head, shape", [("stride4", (2, 8, 56, 56)), ("features", (2, 256, 7, 7))])
def test_small_forward_shapes(head, shape):
    torch.manual_seed(0)
    model = HRNet(HRNetConfig.small(), head).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 224, 224))
    assert out.shape == shape
    assert (model.out_channels, 224 // model.out_stride) == (shape[1], shape[2])
    assert torch.isfinite(out).all()


def test_small_gradients_are_finite():
    torch.manual_seed(0)
    model = HRNet(HRNetConfig.small(), "features").train()
    model(torch.randn(2, 3, 64, 64)).square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "head, shape", [("stride4", (1, 64, 56, 56)), ("features", (1, 2048, 7, 7))]
)
def test_w64_forward_shapes(head, shape):
    torch.manual_seed(0)
    model = HRNet(HRNetConfig.w64(), head).eval()
    assert model.out_channels == shape[1] and 224 // model.out_stride == shape[2]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == shape
    assert torch.isfinite(out).all()


def test_stride4_non_square_input_and_eval_determinism():
    torch.manual_seed(0)
    model = HRNet(HRNetConfig.small(), "stride4").eval()
    images = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        first = model(images)
        second = model(images)
    assert first.shape == (2, model.out_channels, 32, 24)
    assert torch.equal(first, second)


def test_forward_does_not_mutate_input():
    torch.manual_seed(0)
    model = HRNet(HRNetConfig.small(), "features").eval()
    images = torch.randn(1, 3, 64, 64)
    before = images.clone()
    with torch.no_grad():
        model(images)
    assert torch.equal(images, before)


@pytest.mark.parametrize("images", [
    torch.zeros(3, 64, 64),  # no batch axis
    torch.zeros(1, 1, 64, 64),  # grey
    torch.zeros(1, 3, 60, 64),  # not a multiple of 32
    torch.zeros(1, 3, 64, 64, dtype=torch.uint8),  # not normalised
])
def test_bad_images_raise_input_error(images):
    model = HRNet(HRNetConfig.small(), "stride4")
    with pytest.raises(InputError, match="HRNet images"):
        model(images)


def test_bad_head_and_config_raise_input_error():
    with pytest.raises(InputError, match="head"):
        HRNet(HRNetConfig.small(), "classifier")
    with pytest.raises(InputError, match="branch_channels"):
        HRNetConfig(branch_channels=(64, 128, 256))
    with pytest.raises(InputError, match="positive"):
        HRNetConfig(blocks_per_branch=0)
