"""rosbags type stores that know every message sahmr_ros reads or writes, without a ROS install.

* :func:`make_typestore` -- ROS 2 Jazzy or Humble standard messages, plus the vision_msgs 4.x
  (Humble / Jazzy) detection types and ``sahmr_ros/msg/HumanMesh`` / ``HumanMeshArray``, read from
  ``msg/*.msg`` (the one source of truth; installed as package data under ``sahmr_ros/ros/msg``).
* :func:`make_legacy_vision_typestore` -- the Foxy type store with the older vision_msgs layouts
  (3.x: ``bbox.center`` is a ``geometry_msgs/Pose2D`` with ``x, y, theta``; 2.x additionally puts
  ``id`` / ``score`` directly in the hypothesis and ``tracking_id`` in the detection), for tests of
  the duck-typed readers.

vision_msgs is in no rosbags type store, so its definitions are written here from the released
layouts (field names and types only).
"""

from __future__ import annotations

from pathlib import Path

from rosbags.typesys import Stores, get_typestore, get_types_from_msg
from rosbags.typesys.store import Typestore

from sahmr_ros.errors import InputError

__all__ = [
    "MSG_DIR",
    "HUMAN_MESH",
    "HUMAN_MESH_ARRAY",
    "DETECTION_2D_ARRAY",
    "make_typestore",
    "make_legacy_vision_typestore",
    "read_interface_definitions",
]

MSG_DIR = Path(__file__).resolve().parent / "msg"  # symlink to <repo>/msg, or the installed copies
HUMAN_MESH = "sahmr_ros/msg/HumanMesh"
HUMAN_MESH_ARRAY = "sahmr_ros/msg/HumanMeshArray"
DETECTION_2D_ARRAY = "vision_msgs/msg/Detection2DArray"

_DISTROS = {"jazzy": Stores.ROS2_JAZZY, "humble": Stores.ROS2_HUMBLE}
_INTERFACES = ("HumanMesh", "HumanMeshArray")

# vision_msgs 4.x (Humble, Jazzy): BoundingBox2D.center is a vision_msgs/Pose2D.
_VISION_4 = {
    "Point2D": "float64 x\nfloat64 y\n",
    "Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "ObjectHypothesis": "string class_id\nfloat64 score\n",
    "ObjectHypothesisWithPose": "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
    "Detection2D": "std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\nstring id\n",
    "Detection2DArray": "std_msgs/Header header\nDetection2D[] detections\n",
}
# vision_msgs 3.x (Galactic, late Foxy): the box centre is a geometry_msgs/Pose2D (x, y, theta).
_VISION_3 = {
    "BoundingBox2D": "geometry_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "ObjectHypothesis": "string class_id\nfloat64 score\n",
    "ObjectHypothesisWithPose": "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
    "Detection2D": "std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\nstring id\n",
    "Detection2DArray": "std_msgs/Header header\nDetection2D[] detections\n",
}
# vision_msgs 2.x (the Foxy release): flat hypotheses, tracking id, the source image inline.
_VISION_2 = {
    "BoundingBox2D": "geometry_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "ObjectHypothesis": "string id\nfloat64 score\n",
    "ObjectHypothesisWithPose": "string id\nfloat64 score\ngeometry_msgs/PoseWithCovariance pose\n",
    "Detection2D": (
        "std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\n"
        "sensor_msgs/Image source_img\nbool is_tracking\nstring tracking_id\n"
    ),
    "Detection2DArray": "std_msgs/Header header\nDetection2D[] detections\n",
}


def _register(ts: Typestore, package: str, definitions: dict[str, str]) -> None:
    types = {}
    for name, text in definitions.items():
        types.update(get_types_from_msg(text, f"{package}/msg/{name}"))
    ts.register(types)


def read_interface_definitions(msg_dir: Path | str | None = None) -> dict[str, str]:
    """Text of ``HumanMesh.msg`` and ``HumanMeshArray.msg``, keyed by message name.

    Args:
        msg_dir: folder holding the files; default :data:`MSG_DIR`.

    Raises:
        InputError: a file is missing (a broken install: reinstall the package).
    """
    folder = Path(msg_dir) if msg_dir is not None else MSG_DIR
    out = {}
    for name in _INTERFACES:
        path = folder / f"{name}.msg"
        if not path.is_file():
            raise InputError(
                f"{path}: interface definition not found; sahmr_ros/ros/msg must hold HumanMesh.msg and "
                "HumanMeshArray.msg (reinstall sahmr_ros, or restore the sahmr_ros/ros/msg -> ../../msg symlink)"
            )
        out[name] = path.read_text(encoding="utf-8")
    return out


def make_typestore(distro: str = "jazzy") -> Typestore:
    """Build a rosbags type store for ``distro`` with vision_msgs 4.x and sahmr_ros/msg registered.

    Args:
        distro: ``"jazzy"`` or ``"humble"`` (the standard message definitions of that release).

    Returns:
        A fresh :class:`rosbags.typesys.store.Typestore`; use ``serialize_cdr`` /
        ``deserialize_cdr`` or hand it to :class:`sahmr_ros.ros.messages.RosbagsFactory`.

    Raises:
        InputError: unknown distro, or the msg files are missing.
    """
    key = str(distro).lower()
    if key not in _DISTROS:
        raise InputError(f"distro: {distro!r} is not supported (use {' or '.join(_DISTROS)})")
    ts = get_typestore(_DISTROS[key])
    _register(ts, "vision_msgs", _VISION_4)
    _register(ts, "sahmr_ros", read_interface_definitions())
    return ts


def make_legacy_vision_typestore(version: int = 3) -> Typestore:
    """Build the ROS 2 Foxy type store with an older vision_msgs layout registered (for tests).

    Args:
        version: 3 (``bbox.center`` = ``geometry_msgs/Pose2D``, ``results[i].hypothesis.class_id``,
            ``id``) or 2 (the same box, ``results[i].id`` / ``score``, ``tracking_id``).

    Raises:
        InputError: any other version.
    """
    layouts = {3: _VISION_3, 2: _VISION_2}
    if version not in layouts:
        raise InputError(f"version: {version!r} is not a legacy vision_msgs layout (use 3 or 2; 4 is make_typestore)")
    ts = get_typestore(Stores.ROS2_FOXY)
    _register(ts, "vision_msgs", layouts[version])
    return ts
