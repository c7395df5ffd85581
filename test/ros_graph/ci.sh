#!/usr/bin/env bash
# CI job "real ROS 2 graph" (about 1.5 min on a clean 2-core machine, 1.5 GB of disk):
#   1. the ROS graph venv .ros-venv (ros-jazzy wheels, vision_msgs / tf2_msgs / sahmr_ros messages
#      built with cmake, torch CPU, spconv, this repository), see setup_ros_venv.sh;
#   2. pytest of test/ros_graph in it, strict (a missing rclpy or message package fails, not skips);
#   3. `colcon build` of this repository as an ament_cmake package against that venv.
# Independent of `make test` (the main suite in .venv); both fit in one CI run.
set -euo pipefail
cd "$(dirname "$0")/../.."
test/ros_graph/setup_ros_venv.sh
# -P: the checkout's sahmr_ros/ must not shadow the installed one (which carries sahmr_ros.msg).
SAHMR_REQUIRE_ROS_GRAPH=1 .ros-venv/bin/python -P -m pytest -q -p no:cacheprovider test/ros_graph
test/ros_graph/colcon_build.sh
