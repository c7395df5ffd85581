"""Shared fixtures: the synthetic body model directory and the official reference files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synthetic_model_dir(tmp_path_factory) -> Path:
    """A model directory holding the synthetic body (SMPL format, not SMPL) and its assets."""
    from sahmr_ros.body.synthetic import write_synthetic_model_dir

    return write_synthetic_model_dir(tmp_path_factory.mktemp("synthetic_model"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the checkout (official reference files); skips when absent."""
    path = Path(__file__).resolve().parents[2] / "shared"
    if not path.is_dir():
        pytest.skip("../shared not present: official reference files are not available")
    return path
