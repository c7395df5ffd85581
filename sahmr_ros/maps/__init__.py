"""Maps robots produce, made ready for the pipeline: readers of their formats and ``sahmr scene prepare``.

Public API::

    from sahmr_ros.maps import read_scene_geometry, SceneGeometry, MAP_SUFFIXES
    from sahmr_ros.maps import PrepareOptions, PreparedScene, prepare_scene, write_prepared_scene
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "MAP_SUFFIXES": "sahmr_ros.maps.readers",
    "SceneGeometry": "sahmr_ros.maps.readers",
    "read_scene_geometry": "sahmr_ros.maps.readers",
    "sample_surface": "sahmr_ros.maps.readers",
    "PrepareOptions": "sahmr_ros.maps.prepare",
    "PreparedScene": "sahmr_ros.maps.prepare",
    "prepare_scene": "sahmr_ros.maps.prepare",
    "write_prepared_scene": "sahmr_ros.maps.prepare",
    "fixed_point_voxels": "sahmr_ros.maps.prepare",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
