"""Rendering and pictures: one home for every image sahmr_ros makes (no ROS imports).

* :mod:`~sahmr_ros.visualization.render`: coloured triangle meshes rendered by CPU ray casting
  (Open3D), with depth, instance and face maps; pinhole camera helpers and lens distortion.
* :mod:`~sahmr_ros.visualization.figures`: the result figure of ``sahmr demo`` / ``sahmr infer``
  (image overlay and top view) and the evaluation plots (error CDFs, contact parts, sample grid).

Names are imported lazily, so importing the figures does not load Open3D until a mesh is drawn. The
render function itself is ``sahmr_ros.visualization.render.render`` (``render`` here is its module).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Light": "render",
    "Mesh": "render",
    "Render": "render",
    "look_at_camera": "render",
    "pinhole_intrinsics": "render",
    "pixel_rays": "render",
    "project_points": "render",
    "silhouettes": "render",
    "ImageOverlay": "figures",
    "SamplePanel": "figures",
    "TopView": "figures",
    "overlay_meshes": "figures",
    "plot_contact_parts": "figures",
    "plot_error_cdfs": "figures",
    "plot_sample_grid": "figures",
    "write_result_figure": "figures",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"sahmr_ros.visualization.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'sahmr_ros.visualization' has no attribute {name!r}")
