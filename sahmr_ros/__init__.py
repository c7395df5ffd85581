"""sahmr_ros: scene-aware human mesh recovery (SA-HMR, CVPR 2023) for robots.

Public API (imported lazily, so ``import sahmr_ros.constants`` stays light)::

    from sahmr_ros import Pipeline, PipelineConfig, FrameResult, PersonResult, Scene
    from sahmr_ros import SAHMR, SAHMRConfig, InputError, ModelFilesMissingError, CheckpointError
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Pipeline": "sahmr_ros.pipeline",
    "PipelineConfig": "sahmr_ros.pipeline",
    "FrameResult": "sahmr_ros.pipeline",
    "PersonResult": "sahmr_ros.pipeline",
    "SkippedPerson": "sahmr_ros.pipeline",
    "Scene": "sahmr_ros.scene",
    "SAHMR": "sahmr_ros.networks.sahmr",
    "SAHMRConfig": "sahmr_ros.networks.sahmr",
    "SahmrError": "sahmr_ros.errors",
    "InputError": "sahmr_ros.errors",
    "ModelFilesMissingError": "sahmr_ros.errors",
    "CheckpointError": "sahmr_ros.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sahmr_ros' has no attribute {name!r}")
