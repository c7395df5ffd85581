"""The demo's synthetic input as a rosbag2 (MCAP), with the topics and types a robot would record.

``/tf_static`` (map -> camera optical frame), ``/scene/points`` (latched PointCloud2 of the room,
map frame), and per frame ``/camera/image_raw`` (rgb8 Image), ``/camera/camera_info`` and
``/detections`` (vision_msgs 4.x Detection2DArray, class ``person``, tracking ids "1", "2", ...).
``sahmr demo`` runs it through ``sahmr bag``, i.e. the node's code path.
"""

from __future__ import annotations

from pathlib import Path


from sahmr_ros.ros.core import NodeParams

__all__ = ["write_demo_bag", "CAMERA_FRAME", "DEMO_START_NS"]

CAMERA_FRAME = "camera_color_optical_frame"
DEMO_START_NS = 1_700_000_000 * 1_000_000_000


def write_demo_bag(scene, path: str | Path, params: NodeParams = NodeParams(), frames: int = 3,
                   rate_hz: float = 10.0, distro: str = "jazzy", storage: str = "mcap") -> Path:
    """Write ``scene`` (a :class:`~sahmr_ros.demo.run.DemoScene`) as a rosbag2 at ``path``.

    The camera and people do not move: every frame repeats the image with a new stamp.
    ``storage``: ``"mcap"`` or ``"sqlite3"``.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    from sahmr_ros.ros.bag import latched_qos_profile
    from sahmr_ros.ros.conversions import (
        boxes_to_detections,
        intrinsics_to_camera_info,
        matrix_to_transform,
        rgb_to_image,
        xyz_to_pointcloud2,
    )
    from sahmr_ros.ros.interfaces import DETECTION_2D_ARRAY, make_typestore
    from sahmr_ros.ros.messages import RosbagsFactory, ns_to_time

    ts = make_typestore(distro)
    f = RosbagsFactory(ts)

    def header(t_ns: int, frame_id: str):
        return f.make("std_msgs/msg/Header", stamp=ns_to_time(f, t_ns), frame_id=frame_id)

    tf_static = f.make("tf2_msgs/msg/TFMessage", transforms=[
        matrix_to_transform(f, header(DEMO_START_NS, params.map_frame), CAMERA_FRAME, scene.T_map_camera)])
    cloud = xyz_to_pointcloud2(f, header(DEMO_START_NS, params.map_frame), scene.scene_points_map)
    height, width = scene.image.shape[:2]

    path = Path(path)
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as w:
        latched = [latched_qos_profile()]
        conns = {
            "/tf_static": w.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=ts,
                                           offered_qos_profiles=latched),
            params.scene_topic: w.add_connection(params.scene_topic, "sensor_msgs/msg/PointCloud2", typestore=ts,
                                                 offered_qos_profiles=latched),
            params.image_topic: w.add_connection(params.image_topic, "sensor_msgs/msg/Image", typestore=ts),
            params.camera_info_topic: w.add_connection(params.camera_info_topic, "sensor_msgs/msg/CameraInfo",
                                                       typestore=ts),
            params.detections_topic: w.add_connection(params.detections_topic, DETECTION_2D_ARRAY, typestore=ts),
        }

        def write(topic, msg, msgtype, t_ns):
            w.write(conns[topic], t_ns, ts.serialize_cdr(msg, msgtype))

        write("/tf_static", tf_static, "tf2_msgs/msg/TFMessage", DEMO_START_NS)
        write(params.scene_topic, cloud, "sensor_msgs/msg/PointCloud2", DEMO_START_NS)
        for i in range(frames):
            t = DEMO_START_NS + int((i + 1) * 1e9 / rate_hz)
            h = header(t, CAMERA_FRAME)
            image = rgb_to_image(f, h, scene.image)
            info = intrinsics_to_camera_info(f, h, scene.K, width, height)
            detections = boxes_to_detections(f, h, scene.boxes, class_ids="person", scores=0.9)
            write(params.image_topic, image, "sensor_msgs/msg/Image", t)
            write(params.camera_info_topic, info, "sensor_msgs/msg/CameraInfo", t)
            write(params.detections_topic, detections, DETECTION_2D_ARRAY, t)
    return path
