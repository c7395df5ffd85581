"""Checkpoint files: round trip and every refusal."""

from __future__ import annotations

import pytest
import torch

from sahmr_ros.checkpoint import load_checkpoint, save_checkpoint
from sahmr_ros.errors import CheckpointError


def test_round_trip(tmp_path):
    m = torch.nn.Linear(3, 2)
    p = save_checkpoint(tmp_path / "a.pt", m, "small", {"source": "unit test"})
    payload = load_checkpoint(p, expected_preset="small")
    assert payload["metadata"] == {"source": "unit test"}
    for k, v in m.state_dict().items():
        assert torch.equal(payload["state_dict"][k], v)


def test_refusals(tmp_path):
    save_checkpoint(tmp_path / "a.pt", torch.nn.Linear(3, 2), "small")
    with pytest.raises(CheckpointError, match="preset 'small' does not match"):
        load_checkpoint(tmp_path / "a.pt", expected_preset="official")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(tmp_path / "corrupt.pt")
    torch.save({"network": {}, "epoch": 30}, tmp_path / "official.pth")
    with pytest.raises(CheckpointError, match="import-checkpoint"):
        load_checkpoint(tmp_path / "official.pth")


def test_strict_state_loading_upcasts_half_storage_and_names_what_does_not_fit():
    from sahmr_ros.checkpoint import load_state_strict

    source = torch.nn.Linear(3, 2)
    half = {k: v.half() for k, v in source.state_dict().items()}
    target = torch.nn.Linear(3, 2)
    load_state_strict(target, half, "checkpoint a.pt", "small")
    assert target.weight.dtype == torch.float32 and torch.equal(target.weight, half["weight"].float())
    with pytest.raises(CheckpointError, match=r"^checkpoint a.pt: does not fit the small preset: 1 missing keys "
                                              r"\(first: \['bias'\]\), 1 unexpected keys \(first: \['extra'\]\)$"):
        load_state_strict(target, {"weight": half["weight"], "extra": half["bias"]}, "checkpoint a.pt", "small")
    with pytest.raises(CheckpointError) as err:
        load_state_strict(target, {**half, "weight": torch.zeros(4, 3)}, "checkpoint a.pt", "small")
    assert str(err.value).startswith("checkpoint a.pt: does not fit the small preset: size mismatch for weight")
    assert "\n" not in str(err.value)
