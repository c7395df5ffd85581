"""Speed of the renderer (sahmr_ros.visualization.render): a room and up to 4 bodies, per image size.

    python bench/render.py                               # 640x480, 960x540, 1280x720; 0, 1, 4 bodies
    python bench/render.py --sizes 640x480 --bodies 4 --room-subdivisions 6 --repeats 20

The room is a 6 x 5 x 2.6 m box with eight furniture boxes, subdivided so that it has 5k to 50k
triangles (``--room-subdivisions`` 4, 5, 6); the bodies are the synthetic SMPL-topology template
(13,776 triangles each) standing in the room. Each line gives the median wall time of ``render``
over ``--repeats`` calls (the per-calibration ray cache warm: a data generator renders many frames
per camera), the CPU time of the process over the same calls (all threads), the rays (pixels) per
second, and the first call with a cold ray cache. ``--distortion`` renders through a plumb_bob lens.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sahmr_ros.body.synthetic import make_synthetic_body  # noqa: E402
from sahmr_ros.visualization.render import _cached_rays, look_at_camera, pinhole_intrinsics, render  # noqa: E402

PLUMB_BOB = (-0.25, 0.07, 0.001, -0.0005, -0.01)


def _box(centre, extents, subdivisions: int):
    import trimesh

    box = trimesh.creation.box(extents=extents)
    for _ in range(subdivisions):
        box = box.subdivide()
    return box.vertices + centre, box.faces


def room_meshes(subdivisions: int) -> list[tuple]:
    """The room shell and furniture as one mesh with per-face colours."""
    rng = np.random.default_rng(0)
    parts = [_box([0.0, 0.0, 1.3], [6.0, 5.0, 2.6], subdivisions)]
    for _ in range(8):
        extents = rng.uniform([0.4, 0.4, 0.4], [1.8, 1.0, 1.0])
        centre = np.append(rng.uniform([-2.2, -1.8], [2.2, 1.8]), extents[2] / 2)
        parts.append(_box(centre, extents, max(0, subdivisions - 3)))
    vertices, faces, offset = [], [], 0
    for v, f in parts:
        vertices.append(v)
        faces.append(f + offset)
        offset += len(v)
    faces = np.concatenate(faces)
    colors = rng.integers(60, 230, size=(len(faces), 3))
    return [(np.concatenate(vertices), faces, colors)]


def body_meshes(count: int) -> list[tuple]:
    """``count`` synthetic bodies standing on the floor in a row, facing the camera (-y)."""
    body = make_synthetic_body()
    # SMPL frame: y up, z forward -> map: z up, facing -y
    to_map = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    standing = body.vertices @ to_map.T
    standing[:, 2] -= standing[:, 2].min()
    return [(standing + [-1.2 + 0.8 * k, 0.3 * (k % 2), 0.0], body.faces, (210, 160, 130)) for k in range(count)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["640x480", "960x540", "1280x720"])
    parser.add_argument("--bodies", nargs="+", type=int, default=[0, 1, 4])
    parser.add_argument("--room-subdivisions", nargs="+", type=int, default=[4, 6])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--distortion", action="store_true", help="render through a plumb_bob lens")
    args = parser.parse_args(argv)

    distortion = PLUMB_BOB if args.distortion else None
    print(f"{'size':>9} {'room tri':>8} {'bodies':>6} {'all tri':>8} {'median ms':>9} {'cpu ms':>7} "
          f"{'Mrays/s':>8} {'cold ms':>8}")
    for subdivisions in args.room_subdivisions:
        room = room_meshes(subdivisions)
        for size in args.sizes:
            width, height = (int(x) for x in size.split("x"))
            K = pinhole_intrinsics(width, height, 70.0)
            T = look_at_camera([0.3, -2.3, 1.3], [0.0, 0.3, 0.9])
            for count in args.bodies:
                meshes = room + body_meshes(count)
                triangles = sum(len(f) for _, f, _ in meshes)
                _cached_rays.cache_clear()
                start = time.perf_counter()
                render(meshes, K, T, width, height, distortion=distortion)
                cold = time.perf_counter() - start
                walls = []
                cpu_start = time.process_time()
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    render(meshes, K, T, width, height, distortion=distortion)
                    walls.append(time.perf_counter() - start)
                cpu = (time.process_time() - cpu_start) / args.repeats
                median = float(np.median(walls))
                print(f"{size:>9} {len(room[0][1]):>8} {count:>6} {triangles:>8} {median * 1e3:>9.1f} "
                      f"{cpu * 1e3:>7.1f} {width * height / median / 1e6:>8.2f} {cold * 1e3:>8.1f}")


if __name__ == "__main__":
    main()
