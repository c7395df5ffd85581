"""The files installed into share/sahmr_ros: config/params.yaml, launch/sahmr.launch.py, rviz/sahmr.rviz.

Runs without ROS. The launch file keeps its ``launch``/``launch_ros`` imports inside its functions, so
here it is loaded as a plain module and run against small stand-ins of those classes that record
their arguments (the real packages come with a ROS 2 install only); with a real ``launch`` the
description is also built and executed for real.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import sys
import types
from dataclasses import fields
from pathlib import Path
from typing import List

import pytest
import yaml

from sahmr_ros.ros.core import PARAMETERS, NodeParams
from sahmr_ros.tracking import PARAMETER_PREFIX, TRACKING_PARAMETERS, TrackingParams

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "config" / "params.yaml"
LAUNCH_FILE = ROOT / "launch" / "sahmr.launch.py"
RVIZ_FILE = ROOT / "rviz" / "sahmr.rviz"

DEFAULTS = {f.name: f.default for f in fields(NodeParams)}
TRACKING_DEFAULTS = {f.name: f.default for f in fields(TrackingParams)}
# NODE_ARGUMENTS kinds of the launch file -> the NodeParams field type they must feed.
KIND_TYPES = {"str": str, "path": str, "bool": bool, "float": float, "int": int, "str_list": tuple}
# Node-parameter arguments the launch file must offer (the others are optional extras).
REQUIRED_NODE_ARGUMENTS = {"checkpoint", "model_dir", "demo", "device", "precision", "score_threshold",
                           "class_ids", "image_topic", "camera_info_topic", "detections_topic", "scene_topic",
                           "map_frame", "compressed", "image_qos"}
REQUIRED_LAUNCH_ARGUMENTS = {"rviz", "scene_file", "params_file"}


# -- (a) config/params.yaml ---------------------------------------------------------------------------
def _all_params_yaml() -> dict:
    data = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    assert list(data) == ["sahmr_node"], "params.yaml must hold the sahmr_node section only"
    assert list(data["sahmr_node"]) == ["ros__parameters"]
    return data["sahmr_node"]["ros__parameters"]


def _params_yaml() -> dict:
    """The NodeParams part of params.yaml (without the nested ``tracking:`` section)."""
    return {k: v for k, v in _all_params_yaml().items() if k != PARAMETER_PREFIX}


def test_params_yaml_tracking_section_equals_trackingparams():
    section = _all_params_yaml().get(PARAMETER_PREFIX)
    if section is None:
        pytest.skip("config/params.yaml has no tracking: section yet (the node declares tracking.* with the "
                    "TrackingParams defaults either way)")
    assert set(section) == set(TRACKING_DEFAULTS), sorted(set(section) ^ set(TRACKING_DEFAULTS))
    for name, default in TRACKING_DEFAULTS.items():
        assert type(section[name]) is type(default) and section[name] == default, name
    assert TrackingParams.from_mapping(section) == TrackingParams()


def test_every_tracking_parameter_has_a_description():
    assert set(TRACKING_PARAMETERS) == set(TRACKING_DEFAULTS)
    assert all(text.strip() for text in TRACKING_PARAMETERS.values())


def test_params_yaml_holds_every_nodeparams_field_and_nothing_else():
    values = _params_yaml()
    missing = sorted(set(DEFAULTS) - set(values))
    extra = sorted(set(values) - set(DEFAULTS))
    assert not missing and not extra, f"params.yaml: missing {missing}, not NodeParams fields {extra}"


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_params_yaml_default_equals_nodeparams(name):
    value, default = _params_yaml()[name], DEFAULTS[name]
    if isinstance(default, tuple):
        # a YAML list of strings (ROS string array), never a scalar
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), value
        assert tuple(value) == default
    else:
        # exact types: ROS refuses an integer for a double parameter (write 1.0, not 1), and a
        # quoted "false" would be a string
        assert type(value) is type(default), f"{name}: {value!r} is {type(value).__name__}, " \
                                             f"NodeParams has {type(default).__name__}"
        assert value == default


def test_params_yaml_builds_the_default_nodeparams():
    assert NodeParams.from_mapping(_params_yaml()) == NodeParams()


def test_every_parameter_has_a_description_and_a_comment_with_it():
    assert set(PARAMETERS) == set(DEFAULTS)
    lines = PARAMS_FILE.read_text(encoding="utf-8").splitlines()
    comments: dict[str, str] = {}
    block: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            text = stripped.lstrip("#").strip()
            if not text.startswith("--"):  # section rulers
                block.append(text)
            continue
        if line.startswith("    ") and ":" in stripped:
            comments[stripped.split(":")[0]] = " ".join(block)
        block = []
    for name, description in PARAMETERS.items():
        assert PARAMETERS[name].strip(), f"{name}: empty description"
        assert " ".join(comments.get(name, "").split()).startswith(" ".join(description.split())), \
            f"params.yaml: the comment above {name} should start with its PARAMETERS text {description!r}"


# -- (b) launch/sahmr.launch.py: static checks --------------------------------------------------------
def _launch_tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(encoding="utf-8"), filename=str(LAUNCH_FILE))


def _launch_constant(name: str):
    for node in _launch_tree().body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{LAUNCH_FILE.name}: no top-level {name} = <literal>")


def test_launch_file_is_python_without_top_level_ros_imports():
    tree = _launch_tree()
    compile(tree, str(LAUNCH_FILE), "exec")
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            top_level.add((node.module or "").split(".")[0])
    assert not top_level & {"launch", "launch_ros", "ament_index_python", "rclpy"}, top_level
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert {"generate_launch_description", "launch_setup", "node_overrides"} <= functions


def test_launch_node_arguments_are_nodeparams_fields_of_matching_type():
    node_arguments = _launch_constant("NODE_ARGUMENTS")
    launch_arguments = _launch_constant("LAUNCH_ARGUMENTS")
    assert REQUIRED_NODE_ARGUMENTS <= set(node_arguments), REQUIRED_NODE_ARGUMENTS - set(node_arguments)
    assert REQUIRED_LAUNCH_ARGUMENTS <= set(launch_arguments)
    assert not set(launch_arguments) & set(DEFAULTS), "a NodeParams field must be a NODE_ARGUMENTS entry"
    for name, (kind, help_text) in node_arguments.items():
        assert name in DEFAULTS, f"NODE_ARGUMENTS: {name} is not a sahmr_node parameter"
        assert isinstance(DEFAULTS[name], KIND_TYPES[kind]), f"{name}: kind {kind} vs {DEFAULTS[name]!r}"
        assert help_text.strip()
    assert _launch_constant("TRACKING_PREFIX") == PARAMETER_PREFIX
    tracking_arguments = _launch_constant("TRACKING_ARGUMENTS")
    assert {"publish_smoothed"} <= set(tracking_arguments)
    assert not set(tracking_arguments) & (set(node_arguments) | set(launch_arguments))
    for name, (kind, help_text) in tracking_arguments.items():
        assert name in TRACKING_DEFAULTS, f"TRACKING_ARGUMENTS: {name} is not a TrackingParams field"
        assert isinstance(TRACKING_DEFAULTS[name], KIND_TYPES[kind]) and help_text.strip(), name
    assert launch_arguments["rviz"][0] == "false"
    assert launch_arguments["scene_file"][0] == ""
    assert launch_arguments["params_file"][0] == "@share/config/params.yaml"
    assert launch_arguments["rviz_config"][0] == "@share/rviz/sahmr.rviz"


# -- (b) launch/sahmr.launch.py: run against recording stand-ins --------------------------------------
class _Recorded:
    """Stand-in for a launch / launch_ros class: keeps the arguments it was built with."""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs


def _load_launch_module(name: str = "sahmr_launch_under_test"):
    spec = importlib.util.spec_from_file_location(name, LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_ros(monkeypatch):
    """The launch file's module, with stand-ins for launch, launch_ros and (absent) ament_index_python."""
    stand_ins = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "OpaqueFunction", "LogInfo"],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
        "launch_ros.parameter_descriptions": ["ParameterValue"],
    }
    classes = {}
    for module_name, class_names in stand_ins.items():
        module = types.ModuleType(module_name)
        for class_name in class_names:
            classes[class_name] = type(class_name, (_Recorded,), {})
            setattr(module, class_name, classes[class_name])
        monkeypatch.setitem(sys.modules, module_name, module)
    monkeypatch.setitem(sys.modules, "ament_index_python", None)  # not installed: the checkout's files
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", None)
    return types.SimpleNamespace(module=_load_launch_module(), **classes)


def _declared(fake) -> dict:
    description = fake.module.generate_launch_description()
    assert isinstance(description, fake.LaunchDescription)
    entities = description.args[0]
    declared = [e for e in entities if isinstance(e, fake.DeclareLaunchArgument)]
    names = [e.args[0] for e in declared]
    assert len(names) == len(set(names)), "an argument is declared twice"
    opaque = [e for e in entities if isinstance(e, fake.OpaqueFunction)]
    assert len(opaque) == 1 and opaque[0].kwargs["function"] is fake.module.launch_setup
    return {e.args[0]: e.kwargs for e in declared}


def _launch(fake, **given) -> list:
    """The actions of the launch file for ``ros2 launch ... name:=value ...``."""
    configurations = {name: kw["default_value"] for name, kw in _declared(fake).items()}
    configurations.update(given)
    return fake.module.launch_setup(types.SimpleNamespace(launch_configurations=configurations))


def _nodes(fake, actions) -> dict:
    nodes = {a.kwargs["executable"]: a for a in actions if isinstance(a, fake.Node)}
    assert len(nodes) == len([a for a in actions if isinstance(a, fake.Node)]), "one node per executable"
    return nodes


def _plain(value):
    """Unwrap a ParameterValue stand-in: (value, value_type); plain values have value_type None."""
    if isinstance(value, _Recorded):
        return value.args[0], value.kwargs.get("value_type")
    return value, None


def _sahmr_parameters(fake, actions) -> tuple[str, dict]:
    """(params_file, overrides as plain values) of sahmr_node; also checks how each is typed."""
    node = _nodes(fake, actions)["sahmr_node"]
    assert node.kwargs["package"] == "sahmr_ros" and node.kwargs["name"] == "sahmr_node"
    params = node.kwargs["parameters"]
    assert isinstance(params[0], str) and len(params) in (1, 2)
    overrides = {}
    for name, value in (params[1] if len(params) == 2 else {}).items():
        plain, value_type = _plain(value)
        if isinstance(plain, str):
            assert value_type is str, f"{name}: a string must reach launch_ros as ParameterValue(value_type=str)"
        elif isinstance(plain, list):
            assert value_type == List[str], f"{name}: a string list needs ParameterValue(value_type=List[str])"
        else:
            assert value_type is None and type(plain) in (bool, int, float), (name, plain)
        overrides[name] = plain
    return params[0], overrides


def test_launch_declares_every_argument_with_empty_node_defaults(fake_ros):
    declared = _declared(fake_ros)
    module = fake_ros.module
    assert set(declared) == set(module.NODE_ARGUMENTS) | set(module.TRACKING_ARGUMENTS) | set(module.LAUNCH_ARGUMENTS)
    for name in {**module.NODE_ARGUMENTS, **module.TRACKING_ARGUMENTS}:  # empty: keep the params_file value
        assert declared[name]["default_value"] == "", name
        assert declared[name]["description"].strip()
    assert declared["params_file"]["default_value"] == str(PARAMS_FILE)  # off ROS: the checkout's file
    assert declared["rviz_config"]["default_value"] == str(RVIZ_FILE)
    assert declared["rviz"]["default_value"] == "false" and declared["scene_file"]["default_value"] == ""


def test_launch_defaults_start_the_node_with_params_file_only(fake_ros):
    actions = _launch(fake_ros)
    nodes = _nodes(fake_ros, actions)
    assert set(nodes) == {"sahmr_node"}
    params_file, overrides = _sahmr_parameters(fake_ros, actions)
    assert params_file == str(PARAMS_FILE) and overrides == {}


SAMPLES = {"str": " cpu ", "path": "~/sahmr/model.pt", "bool": "True", "float": "1", "int": "3",
           "str_list": "person, 0"}
EXPECTED = {"str": "cpu", "path": str(Path("~/sahmr/model.pt").expanduser()), "bool": True, "float": 1.0,
            "int": 3, "str_list": ["person", "0"]}


def test_every_node_argument_reaches_the_node_with_its_parameter_type(fake_ros):
    node_arguments = fake_ros.module.NODE_ARGUMENTS
    given = {name: SAMPLES[kind] for name, (kind, _) in node_arguments.items()}
    _, overrides = _sahmr_parameters(fake_ros, _launch(fake_ros, **given))
    assert set(overrides) == set(node_arguments)
    for name, (kind, _) in node_arguments.items():
        assert overrides[name] == EXPECTED[kind] and type(overrides[name]) is type(EXPECTED[kind]), name


def test_tracking_arguments_reach_the_nested_parameters(fake_ros):
    params_file, overrides = _sahmr_parameters(fake_ros, _launch(fake_ros, publish_smoothed="false", smoothing="1"))
    assert overrides == {"tracking.publish_smoothed": False, "tracking.smoothing": True}
    tracking = TrackingParams.from_mapping({k: v for k, v in overrides.items()})
    assert tracking.publish_smoothed is False and tracking.smoothing is True
    with pytest.raises(ValueError, match="publish_smoothed"):
        _launch(fake_ros, publish_smoothed="sometimes")


def test_overrides_on_top_of_params_file_make_valid_nodeparams(fake_ros):
    given = {"demo": "true", "score_threshold": "0.3", "class_ids": "[person, '0']", "compressed": "false",
             "image_topic": "/zed/image", "map_frame": "world", "image_qos": "reliable", "device": "cpu",
             "max_persons": "2"}
    params_file, overrides = _sahmr_parameters(fake_ros, _launch(fake_ros, **given))
    assert Path(params_file) == PARAMS_FILE
    values = {**_params_yaml(), **overrides}
    params = NodeParams.from_mapping(values)
    assert params.demo is True and params.compressed is False and params.max_persons == 2
    assert math.isclose(params.score_threshold, 0.3) and params.class_ids == ("person", "0")
    assert (params.image_topic, params.map_frame, params.image_qos) == ("/zed/image", "world", "reliable")


@pytest.mark.parametrize("name, text", [("demo", "maybe"), ("score_threshold", "high"), ("max_persons", "2.5"),
                                        ("class_ids", " , "), ("compressed", "yes please")])
def test_a_value_that_does_not_convert_stops_the_launch_naming_the_argument(fake_ros, name, text):
    with pytest.raises(ValueError, match=name):
        _launch(fake_ros, **{name: text})


def test_missing_params_file_stops_the_launch(fake_ros, tmp_path):
    with pytest.raises(RuntimeError, match="params_file"):
        _launch(fake_ros, params_file=str(tmp_path / "nope.yaml"))


def test_scene_file_starts_the_latcher_where_the_node_listens(fake_ros, tmp_path):
    nodes = _nodes(fake_ros, _launch(fake_ros, scene_file="/data/room.ply"))
    assert set(nodes) == {"sahmr_node", "sahmr_scene_publisher"}
    latcher = nodes["sahmr_scene_publisher"]
    assert latcher.kwargs["package"] == "sahmr_ros"
    (params,) = latcher.kwargs["parameters"]
    plain = {k: _plain(v)[0] for k, v in params.items()}
    assert plain == {"file": "/data/room.ply", "frame_id": DEFAULTS["map_frame"], "topic": DEFAULTS["scene_topic"]}

    # overrides win ...
    nodes = _nodes(fake_ros, _launch(fake_ros, scene_file="/data/room.ply", map_frame="world",
                                     scene_topic="/room/points"))
    plain = {k: _plain(v)[0] for k, v in nodes["sahmr_scene_publisher"].kwargs["parameters"][0].items()}
    assert (plain["frame_id"], plain["topic"]) == ("world", "/room/points")

    # ... else a params file of the user's is followed
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump({"sahmr_node": {"ros__parameters": {"map_frame": "odom",
                                                                      "scene_topic": "/cloud"}}}))
    nodes = _nodes(fake_ros, _launch(fake_ros, scene_file="/data/room.ply", params_file=str(own)))
    plain = {k: _plain(v)[0] for k, v in nodes["sahmr_scene_publisher"].kwargs["parameters"][0].items()}
    assert (plain["frame_id"], plain["topic"]) == ("odom", "/cloud")
    assert nodes["sahmr_node"].kwargs["parameters"][0] == str(own)


def test_rviz_and_use_sim_time(fake_ros):
    nodes = _nodes(fake_ros, _launch(fake_ros, rviz="true", scene_file="/data/room.ply", use_sim_time="true"))
    assert set(nodes) == {"sahmr_node", "sahmr_scene_publisher", "rviz2"}
    assert nodes["rviz2"].kwargs["package"] == "rviz2"
    assert nodes["rviz2"].kwargs["arguments"] == ["-d", str(RVIZ_FILE)]
    for node in nodes.values():
        merged = {k: v for p in node.kwargs["parameters"] if isinstance(p, dict) for k, v in p.items()}
        assert merged.get("use_sim_time") is True, node.kwargs["executable"]
    nodes = _nodes(fake_ros, _launch(fake_ros, rviz="false"))
    assert "rviz2" not in nodes


def test_launch_with_real_launch_packages():
    try:
        import launch_ros.actions
        from launch import LaunchContext, LaunchDescription
        from launch.actions import DeclareLaunchArgument, OpaqueFunction
    except ImportError:  # also when `launch` resolves to the checkout's launch/ folder
        pytest.skip("launch and launch_ros come with a ROS 2 install; they are not installable off ROS "
                    "(no PyPI wheels), so the launch file runs against stand-ins here")
    module = _load_launch_module("sahmr_launch_real")
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription)
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert {e.name for e in declared} == (set(module.NODE_ARGUMENTS) | set(module.TRACKING_ARGUMENTS)
                                          | set(module.LAUNCH_ARGUMENTS))
    context = LaunchContext()
    context.launch_configurations.update({"demo": "true", "class_ids": "person,0", "score_threshold": "1",
                                          "scene_file": "/data/room.ply", "rviz": "true"})
    for entity in declared:
        entity.execute(context)  # fills in the defaults of the arguments not given
    (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    actions = opaque.execute(context)
    assert len([a for a in actions if isinstance(a, launch_ros.actions.Node)]) == 3


# -- (c) rviz/sahmr.rviz ------------------------------------------------------------------------------
def _rviz() -> dict:
    return yaml.safe_load(RVIZ_FILE.read_text(encoding="utf-8"))


def _display(topic: str) -> dict:
    matches = [d for d in _rviz()["Visualization Manager"]["Displays"]
               if isinstance(d.get("Topic"), dict) and d["Topic"].get("Value") == topic]
    assert len(matches) == 1, f"sahmr.rviz: expected one display of {topic}, found {len(matches)}"
    assert matches[0]["Enabled"] is True
    return matches[0]


def test_rviz_config_structure():
    config = _rviz()
    assert {"Panels", "Visualization Manager", "Window Geometry"} <= set(config)
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == NodeParams().map_frame == "map"
    classes = [d["Class"] for d in manager["Displays"]]
    assert all(c.startswith("rviz_default_plugins/") for c in classes), classes
    assert {"rviz_default_plugins/Grid", "rviz_default_plugins/TF"} <= set(classes)
    assert all(p["Class"].startswith("rviz_common/") for p in config["Panels"])
    view = manager["Views"]["Current"]
    assert view["Class"] == "rviz_default_plugins/Orbit"
    assert 3 <= view["Distance"] <= 8 and view["Focal Point"] == {"X": 0, "Y": 0, "Z": 0}
    assert view["Target Frame"] == "<Fixed Frame>"


def test_rviz_meshes_display():
    assert _display(DEFAULTS["meshes_topic"])["Class"] == "rviz_default_plugins/MarkerArray"


def test_rviz_contacts_display_colours_by_the_rgb_field():
    contacts = _display(DEFAULTS["contacts_topic"])
    assert contacts["Class"] == "rviz_default_plugins/PointCloud2"
    assert contacts["Color Transformer"] == "RGB8"  # reads the packed float32 `rgb` field
    assert contacts["Channel Name"] == "rgb"
    assert contacts["Style"] == "Points" and contacts["Size (m)"] == pytest.approx(0.03)


def test_rviz_scene_display_is_transient_local():
    scene = _display(DEFAULTS["scene_topic"])
    assert scene["Class"] == "rviz_default_plugins/PointCloud2"
    assert scene["Topic"]["Durability Policy"] == "Transient Local"  # the latched scene
    assert scene["Topic"]["Reliability Policy"] == "Reliable"
    assert scene["Color Transformer"] in ("AxisColor", "FlatColor")


def test_rviz_image_display():
    image = _display(DEFAULTS["image_topic"])
    assert image["Class"] == "rviz_default_plugins/Image"
    assert image["Topic"]["Reliability Policy"] == "Best Effort"  # receives sensor-data and reliable
