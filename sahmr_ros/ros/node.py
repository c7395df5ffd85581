"""``sahmr_node``: the rclpy shell around :class:`~sahmr_ros.ros.core.PerceptionCore`.

Subscribes image (or compressed image), camera_info, detections and the latched scene; publishes
meshes (MarkerArray), contacts (PointCloud2), humans (HumanMeshArray) and diagnostics, all in the
map frame with the image's stamp. Parameters: :data:`sahmr_ros.ros.core.PARAMETERS` (defaults in
``config/params.yaml``) and the nested ``tracking.*`` of :data:`sahmr_ros.tracking.TRACKING_PARAMETERS`.

Every callback is a method of :class:`~sahmr_ros.ros.callbacks.NodeCallbacks` (ROS-free, shared with
``sahmr bag`` and tested without rclpy); none lets an exception escape. The pipeline runs in its
latest-frame worker thread, which always takes the newest synchronised frame (older waiting frames
are dropped and counted). TF: ``tf2_ros.Buffer`` when tf2_ros is installed; otherwise (e.g. rclpy
from pip wheels) the callbacks' :class:`~sahmr_ros.ros.sync.TransformBuffer` fed from ``/tf`` and
``/tf_static``.
"""

from __future__ import annotations

import sys
from dataclasses import fields

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.time import Time

from sahmr_ros.errors import SahmrError
from sahmr_ros.ros.callbacks import NodeCallbacks
from sahmr_ros.ros.conversions import transform_to_matrix
from sahmr_ros.ros.core import PARAMETERS, FrameOutput, NodeParams, PerceptionCore, build_pipeline
from sahmr_ros.ros.messages import RclpyFactory
from sahmr_ros.ros.sync import TransformUnavailable, tf2_extrapolation_reason
from sahmr_ros.tracking import PARAMETER_PREFIX, TRACKING_PARAMETERS, TrackingParams

__all__ = ["SahmrNode", "main", "spin_node", "LATCHED_QOS"]

LATCHED_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE_QOS = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


def _declare(node: Node) -> NodeParams:
    """Declare every parameter of :data:`PARAMETERS` (read-only, with its description)."""
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for f in fields(NodeParams):
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        if isinstance(default, list) and not default:
            from rclpy.parameter import Parameter

            default = Parameter.Type.STRING_ARRAY  # an empty list has no type of its own
        descriptor = ParameterDescriptor(description=PARAMETERS[f.name], read_only=True)
        value = node.declare_parameter(f.name, default, descriptor).value
        values[f.name] = [] if value is None and isinstance(f.default, tuple) else value
    return NodeParams.from_mapping(values)


def _declare_tracking(node: Node) -> TrackingParams:
    """Declare the ``tracking.*`` parameters of :data:`TRACKING_PARAMETERS` (read-only, with descriptions)."""
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for f in fields(TrackingParams):
        descriptor = ParameterDescriptor(description=TRACKING_PARAMETERS[f.name], read_only=True)
        values[f.name] = node.declare_parameter(f"{PARAMETER_PREFIX}.{f.name}", f.default, descriptor).value
    return TrackingParams.from_mapping(values)


class _Tf2Lookup:
    """T_target_source from tf2_ros (waits up to the timeout, in the worker thread)."""

    def __init__(self, node: Node, timeout_s: float):
        import tf2_ros

        self._tf2 = tf2_ros
        self.buffer = tf2_ros.Buffer(cache_time=Duration(seconds=max(10.0, 4 * timeout_s)))
        self.listener = tf2_ros.TransformListener(self.buffer, node)
        self.timeout = Duration(seconds=timeout_s)

    def __call__(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        tf2 = self._tf2
        try:
            ts = self.buffer.lookup_transform(target, source, Time(nanoseconds=stamp_ns), timeout=self.timeout)
        except tf2.ExtrapolationException as exc:  # one type for both directions: its text says which
            raise TransformUnavailable(target, source, stamp_ns, tf2_extrapolation_reason(str(exc)), str(exc)) from None
        except tf2.ConnectivityException as exc:
            raise TransformUnavailable(target, source, stamp_ns, TransformUnavailable.NOT_CONNECTED, str(exc)) from None
        except tf2.TransformException as exc:  # LookupException and the rest
            raise TransformUnavailable(target, source, stamp_ns, TransformUnavailable.UNKNOWN_FRAME, str(exc)) from None
        return transform_to_matrix(ts.transform)


class SahmrNode(Node):
    """The ROS 2 node (module docstring). Raises at construction when the model cannot be loaded."""

    def __init__(self, **kwargs):
        super().__init__("sahmr_node", **kwargs)
        self.params = _declare(self)
        self.tracking = _declare_tracking(self)
        p = self.params
        self.factory = RclpyFactory()
        log = self.get_logger()
        self.pipeline = build_pipeline(p)
        demo = "demo:=true, " if p.demo and not p.checkpoint else ""
        log.info(f"weights: {demo}{self.pipeline.weights_description}; device {self.pipeline.device}")
        self.core = PerceptionCore(self.pipeline, p, self.factory, tracking=self.tracking)
        try:
            tf2_lookup = _Tf2Lookup(self, p.tf_timeout_s)
            tf_source = "tf2_ros"
        except ImportError:
            tf2_lookup = None
            tf_source = "/tf and /tf_static (tf2_ros not installed)"
        self.callbacks = NodeCallbacks(
            self.core, self._publish, self._emit, lookup=tf2_lookup, tf_wait_s=p.tf_timeout_s,
            on_time_jump=tf2_lookup.buffer.clear if tf2_lookup else None)
        cb = self.callbacks

        image_qos = qos_profile_sensor_data if p.image_qos == "sensor_data" else RELIABLE_QOS
        msg = self.factory.message_class
        image_type = msg("sensor_msgs/msg/CompressedImage" if p.compressed else "sensor_msgs/msg/Image")
        self.create_subscription(image_type, p.image_topic, lambda m: cb.on_input("image", m), image_qos)
        self.create_subscription(msg("sensor_msgs/msg/CameraInfo"), p.camera_info_topic,
                                 lambda m: cb.on_input("camera_info", m), image_qos)
        self.create_subscription(msg("vision_msgs/msg/Detection2DArray"), p.detections_topic,
                                 lambda m: cb.on_input("detections", m), image_qos)
        self.create_subscription(msg("sensor_msgs/msg/PointCloud2"), p.scene_topic, cb.on_scene, LATCHED_QOS)
        if tf2_lookup is None:
            tf_message = msg("tf2_msgs/msg/TFMessage")
            dynamic_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            self.create_subscription(tf_message, "/tf", lambda m: cb.on_tf(m, False), dynamic_qos)
            self.create_subscription(tf_message, "/tf_static", lambda m: cb.on_tf(m, True), LATCHED_QOS)

        self.pub_meshes = self.create_publisher(msg("visualization_msgs/msg/MarkerArray"), p.meshes_topic, 5)
        self.pub_contacts = self.create_publisher(msg("sensor_msgs/msg/PointCloud2"), p.contacts_topic, 5)
        self.pub_humans = self.create_publisher(msg("sahmr_ros/msg/HumanMeshArray"), p.humans_topic, 5)
        self.pub_diag = self.create_publisher(msg("diagnostic_msgs/msg/DiagnosticArray"), p.diagnostics_topic, 5)
        if p.diagnostics_period_s > 0:
            self.create_timer(p.diagnostics_period_s, self._publish_diagnostics)
        log.info(f"listening: image {p.image_topic}{' (compressed)' if p.compressed else ''}, camera_info "
                 f"{p.camera_info_topic}, detections {p.detections_topic}, scene {p.scene_topic}; TF from "
                 f"{tf_source}; publishing {self.core.status()[2]['published']} meshes "
                 f"in frame {p.map_frame!r}")

    def _emit(self, level: str, line: str) -> None:
        # one call site per severity: rclpy's logger refuses a call site whose severity changes
        # ("Logger severity cannot be changed between calls")
        logger = self.get_logger()
        if level == "error":
            logger.error(line)
        elif level == "info":
            logger.info(line)
        else:
            logger.warning(line)

    def _publish(self, out: FrameOutput) -> None:
        self.pub_meshes.publish(out.markers)
        self.pub_contacts.publish(out.contacts)
        self.pub_humans.publish(out.humans)

    def _publish_diagnostics(self) -> None:
        msg = self.callbacks.diagnostics_message(self.get_clock().now().nanoseconds)
        if msg is not None:
            self.pub_diag.publish(msg)

    def destroy_node(self) -> None:
        self.callbacks.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run ``ros2 run sahmr_ros sahmr_node``.

    Exits with status 1 and one clear line when the model cannot be loaded (no checkpoint, missing
    model files).
    """
    from sahmr_ros.cli import quiet_third_party_logs

    quiet_third_party_logs()
    return spin_node(SahmrNode, "sahmr_node", args)


def spin_node(make_node, name: str, args: list[str] | None = None) -> int:
    """Init rclpy, build the node with ``make_node()`` and spin it until shutdown.

    A :class:`SahmrError` while building (bad parameters, missing files) is logged as one fatal
    line naming the problem, and the exit status is 1; Ctrl-C ends with status 0.
    """
    rclpy.init(args=args)
    try:
        node = make_node()
    except SahmrError as exc:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
