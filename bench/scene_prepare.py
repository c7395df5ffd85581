"""Preparing and latching a large map, and per-frame time against map size.

    python bench/scene_prepare.py                        # 10 M points (16 rooms), all stages
    python bench/scene_prepare.py --points 2000000 --rooms 4

Stages, each in its own process (peak RSS is the process's own ``ru_maxrss``):

* ``write``: a 10 M-point cloud as a scanner leaves it: procedural rooms side by side, their surfaces
  sampled at random with 5 mm noise, 0.1 % NaN rows and 0.01 % lone returns; a binary PLY (float32).
* ``prepare``: ``sahmr scene prepare`` on it with the defaults (read, clean, voxelise, outliers; a cloud
  gets no SDF) and writing the file.
* ``latch``: what ``scene_file:=`` then costs: ``sahmr_scene_publisher``'s load (read the .npz, voxelise:
  nothing changes) and the PointCloud2 with its CDR bytes, then the node's side (PointCloud2 -> numpy ->
  ``Pipeline.set_scene``: voxelise + k-d tree). ``latch-raw`` does the same from the raw PLY.
* ``frame``: one person's frame (embedded default, CPU) with the demo room alone and with the prepared
  map added 100 m away (outside every region of interest): the ROI query and the whole frame, medians.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write(out: Path, points: int, rooms: int) -> dict:
    import trimesh

    from sahmr_ros.data.rooms import make_room
    from sahmr_ros.maps.readers import sample_surface

    t0 = time.perf_counter()
    side = int(np.ceil(np.sqrt(rooms)))
    parts, offset = [], np.zeros(3)
    meshes = [make_room(seed) for seed in range(rooms)]
    areas = np.array([trimesh.Trimesh(m.mesh_vertices, m.mesh_faces, process=False).area for m in meshes])
    rng = np.random.default_rng(0)
    for i, room in enumerate(meshes):
        n = int(points * areas[i] / areas.sum())
        spacing = np.sqrt(areas[i] / n)
        p = sample_surface(room.mesh_vertices.astype(np.float64), room.mesh_faces, spacing, seed=i,
                           max_samples=None, dtype=np.float32)
        offset = np.array([(i % side) * 10.0, (i // side) * 10.0, 0.0])
        parts.append(p + (offset + rng.normal(0, 0.005, p.shape)).astype(np.float32))
    cloud = np.concatenate(parts)
    cloud[rng.random(len(cloud)) < 1e-3] = np.nan
    lone = rng.random(len(cloud)) < 1e-4
    cloud[lone] += rng.uniform(-3, 3, (int(lone.sum()), 3)).astype(np.float32)
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(cloud)}\nproperty float x\n"
              "property float y\nproperty float z\nend_header\n").encode()
    with open(out, "wb") as f:
        f.write(header)
        f.write(cloud.astype("<f4").tobytes())
    return {"points": len(cloud), "bytes": out.stat().st_size, "s": time.perf_counter() - t0}


def _prepare(src: Path, out: Path) -> dict:
    from sahmr_ros.maps.prepare import PrepareOptions, prepare_scene, write_prepared_scene

    t0 = time.perf_counter()
    prepared = prepare_scene(src, PrepareOptions())
    t1 = time.perf_counter()
    write_prepared_scene(prepared, out)
    return {"prepare_s": t1 - t0, "write_s": time.perf_counter() - t1, "steps_s": prepared.provenance["seconds"],
            "counts": prepared.provenance["counts"], "bytes": out.stat().st_size, "peak_mb": _peak_mb()}


def _latch(path: Path) -> dict:
    from sahmr_ros import constants as C
    from sahmr_ros.geometry import voxel_downsample
    from sahmr_ros.io import read_point_cloud
    from sahmr_ros.ros.conversions import pointcloud2_to_xyz, xyz_to_pointcloud2
    from sahmr_ros.ros.interfaces import make_typestore
    from sahmr_ros.ros.messages import RosbagsFactory, ns_to_time
    from sahmr_ros.scene import Scene

    t = {}
    t0 = time.perf_counter()
    points = voxel_downsample(read_point_cloud(path, sample_mesh_surface=True), C.SCENE_PITCH_M)  # the latcher
    t["publisher_load_s"] = time.perf_counter() - t0
    ts = make_typestore()
    f = RosbagsFactory(ts)
    t0 = time.perf_counter()
    msg = xyz_to_pointcloud2(f, f.make("std_msgs/msg/Header", stamp=ns_to_time(f, 1), frame_id="map"), points)
    cdr = ts.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2")
    t["pointcloud2_and_cdr_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scene = Scene(pointcloud2_to_xyz(msg))  # PerceptionCore.on_scene -> Pipeline.set_scene
    t["node_latch_s"] = time.perf_counter() - t0
    return {**t, "points": len(points), "voxels": len(scene), "message_mb": len(cdr) / 1e6, "peak_mb": _peak_mb()}


def _frame(path: Path, repeats: int) -> dict:
    import torch

    from sahmr_ros.body.synthetic import write_synthetic_model_dir
    from sahmr_ros.demo.run import make_demo_scene
    from sahmr_ros.io import read_point_cloud
    from sahmr_ros.pipeline import Pipeline, PipelineConfig

    torch.set_num_threads(1)
    model_dir = write_synthetic_model_dir(Path(tempfile.mkdtemp()) / "model")
    demo = make_demo_scene(model_dir)
    pipe = Pipeline.embedded_default(model_dir, PipelineConfig(device="cpu"))
    big = read_point_cloud(path) + np.array([100.0, 0.0, 0.0])
    scenes = {"room": pipe.set_scene(demo.scene_points_map),
              "room_plus_map": pipe.set_scene(np.concatenate([demo.scene_points_map, big]))}
    box = demo.boxes[:1]
    frames = {name: [] for name in scenes}
    rois = {name: [] for name in scenes}
    for k in range(repeats + 1):  # the two scenes alternate, so load on the machine hits both alike
        for name, scene in scenes.items():
            pipe.scene = scene
            t0 = time.perf_counter()
            result = pipe.process(demo.image, demo.K, demo.T_map_camera, box)
            if k:  # the first round warms up
                frames[name].append(time.perf_counter() - t0)
                rois[name].append(result.timings_ms.get("roi_query", float("nan")))
    return {name: {"voxels": len(scene), "frame_ms": 1e3 * float(np.median(frames[name])),
                   "roi_query_ms": float(np.median(rois[name]))} for name, scene in scenes.items()}


def _child(stage: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--stage", stage, "--dir", str(args.dir), "--points", str(args.points),
           "--rooms", str(args.rooms), "--repeats", str(args.repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the benchmark (each stage in a child process), or one stage (``--stage``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--rooms", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--stage", default=None, choices=("write", "prepare", "latch", "latch-raw", "frame"))
    args = parser.parse_args()
    if args.stage:
        raw, prepared = args.dir / "map.ply", args.dir / "map_scene.npz"
        result = {"write": lambda: _write(raw, args.points, args.rooms), "prepare": lambda: _prepare(raw, prepared),
                  "latch": lambda: _latch(prepared), "latch-raw": lambda: _latch(raw),
                  "frame": lambda: _frame(prepared, args.repeats)}[args.stage]()
        print(json.dumps(result))
        return
    args.dir = args.dir or Path(tempfile.mkdtemp(prefix="sahmr_scene_bench_"))
    args.dir.mkdir(parents=True, exist_ok=True)
    for stage in ("write", "prepare", "latch", "latch-raw", "frame"):
        print(f"{stage:9s} {json.dumps(_child(stage, args))}", flush=True)


if __name__ == "__main__":
    main()
