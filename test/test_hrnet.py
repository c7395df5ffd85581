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


# --- inference-time BatchNorm folding -------------------------------------------------------------

def _randomise_batch_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BN non-trivial statistics and affine parameters (fresh ones fold to identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=gen))
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
            elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
    return model


def _reference(model: HRNet, images: torch.Tensor) -> torch.Tensor:
    """Eval mode with grad enabled: the unfolded modules (conv, BN, ReLU) as in training code."""
    with torch.enable_grad():
        return model(images).detach()


def _relative_max_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("head", ["stride4", "features"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("no_grad", [torch.no_grad, torch.inference_mode])
def test_small_folded_inference_equals_unfolded(head, batch, no_grad):
    torch.manual_seed(0)
    model = _randomise_batch_norms(HRNet(HRNetConfig.small(), head).eval())
    images = torch.randn(batch, 3, 64, 96)
    ref = _reference(model, images)
    with no_grad():
        out = model(images)
    assert out.shape == ref.shape
    assert _relative_max_error(out, ref) < 1e-5


@pytest.mark.parametrize("head", ["stride4", "features"])
def test_w64_folded_inference_equals_unfolded(head):
    """W64 at batch 1 takes the NCHW layout (``_NCHW_MIN_WIDTH``); batch 2 channels_last."""
    torch.manual_seed(0)
    model = _randomise_batch_norms(HRNet(HRNetConfig.w64(), head).eval())
    images = torch.randn(2, 3, 64, 64)
    ref = _reference(model, images)
    with torch.inference_mode():
        assert _relative_max_error(model(images[:1]), ref[:1]) < 1e-5
        assert _relative_max_error(model(images), ref) < 1e-5


def test_folded_inference_runs_no_batch_norm_and_keeps_state_dict():
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.__name__)
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    model = _randomise_batch_norms(HRNet(HRNetConfig.small(), "features").eval())
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        model(images)  # folds
        with _Ops() as ops:
            model(images)  # cached
    ops = [n.split(".")[0] for n in ops.names]
    assert not [n for n in ops if "batch_norm" in n or n in ("rsqrt", "_to_copy", "contiguous")]
    assert ops.count("to") == 1  # the images, to channels_last
    assert sum(n in ("conv2d", "convolution") for n in ops) == sum(
        isinstance(m, torch.nn.Conv2d) for m in model.modules())
    state = model.state_dict()
    assert list(state) == list(keys)
    assert all(torch.equal(state[k], keys[k]) for k in keys)


def test_folded_cache_follows_in_place_and_loaded_changes():
    torch.manual_seed(0)
    model = _randomise_batch_norms(HRNet(HRNetConfig.small(), "stride4").eval())
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        before = model(images)
    with torch.no_grad():  # in place, same storage: only the version counter tells
        model.stage4[0].branches[0][0].bn2.running_mean.add_(0.5)
        model.bn1.running_var.mul_(2.0)
    ref = _reference(model, images)
    with torch.inference_mode():
        after = model(images)
    assert _relative_max_error(after, before) > 1e-3
    assert _relative_max_error(after, ref) < 1e-5

    other = _randomise_batch_norms(HRNet(HRNetConfig.small(), "stride4").eval(), seed=1)
    model.load_state_dict(other.state_dict())
    with torch.inference_mode():
        assert _relative_max_error(model(images), _reference(other, images)) < 1e-5


def test_train_mode_is_not_folded():
    torch.manual_seed(0)
    model = _randomise_batch_norms(HRNet(HRNetConfig.small(), "stride4").train())
    images = torch.randn(2, 3, 64, 64)
    mean_before = model.bn1.running_mean.clone()
    with torch.no_grad():  # train mode: batch statistics, running statistics updated
        out = model(images)
    assert not torch.equal(model.bn1.running_mean, mean_before)
    model.eval()
    with torch.no_grad():
        assert _relative_max_error(model(images), out) > 1e-3


@pytest.mark.parametrize("head", ["stride4", "features"])
def test_small_bf16_folded_inference_close_to_fp32(head):
    """bf16 weights (as the pipeline stores them) under CPU autocast; no layout or weight copies."""
    from sahmr_ros.networks.precision import store_weights_in

    torch.manual_seed(0)
    model = _randomise_batch_norms(HRNet(HRNetConfig.small(), head).eval())
    images = torch.randn(2, 3, 64, 64)
    ref = _reference(model, images)
    store_weights_in([model], torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        unfolded = _reference(model, images).float()
        with torch.inference_mode():
            model(images)  # builds the cache
            with torch.profiler.profile() as prof:
                out = model(images)
    copies = [e.key for e in prof.key_averages() if e.key in ("aten::_to_copy", "aten::copy_", "aten::clone")]
    assert [e.count for e in prof.key_averages() if e.key == "aten::_to_copy"] == [1]  # the images only
    assert "aten::clone" not in copies
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    # bf16 keeps 8 significant bits; ~30 layers deep the error is ~1% of the largest output,
    # the same as that of the unfolded bf16 network
    err, err_unfolded = _relative_max_error(out, ref), _relative_max_error(unfolded, ref)
    assert err < 4e-2 and err < 2 * err_unfolded
    assert ((out.float() - ref).norm() / ref.norm()).item() < 3e-2
