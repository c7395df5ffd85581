"""Parts of the embedded demo (``sahmr demo``).

The demo's room is one fixed seed of the procedural generator (:mod:`sahmr_ros.data.rooms`) and its
people are placed with :mod:`sahmr_ros.data.placement`; rendering and the result figure live in
:mod:`sahmr_ros.visualization`. Nothing here downloads anything.

Frames: the room and the bodies live in the map frame (REP-103, z up, metres); cameras are optical
(x right, y down, z forward) and ``T_camera_map`` maps map-frame points into the camera frame.
"""

from sahmr_ros.demo.run import DemoScene, make_demo_scene, run_demo

__all__ = ["DemoScene", "make_demo_scene", "run_demo"]
