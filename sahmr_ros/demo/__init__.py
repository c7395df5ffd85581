"""Parts of the embedded demo (``sahmr demo``).

A procedural room, a numpy rasteriser, posed ground-truth bodies and the result figure. Nothing here
downloads anything.

Frames: the room and the bodies live in the map frame (REP-103, z up, metres); cameras are optical
(x right, y down, z forward) and ``T_camera_map`` maps map-frame points into the camera frame.
"""

from sahmr_ros.demo.figure import write_demo_figure
from sahmr_ros.demo.posing import PlacedBody, place_body, sitting_pose, standing_pose
from sahmr_ros.demo.render import (
    look_at_camera,
    pinhole_intrinsics,
    project_points,
    rasterize_coverage,
    render_meshes,
)
from sahmr_ros.demo.scene import Anchor, ProceduralRoom, make_room, voxel_downsample

__all__ = [
    "Anchor",
    "PlacedBody",
    "ProceduralRoom",
    "look_at_camera",
    "make_room",
    "pinhole_intrinsics",
    "place_body",
    "project_points",
    "rasterize_coverage",
    "render_meshes",
    "sitting_pose",
    "standing_pose",
    "voxel_downsample",
    "write_demo_figure",
]
