#!/usr/bin/env bash
# `colcon build` of this repository as a ROS 2 package (ament_cmake: CMakeLists.txt + package.xml)
# against the ROS graph venv of setup_ros_venv.sh, i.e. the way a ROS user builds it in a workspace.
#
#   test/ros_graph/setup_ros_venv.sh            # once
#   test/ros_graph/colcon_build.sh [colcon build args...]
#   source .ros-venv/ws/install/setup.bash      # overlay: sahmr_ros (library + msgs) from install/
#   .ros-venv/bin/python -P -m pytest -q test/ros_graph
#
# Environment knobs: ROS_VENV (<repo>/.ros-venv), COLCON_WS (<ROS_VENV>/ws: build/, install/, log/ go
# there, never into the checkout), COLCON_TEST=1 (build with BUILD_TESTING=ON, then `colcon test`:
# the whole pytest suite under test/ as one ctest, against the installed package; minutes).
#
# The venv doubles as the underlay (the wheels install a ROS prefix into it), so AMENT_PREFIX_PATH and
# CMAKE_PREFIX_PATH point at it. colcon warns that this prefix has no local_setup.* files: harmless.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$(realpath -m "${ROS_VENV:-$REPO/.ros-venv}")"
WS="$(realpath -m "${COLCON_WS:-$VENV/ws}")"
[[ -x "$VENV/bin/python" ]] || { echo "no venv at $VENV: run test/ros_graph/setup_ros_venv.sh" >&2; exit 1; }

if [[ ! -x "$VENV/bin/colcon" ]]; then
  "$VENV/bin/python" -m pip install -q colcon-common-extensions==0.3.0 \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi

# shellcheck disable=SC1091
source "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
# The workspace sees the checkout through a symlink, src/sahmr_ros -> <repo>, and --paths builds
# exactly that package (no crawling). Why not the checkout path itself: the venv lives inside the
# checkout, and CMake refuses to export an include directory "prefixed in the source directory"
# (the venv's numpy headers, which the generated message library exports) unless it lies under the
# install prefix, which the workspace's install/ is not. Through the symlink the source directory is
# <ws>/src/sahmr_ros, which does not contain the venv.
mkdir -p "$WS/src"
ln -sfn "$REPO" "$WS/src/sahmr_ros"
BUILD_TESTING=OFF
[[ "${COLCON_TEST:-0}" == 1 ]] && BUILD_TESTING=ON
T0=$SECONDS
colcon --log-base "$WS/log" build \
  --paths "$WS/src/sahmr_ros" --build-base "$WS/build" --install-base "$WS/install" \
  --event-handlers console_direct- \
  --cmake-args -DBUILD_TESTING="$BUILD_TESTING" -DPython3_EXECUTABLE="$VENV/bin/python" \
  "$@"
echo "colcon build: $((SECONDS - T0)) s, install: $WS/install"

# The overlay must win over the copy of sahmr_ros that setup_ros_venv.sh installed into the venv.
set +u
# shellcheck disable=SC1091
source "$WS/install/setup.bash"
set -u
python -P - <<EOF
import sahmr_ros
from sahmr_ros.msg import HumanMeshArray  # noqa: F401
import sahmr_ros.ros.interfaces  # noqa: F401
assert sahmr_ros.__file__.startswith("$WS/install/"), sahmr_ros.__file__
from sahmr_ros.weights import MODEL_CARD_FILENAME, shipped_weights  # the embedded default ships installed
weights = shipped_weights()  # the checkpoint and its card, checked against each other
assert weights.checkpoint.with_name(MODEL_CARD_FILENAME).is_file(), weights.checkpoint
print("ok:", sahmr_ros.__file__, weights.checkpoint)
EOF
test -x "$WS/install/sahmr_ros/lib/sahmr_ros/sahmr_node"

if [[ "${COLCON_TEST:-0}" == 1 ]]; then
  T0=$SECONDS
  colcon --log-base "$WS/log" test --paths "$WS/src/sahmr_ros" --build-base "$WS/build" \
    --install-base "$WS/install" --event-handlers console_direct- || true
  echo "colcon test: $((SECONDS - T0)) s"
  colcon test-result --test-result-base "$WS/build" --verbose
fi
