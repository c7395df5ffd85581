"""Parts of the embedded demo (``sahmr demo``).

A procedural room and posed ground-truth bodies; rendering and the result figure live in
:mod:`sahmr_ros.visualization`. Nothing here downloads anything.

Frames: the room and the bodies live in the map frame (REP-103, z up, metres); cameras are optical
(x right, y down, z forward) and ``T_camera_map`` maps map-frame points into the camera frame.
"""

from sahmr_ros.demo.posing import PlacedBody, place_body, sitting_pose, standing_pose
from sahmr_ros.demo.scene import Anchor, ProceduralRoom, make_room, voxel_downsample

__all__ = [
    "Anchor",
    "PlacedBody",
    "ProceduralRoom",
    "make_room",
    "place_body",
    "sitting_pose",
    "standing_pose",
    "voxel_downsample",
]
