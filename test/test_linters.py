"""Style checks: stand-ins for ament_flake8 and ament_pep257.

A ROS 2 package normally runs ``ament_flake8`` and ``ament_pep257`` as tests; those need a ROS install,
so here the same checks run through the pip-installed tools: flake8 with the ``[flake8]`` section of
setup.cfg, and pydocstyle with ament_pep257's defaults (the pep257 convention, the missing-docstring
codes D100-D107 ignored). Each test skips when its tool is not importable.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FLAKE8_PATHS = ("sahmr_ros", "test", "launch", "bench")
PEP257_PATHS = ("sahmr_ros", "launch")
# ament_pep257's default: the pep257 convention with the missing-docstring codes ignored
PEP257_IGNORE = "D100,D101,D102,D103,D104,D105,D106,D107"


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install {module}); it stands in for ament's linter here")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True)


def test_flake8():
    """Flake8 (setup.cfg's [flake8]: ROS 2 style, max line length 120) reports nothing."""
    _require("flake8")
    result = _run("flake8", *FLAKE8_PATHS)
    if result.returncode != 0:
        pytest.fail(f"flake8 found issues:\n{result.stdout}{result.stderr}", pytrace=False)


def test_pep257():
    """Pydocstyle with the pep257 convention (missing docstrings allowed) reports nothing."""
    _require("pydocstyle")
    result = _run("pydocstyle", "--convention=pep257", f"--add-ignore={PEP257_IGNORE}", *PEP257_PATHS)
    if result.returncode != 0 or result.stdout.strip():
        pytest.fail(f"pydocstyle (pep257) found issues:\n{result.stdout}{result.stderr}", pytrace=False)
