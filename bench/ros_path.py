"""Per-frame cost of the node's message work around the pipeline (rosbags messages, no ROS needed).

    python bench/ros_path.py                 # 1, 4, 8 persons, small preset, CPU
    python bench/ros_path.py --persons 1 2 --repeats 10
    python bench/ros_path.py --persons 4 --mesh-levels 6890 1723 --every-n 1 3   # the mesh marker knobs

Stages: decoding the rgb8 Image, CameraInfo and Detection2DArray (``inputs``), the pipeline
(``pipeline``, as bench/latency.py measures it in detail), building the MarkerArray (``markers``:
41,328 points per person), the contact PointCloud2 (``contacts``) and the HumanMeshArray
(``humans``), and CDR serialisation of the three outputs (``serialise``: what a bag write or a DDS
publish pays). Prints medians in ms and each stage's share of the frame.

Then, per mesh level (``mesh_level``: 6890 or 1723 vertices) and marker rate (``mesh_every_n``), the
mesh MarkerArray alone over ``--frames`` frames of the same persons (so every-N amortises): building
and serialising it in ms per person per frame, and its CDR bytes per person per frame.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sahmr_ros.body.synthetic import write_synthetic_model_dir  # noqa: E402
from sahmr_ros.demo.run import make_demo_scene  # noqa: E402
from sahmr_ros.pipeline import Pipeline, PipelineConfig  # noqa: E402
from sahmr_ros.ros.conversions import (  # noqa: E402
    boxes_to_detections,
    camera_info_to_intrinsics,
    contacts_to_pointcloud2,
    detections_to_boxes,
    human_mesh_array,
    image_to_rgb,
    intrinsics_to_camera_info,
    mesh_markers,
    rgb_to_image,
)
from sahmr_ros.ros.interfaces import make_typestore  # noqa: E402
from sahmr_ros.ros.mesh_output import MeshMarkerSchedule, build_mesh_markers  # noqa: E402
from sahmr_ros.ros.messages import RosbagsFactory, ns_to_time  # noqa: E402

STAGES = ("inputs", "pipeline", "markers", "contacts", "humans", "serialise")


def _inputs(f, scene, n: int):
    h, w = scene.image.shape[:2]
    header = f.make("std_msgs/msg/Header", stamp=ns_to_time(f, 1), frame_id="camera")
    boxes = [scene.boxes[i % len(scene.boxes)] + (i // len(scene.boxes)) * np.array([3.0, 0, 3.0, 0]) for i in range(n)]
    return (rgb_to_image(f, header, scene.image), intrinsics_to_camera_info(f, header, scene.K, w, h),
            boxes_to_detections(f, header, np.array(boxes), ids=[str(i) for i in range(n)]))


def _frame(ts, f, pipe, scene, msgs) -> dict[str, float]:
    t = {}
    t0 = time.perf_counter()
    image, info, dets = msgs
    rgb = image_to_rgb(image)
    K = camera_info_to_intrinsics(info).K
    boxes = detections_to_boxes(dets)
    t["inputs"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = pipe.process(rgb, K, scene.T_map_camera, boxes.boxes, boxes.scores)
    t["pipeline"] = time.perf_counter() - t0
    header = f.make("std_msgs/msg/Header", stamp=ns_to_time(f, 1), frame_id="map")
    t0 = time.perf_counter()
    markers = mesh_markers(f, header, result.persons, pipe.faces, ids=boxes.ids)
    t["markers"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    contacts = contacts_to_pointcloud2(f, header, result.persons)
    t["contacts"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    humans = human_mesh_array(f, header, result.persons, ids=boxes.ids)
    t["humans"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ts.serialize_cdr(markers, "visualization_msgs/msg/MarkerArray")
    ts.serialize_cdr(contacts, "sensor_msgs/msg/PointCloud2")
    ts.serialize_cdr(humans, "sahmr_ros/msg/HumanMeshArray")
    t["serialise"] = time.perf_counter() - t0
    return {k: v * 1e3 for k, v in t.items()}


def _mesh_markers_per_person(ts, f, pipe, persons, ids, level: int, every_n: int, frames: int) -> tuple:
    """(build ms, serialise ms, CDR bytes) of the mesh MarkerArray per person per frame, over ``frames``."""
    schedule = MeshMarkerSchedule(every_n)
    header = f.make("std_msgs/msg/Header", stamp=ns_to_time(f, 1), frame_id="map")
    build = serialise = size = 0.0
    for _ in range(frames):
        t0 = time.perf_counter()
        markers = build_mesh_markers(f, header, persons, pipe.mesh_levels[level], schedule, lifetime_s=1.0, ids=ids)
        t1 = time.perf_counter()
        size += len(ts.serialize_cdr(markers, "visualization_msgs/msg/MarkerArray"))
        build, serialise = build + t1 - t0, serialise + time.perf_counter() - t1
    scale = 1.0 / (frames * len(persons))
    return 1e3 * build * scale, 1e3 * serialise * scale, size * scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mesh-levels", type=int, nargs="+", default=[6890, 1723])
    parser.add_argument("--every-n", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--frames", type=int, default=12, help="frames per mesh level and rate (default: 12)")
    args = parser.parse_args()

    model_dir = write_synthetic_model_dir(Path(tempfile.mkdtemp()) / "model")
    scene = make_demo_scene(model_dir)
    torch.manual_seed(0)
    pipe = Pipeline.embedded_default(model_dir, PipelineConfig(device=args.device),
                                     weights="untrained")  # as when the README's figures were measured
    pipe.set_scene(scene.scene_points_map)
    ts = make_typestore()
    f = RosbagsFactory(ts)
    print(f"node message path, small preset, {args.device}, medians of {args.repeats} (ms)")
    print(f"{'persons':>8} " + " ".join(f"{s:>10}" for s in STAGES) + f" {'total':>9}  message share")
    for n in args.persons:
        msgs = _inputs(f, scene, n)
        _frame(ts, f, pipe, scene, msgs)  # warm-up
        runs = [_frame(ts, f, pipe, scene, msgs) for _ in range(args.repeats)]
        med = {s: float(np.median([r[s] for r in runs])) for s in STAGES}
        total = sum(med.values())
        share = 1.0 - med["pipeline"] / total
        print(f"{n:>8} " + " ".join(f"{med[s]:>10.1f}" for s in STAGES) + f" {total:>9.1f}  {share:6.1%}")
    print(f"\nmesh MarkerArray per person per frame (means over {args.frames} frames; lifetime 1 s)")
    print(f"{'persons':>8} {'level':>6} {'every_n':>8} {'build ms':>9} {'cdr ms':>7} {'bytes':>9}")
    for n in args.persons:
        image, info, dets = _inputs(f, scene, n)
        boxes = detections_to_boxes(dets)
        result = pipe.process(image_to_rgb(image), camera_info_to_intrinsics(info).K, scene.T_map_camera,
                              boxes.boxes, boxes.scores)
        ids = [boxes.ids[p.box_index] for p in result.persons]
        for level in args.mesh_levels:
            for every_n in args.every_n:
                build, cdr, size = _mesh_markers_per_person(ts, f, pipe, result.persons, ids, level, every_n,
                                                            args.frames)
                print(f"{n:>8} {level:>6} {every_n:>8} {build:>9.2f} {cdr:>7.2f} {size:>9.0f}")


if __name__ == "__main__":
    main()
