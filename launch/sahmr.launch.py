"""Launch ``sahmr_node``, and optionally the scene latcher and RViz.

Examples::

    ros2 launch sahmr_ros sahmr.launch.py checkpoint:=/data/sahmr.pt scene_file:=/data/room.ply rviz:=true
    ros2 launch sahmr_ros sahmr.launch.py demo:=true scene_file:=room.ply rviz:=true   # shipped synthetic-data weights
    ros2 launch sahmr_ros sahmr.launch.py --show-args                                  # every argument

Parameters of ``sahmr_node``: first ``params_file`` (default: the installed
``share/sahmr_ros/config/params.yaml``, which holds every parameter with its default), then the
node-parameter arguments of :data:`NODE_ARGUMENTS` that were given a non-empty value, and those of
:data:`TRACKING_ARGUMENTS` (``publish_smoothed:=false`` sets the nested parameter
``tracking.publish_smoothed``; the other ``tracking.*`` parameters are set in a params file). These
arguments default to the empty string, which means "keep the params_file value": a params file of
your own is never silently overridden by a launch default. (The effective defaults, e.g. demo false,
compressed false, score_threshold 0.5, are those of config/params.yaml.) Parameters without a
launch argument (slop_s, tf_timeout_s, meshes_topic, ...) are set in a params file.

Types: launch arguments are strings. Each node-parameter argument is converted to its parameter's
type at launch time (an OpaqueFunction, :func:`node_overrides`), and the node receives native values:

- bool: true/false (also 1/0, any case), as launch conditions read them;
- float: any number; ``score_threshold:=1`` becomes 1.0, so the double parameter never receives an
  integer (which rclpy refuses);
- int: an integer;
- str / path: the text without surrounding whitespace (``0`` stays the string "0"); paths also
  expand a leading ``~``;
- str_list (class_ids): comma-separated, e.g. ``class_ids:=person`` or ``class_ids:=person,0``;
  surrounding brackets and quotes are accepted too (``class_ids:="[person, '0']"``). Elements stay
  strings. The empty list ("every class") cannot be given here, since the empty argument means
  "keep params_file": put ``class_ids: []`` in a params file of your own for that.

Strings and string lists go to launch_ros wrapped in ``ParameterValue(value_type=str / List[str])``,
so launch_ros never re-reads them as YAML (where ``0`` would become an integer). A value that does
not convert stops the launch with a message naming the argument.

Topics are parameters of the node (image_topic:=..., scene_topic:=...); ROS remapping works as
well (``remappings=`` in a launch file of your own, or ``ros2 run sahmr_ros sahmr_node --ros-args
-r /camera/image_raw:=/zed/image``), applied to the parameter's topic name.

``scene_file`` starts ``sahmr_scene_publisher`` with file:=scene_file, frame_id:=<map_frame> and
topic:=<scene_topic>, both taken from the override or else from params_file, so the latcher always
publishes where the node listens. ``rviz:=true`` starts rviz2 with ``rviz_config`` (default: the
installed rviz/sahmr.rviz). ``use_sim_time``, when given, is set on every node started here (e.g.
true with ``ros2 bag play --clock``).

Run from a source checkout (package not installed), the default params_file and rviz_config are
taken from the checkout next to this file.

Only this file imports ``launch``/``launch_ros`` (inside the functions below, so the pure helpers
stay importable and testable without ROS).
"""

import os

import yaml

PACKAGE = "sahmr_ros"
NODE_NAME = "sahmr_node"

# Launch argument (= sahmr_node parameter of the same name): (type the string converts to, help).
# A test checks that each is a NodeParams field of a matching type.
NODE_ARGUMENTS = {
    "checkpoint": ("path", "sahmr_ros checkpoint (.pt); required unless demo:=true"),
    "model_dir": ("path", "directory with SMPL and the official body files (models/README.md)"),
    "demo": ("bool", "true: embedded default weights (synthetic body; small preset trained on synthetic data, "
                     "sahmr_ros/weights/MODEL_CARD.md) instead of a checkpoint"),
    "device": ("str", "auto, cpu, cuda or cuda:N"),
    "precision": ("str", "fp32, fp16 / bf16 autocast (geometry stays float32; CPU or CUDA), or auto: bf16 on CPUs "
                         "with AVX512-BF16 / AMX, else fp32"),
    "score_threshold": ("float", "detections scoring below this are ignored"),
    "class_ids": ("str_list", "comma-separated detection classes that are people, e.g. person or person,0"),
    "max_persons": ("int", "at most this many people per frame"),
    "image_topic": ("str", "sensor_msgs/Image input (CompressedImage when compressed:=true)"),
    "compressed": ("bool", "true: subscribe to a sensor_msgs/CompressedImage"),
    "camera_info_topic": ("str", "sensor_msgs/CameraInfo of the image"),
    "detections_topic": ("str", "vision_msgs/Detection2DArray person boxes"),
    "scene_topic": ("str", "latched sensor_msgs/PointCloud2 of the room (map frame)"),
    "map_frame": ("str", "frame of the scene and of every output"),
    "image_qos": ("str", "sensor_data (best effort) or reliable"),
    "distortion": ("str", "non-zero camera_info.d: undistort, rectified or refuse"),
    "mesh_level": ("int", "vertices of the mesh markers: 6890 (full body) or 1723 (a quarter of the bytes)"),
    "mesh_every_n": ("int", "publish each person's mesh marker every Nth frame of its track (1: every frame)"),
}

# Launch arguments of sahmr_node's nested tracking.* parameters (sahmr_ros.tracking.TrackingParams):
# argument -> (type, help); the node receives tracking.<argument>. A test checks the names and types.
TRACKING_PREFIX = "tracking"
TRACKING_ARGUMENTS = {
    "publish_smoothed": ("bool", "true: publish the meshes smoothed over time per track; false: the per-frame "
                                 "estimates"),
    "smoothing": ("bool", "false: track identities only, no temporal smoothing"),
}

# Other launch arguments: default value ('@share/...' = that file of the package share directory), help.
LAUNCH_ARGUMENTS = {
    "params_file": ("@share/config/params.yaml", "parameters of sahmr_node (every parameter, with its default)"),
    "rviz": ("false", "true: also start rviz2 with rviz_config"),
    "rviz_config": ("@share/rviz/sahmr.rviz", "RViz configuration file"),
    "scene_file": ("", "scene file of `sahmr scene prepare` (.npz), or a map (.ply .pcd .obj .glb .e57 .las, map "
                       "frame): also start sahmr_scene_publisher"),
    "use_sim_time": ("", "true/false: set use_sim_time on every node (empty: leave unset)"),
}

_TRUE = ("true", "1")
_FALSE = ("false", "0")


def parse_bool(name, text):
    """``true``/``1`` or ``false``/``0`` (any case) as a bool; ValueError naming ``name`` otherwise."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}:={text!r}: expected true or false")


def parse_str_list(name, text):
    """``a,b`` (or ``[a, 'b']``) as a list of non-empty strings; ValueError when nothing is left."""
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    items = [item.strip().strip('\'"').strip() for item in value.split(",")]
    items = [item for item in items if item]
    if not items:
        raise ValueError(f"{name}:={text!r}: expected a comma-separated list such as person or person,0 "
                         '(for the empty list, "every class", use class_ids: [] in a params file)')
    return items


def convert(name, kind, text):
    """Convert the launch argument string ``text`` to the native value of type ``kind`` (see NODE_ARGUMENTS)."""
    if kind == "bool":
        return parse_bool(name, text)
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{name}:={text!r}: expected a number") from None
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{name}:={text!r}: expected an integer") from None
    if kind == "str_list":
        return parse_str_list(name, text)
    if kind == "path":
        return os.path.expanduser(text)
    if kind == "str":
        return text
    raise ValueError(f"{name}: unknown argument type {kind!r}")


def node_overrides(configurations):
    """Parameter overrides of sahmr_node from the launch configurations (strings).

    Only the NODE_ARGUMENTS and TRACKING_ARGUMENTS given a non-empty value appear (surrounding
    whitespace is dropped), converted to native Python values (bool, float, int, str, list of str);
    a tracking argument ``name`` becomes the parameter ``tracking.name``.
    """
    overrides = {}
    for arguments, prefix in ((NODE_ARGUMENTS, ""), (TRACKING_ARGUMENTS, TRACKING_PREFIX + ".")):
        for name, (kind, _) in arguments.items():
            text = configurations.get(name, "")
            if text.strip():
                overrides[prefix + name] = convert(name, kind, text.strip())
    return overrides


def params_file_values(path):
    """``ros__parameters`` of sahmr_node in the params file ``path`` (``/**`` entries, then the node's)."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    values = {}
    for key in ("/**", NODE_NAME, "/" + NODE_NAME):
        section = data.get(key) if isinstance(data, dict) else None
        if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            values.update(section["ros__parameters"])
    return values


def share_directory():
    """Return the installed share/sahmr_ros, or the source checkout holding this file when not installed."""
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        from ament_index_python.packages import get_package_share_directory

        share = get_package_share_directory(PACKAGE)
    except (ImportError, LookupError):  # off ROS, or not installed (PackageNotFoundError is a KeyError)
        return checkout
    return share if os.path.isfile(os.path.join(share, "config", "params.yaml")) else checkout


def default_value(spec):
    """Resolve a LAUNCH_ARGUMENTS default: ``@share/<relative path>`` in :func:`share_directory`."""
    if spec.startswith("@share/"):
        return os.path.join(share_directory(), spec[len("@share/"):])
    return spec


def _ros_value(value):
    """Strings and string lists wrapped so that launch_ros keeps them as strings (no YAML re-read)."""
    from typing import List

    from launch_ros.parameter_descriptions import ParameterValue

    if isinstance(value, str):
        return ParameterValue(value, value_type=str)
    if isinstance(value, list):
        return ParameterValue(value, value_type=List[str])
    return value


def launch_setup(context, *args, **kwargs):
    """Build the nodes from the launch configurations of ``context`` (the OpaqueFunction body)."""
    from launch.actions import LogInfo
    from launch_ros.actions import Node

    config = context.launch_configurations
    overrides = node_overrides(config)
    params_file = os.path.expanduser(config.get("params_file", "").strip())
    if not os.path.isfile(params_file):
        raise RuntimeError(f"params_file:={params_file!r}: no such file")
    common = {}
    if config.get("use_sim_time", "").strip():
        common["use_sim_time"] = parse_bool("use_sim_time", config["use_sim_time"])

    node_parameters = [params_file]
    if overrides or common:
        node_parameters.append({name: _ros_value(value) for name, value in {**overrides, **common}.items()})
    shown = ", ".join(f"{name}={value!r}" for name, value in overrides.items()) or "none"
    actions = [
        LogInfo(msg=f"sahmr_node: params_file {params_file}; overrides: {shown}"),
        Node(package=PACKAGE, executable="sahmr_node", name=NODE_NAME, output="screen", emulate_tty=True,
             parameters=node_parameters),
    ]

    scene_file = os.path.expanduser(config.get("scene_file", "").strip())
    if scene_file:
        from_file = params_file_values(params_file)
        scene_parameters = {
            "file": scene_file,
            "frame_id": str(overrides.get("map_frame", from_file.get("map_frame", "map"))),
            "topic": str(overrides.get("scene_topic", from_file.get("scene_topic", "/scene/points"))),
            **common,
        }
        actions.append(Node(package=PACKAGE, executable="sahmr_scene_publisher", name="sahmr_scene_publisher",
                            output="screen", emulate_tty=True,
                            parameters=[{name: _ros_value(value) for name, value in scene_parameters.items()}]))

    if parse_bool("rviz", config.get("rviz", "false")):
        rviz_config = os.path.expanduser(config.get("rviz_config", "").strip())
        actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                            arguments=["-d", rviz_config],
                            parameters=[common] if common else []))
    return actions


def generate_launch_description():
    """Entry point of ``ros2 launch``: declares the arguments, then builds the nodes at launch time."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    declared = [
        DeclareLaunchArgument(name, default_value="",
                              description=f"{help_text} [{kind}; empty: the params_file value]")
        for name, (kind, help_text) in {**NODE_ARGUMENTS, **TRACKING_ARGUMENTS}.items()
    ]
    declared += [
        DeclareLaunchArgument(name, default_value=default_value(spec), description=help_text)
        for name, (spec, help_text) in LAUNCH_ARGUMENTS.items()
    ]
    return LaunchDescription(declared + [OpaqueFunction(function=launch_setup)])
