"""``sahmr_scene_publisher``: latch a scene file on ``/scene/points`` in the map frame.

Parameters: ``file`` (a ``sahmr scene prepare`` .npz, loaded as it is; or .ply .pcd .obj .glb .gltf .e57
.las .laz .npy .npz, meshes sampled on their surface at 2 cm),
``frame_id`` (default ``map``), ``topic`` (default ``/scene/points``), ``voxel_size`` (metres; 0
keeps every point, default 0.02 as the node stores it). The cloud is published once with RELIABLE +
TRANSIENT_LOCAL QoS (depth 1), so the node, RViz and late joiners all receive it.
"""

from __future__ import annotations

import sys

from rclpy.node import Node

from sahmr_ros.errors import SahmrError
from sahmr_ros.ros.conversions import xyz_to_pointcloud2
from sahmr_ros.ros.messages import RclpyFactory, ns_to_time
from sahmr_ros.ros.node import LATCHED_QOS, spin_node

__all__ = ["ScenePublisher", "load_scene_points", "main"]


def load_scene_points(path: str, voxel_size: float) -> "np.ndarray":  # noqa: F821
    """Read ``path`` (map frame) and reduce it to one point per ``voxel_size`` cell (0: unchanged)."""
    from sahmr_ros.geometry import voxel_downsample
    from sahmr_ros.io import read_point_cloud

    points = read_point_cloud(path, sample_mesh_surface=True)
    return voxel_downsample(points, voxel_size) if voxel_size > 0 else points


class ScenePublisher(Node):
    """Publishes the scene once, latched (module docstring)."""

    def __init__(self, **kwargs):
        super().__init__("sahmr_scene_publisher", **kwargs)
        path = self.declare_parameter("file", "").value
        frame_id = self.declare_parameter("frame_id", "map").value
        topic = self.declare_parameter("topic", "/scene/points").value
        voxel = float(self.declare_parameter("voxel_size", 0.02).value)
        if not path:
            raise SahmrError("parameter file: not set; pass file:=/path/to/scene.npz (from `sahmr scene prepare`) or "
                             "a map file (.ply .pcd .obj .glb .e57 .las .npy)")
        points = load_scene_points(path, voxel)
        factory = RclpyFactory()
        header = factory.make("std_msgs/msg/Header", stamp=ns_to_time(factory, self.get_clock().now().nanoseconds),
                              frame_id=frame_id)
        self.cloud = xyz_to_pointcloud2(factory, header, points)
        self.publisher = self.create_publisher(type(self.cloud), topic, LATCHED_QOS)
        self.publisher.publish(self.cloud)
        self.get_logger().info(f"latched {len(points)} points of {path} on {topic} in frame {frame_id!r}")


def main(args: list[str] | None = None) -> int:
    """Run ``ros2 run sahmr_ros sahmr_scene_publisher --ros-args -p file:=room.ply``."""
    return spin_node(ScenePublisher, "sahmr_scene_publisher", args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
