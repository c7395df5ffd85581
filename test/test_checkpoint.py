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
