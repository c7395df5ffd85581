"""ROS 2 side of sahmr_ros: message conversions, type stores, synchronisation and the node.

Every module here except ``node.py`` (and the scene latcher executable) imports without ROS: no
rclpy at module import. The node and the offline bag tool (``sahmr bag``, rosbags) share the same
conversions, so what a bag test checks is what the node publishes.

* :mod:`sahmr_ros.ros.messages`: message construction backends (``RosbagsFactory``,
  ``RclpyFactory``) and stamp helpers.
* :mod:`sahmr_ros.ros.interfaces`: rosbags type stores with vision_msgs and ``sahmr_ros/msg/*``.
* :mod:`sahmr_ros.ros.conversions`: messages <-> numpy (images, clouds, camera info, detections,
  transforms) and the node's outputs (mesh markers, HumanMeshArray, diagnostics).

Frames: camera optical frame (x right, y down, z forward) for images and intrinsics; the map frame
(REP-103, z up) for every output, in metres.
"""
