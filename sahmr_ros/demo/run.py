"""``sahmr demo``: the whole pipeline on an embedded synthetic scene, no downloads.

A procedural room (the "scan"), the synthetic body posed standing on the floor and sitting on a
chair, a camera image of them rendered with a known camera, their boxes; then the pipeline with the
embedded default (the trained small-preset weights shipped in ``sahmr_ros/weights/``, or random ones on
request) and a figure (``DIR/demo.png``) with the projected meshes and a top view of roots and contacts.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sahmr_ros import constants as C
from sahmr_ros.geometry import invert_transform, project_points, transform_points

__all__ = ["DemoScene", "make_demo_scene", "run_demo"]

IMAGE_W, IMAGE_H = 640, 480
_BODY_COLORS = ((214, 160, 120), (120, 170, 214))


@dataclass
class DemoScene:
    """Synthetic input with ground truth.

    Attributes:
        image: (H, W, 3) uint8 render. K: (3, 3). T_map_camera: (4, 4).
        boxes: (N, 4) person boxes (from the projected ground-truth meshes).
        scene_points_map: (M, 3) the room's voxelised point cloud.
        gt_vertices_map: N arrays (6890, 3). gt_roots_map: (N, 3) H36M pelvis of each.
        room: the :class:`~sahmr_ros.data.rooms.Room`.
    """

    image: np.ndarray
    K: np.ndarray
    T_map_camera: np.ndarray
    boxes: np.ndarray
    scene_points_map: np.ndarray
    gt_vertices_map: list
    gt_roots_map: np.ndarray
    room: object


def make_demo_scene(model_dir: Path) -> DemoScene:
    """Build the synthetic room, two posed people and the rendered camera image."""
    from sahmr_ros.body import load_body_assets, load_body_model
    from sahmr_ros.visualization.render import look_at_camera, pinhole_intrinsics, render
    from sahmr_ros.data import poses
    from sahmr_ros.data.furniture import LABEL_CHAIR_SEAT
    from sahmr_ros.data.placement import place_person
    from sahmr_ros.data.rooms import DEMO_ROOM_SEED, make_room

    room = make_room(DEMO_ROOM_SEED)
    body = load_body_assets(model_dir)
    smpl = load_body_model(model_dir)
    rng = np.random.default_rng(DEMO_ROOM_SEED)
    chair = next(i for i, s in enumerate(room.supports) if s.label == LABEL_CHAIR_SEAT)
    sitter = place_person(smpl, room, chair, poses.SITTING, rng, part_ids=body.part_ids_6890)
    stander = place_person(smpl, room, 0, poses.STANDING, rng, part_ids=body.part_ids_6890, others=[sitter])
    people = [stander, sitter]
    target = np.mean([p.pelvis for p in people], axis=0)
    T_camera_map = look_at_camera(_camera_eye(room, target, room.supports[chair].facing), target)
    K = pinhole_intrinsics(IMAGE_W, IMAGE_H, 70.0)
    meshes = [(room.mesh_vertices, room.mesh_faces, room.face_colors)]
    meshes += [(p.vertices, body.faces, np.array(c, np.uint8)) for p, c in zip(people, _BODY_COLORS)]
    image = render(meshes, K, T_camera_map, IMAGE_W, IMAGE_H).rgb

    boxes = []
    for p in people:
        uv = project_points(transform_points(T_camera_map, p.vertices.astype(np.float64)), K)
        x1, y1 = np.clip(uv.min(0), 0, [IMAGE_W - 1, IMAGE_H - 1])
        x2, y2 = np.clip(uv.max(0), 0, [IMAGE_W - 1, IMAGE_H - 1])
        boxes.append([x1, y1, x2, y2])
    pelvis_row = body.j_regressor_h36m[C.H36M_PELVIS]
    return DemoScene(
        image=image,
        K=K,
        T_map_camera=invert_transform(T_camera_map),
        boxes=np.array(boxes),
        scene_points_map=room.scene_cloud(),
        gt_vertices_map=[p.vertices for p in people],
        gt_roots_map=np.array([pelvis_row @ p.vertices for p in people]),
        room=room,
    )


def _camera_eye(room, target: np.ndarray, facing: np.ndarray) -> np.ndarray:
    """Place a robot's camera 1.3 m high, 3 m from ``target``, inside the room, most in front of ``facing``."""
    best, score = None, -np.inf
    for angle in np.linspace(-np.pi, np.pi, 24, endpoint=False):
        direction = np.array([np.cos(angle), np.sin(angle), 0.0])
        eye = target + 3.0 * direction
        eye[2] = 1.3
        line = target + np.linspace(0.15, 1.0, 30)[:, None] * (eye - target)
        if (np.abs(eye[:2]) > room.size / 2 - 0.2).any() or room.sdf(line).min() < 0.05:
            continue
        if direction @ facing > score:
            best, score = eye, direction @ facing
    if best is None:
        raise RuntimeError(f"no camera position in demo room {room.seed}")
    return best


def run_demo(out_dir: Path, checkpoint: str | None = None, device: str = "auto", seed: int = 0,
             weights: str = "shipped", precision: str = "fp32") -> Path:
    """Run the embedded default end to end; writes ``out_dir/demo.png`` and returns its path.

    Args:
        checkpoint: run this checkpoint (either preset) instead of the embedded default weights.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto`` (see :class:`~sahmr_ros.pipeline.PipelineConfig`).
        weights: ``"shipped"`` (the trained weights in ``sahmr_ros/weights/``) or ``"untrained"`` (random,
            ``seed``); see :meth:`~sahmr_ros.pipeline.Pipeline.embedded_default`.
    """
    from sahmr_ros.body.synthetic import write_synthetic_model_dir
    from sahmr_ros.visualization.figures import ImageOverlay, TopView, write_result_figure
    from sahmr_ros.pipeline import Pipeline, PipelineConfig

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = write_synthetic_model_dir(out_dir / "synthetic_model")
    print(f"[1/5] synthetic body model written to {model_dir}")
    # weights before the scene: a missing or corrupt weights file is reported before seconds of rendering
    pipe = Pipeline.embedded_default(model_dir, PipelineConfig(device=device, precision=precision),
                                     checkpoint=checkpoint, weights=weights, seed=seed)
    scene = make_demo_scene(model_dir)
    print(f"[2/5] room: {len(scene.scene_points_map)} scan points; rendered {IMAGE_W}x{IMAGE_H} image, "
          f"{len(scene.boxes)} people")

    untrained = checkpoint is None and weights == "untrained"
    shipped = checkpoint is None and not untrained
    if untrained:
        print("\n" + "!" * 78)
        print("!! UNTRAINED WEIGHTS (random, seed %d), as asked (--untrained): the estimates below" % seed)
        print("!! are NOT meaningful. They show the pipeline running end to end. Run without")
        print("!! --untrained for the trained embedded default, or pass --checkpoint.")
        print("!" * 78 + "\n")
    print(f"[3/5] weights: {pipe.weights_description}; device {pipe.device}, precision {pipe.precision}")
    pipe.set_scene(scene.scene_points_map)
    frame = pipe.process(scene.image, scene.K, scene.T_map_camera, scene.boxes)

    lines = textwrap.wrap(f"sahmr demo - weights: {pipe.weights_description}", width=150)
    if untrained:
        lines.append("UNTRAINED WEIGHTS: estimates are not meaningful")
    errors = []
    for p in frame.persons:
        err = float(np.linalg.norm(p.root_map - scene.gt_roots_map[p.box_index]))
        errors.append(err)
        parts = ", ".join(f"{name} {n}" for name, n in p.contacts_by_part().items()) or "none"
        print(f"  person {p.box_index}: root error {err * 1000:.0f} mm, {p.num_roi_voxels} ROI voxels, "
              f"contacts: {parts}{' [' + ', '.join(p.flags) + ']' if p.flags else ''}")
        lines.append(f"person {p.box_index}: root error {err * 1000:.0f} mm, {len(p.contact_labels)} contact points")
    for s in frame.skipped:
        print(f"  skipped box {s.box_index}: {s.reason}")
    if shipped:
        print("  " + _card_reference())
    t = frame.timings_ms
    print("  timings (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()))
    lines.append(f"total {t['total']:.0f} ms on {pipe.device}")

    T_camera_map = invert_transform(scene.T_map_camera)
    overlay = ImageOverlay(scene.image, scene.K, [transform_points(T_camera_map, p.vertices_map.astype(np.float64))
                                                  for p in frame.persons], pipe.faces, scene.boxes)
    top_view = TopView(scene.scene_points_map, scene.T_map_camera[:3, 3], scene.T_map_camera[:3, 2],
                       scene.gt_roots_map, np.array([p.root_map for p in frame.persons]).reshape(-1, 3),
                       [p.contact_points_map for p in frame.persons], [p.contact_labels for p in frame.persons])
    png = write_result_figure(out_dir / "demo.png", overlay, top_view, lines)
    mean = f"{np.mean(errors) * 1000:.0f} mm" if errors else "n/a"
    which = ("UNTRAINED weights" if untrained else "embedded default weights" if shipped
             else f"checkpoint {Path(checkpoint).name}")
    print(f"[4/5] wrote {png} (mean root error {mean}, {which})")
    _run_through_the_node_path(scene, pipe, out_dir)
    return png


def _card_reference() -> str:
    """One line putting the demo's root errors in context: the model card's held-out root errors."""
    from sahmr_ros.weights import MODEL_CARD_FILENAME, display_path, read_card

    held = read_card()["held_out"]
    mine, floor = held["metrics"], held["untrained_metrics"]
    return (f"for comparison, the model card ({display_path(MODEL_CARD_FILENAME)}) on its held-out split of "
            f"{mine['images']} images: root error median {mine['root_error_mm_median']:.0f} mm "
            f"(untrained: {floor['root_error_mm_median']:.0f} mm)")


def _run_through_the_node_path(scene: DemoScene, pipe, out_dir: Path) -> None:
    """Write the demo input as a rosbag2 and run it through ``sahmr bag`` (the node's code path)."""
    import shutil

    from sahmr_ros.demo.bag import write_demo_bag
    from sahmr_ros.ros.bag import run_bag
    from sahmr_ros.ros.core import NodeParams

    bag_in, bag_out = out_dir / "demo_input_bag", out_dir / "demo_output_bag"
    for old in (bag_in, bag_out):
        shutil.rmtree(old, ignore_errors=True)
    params = NodeParams(demo=True)
    write_demo_bag(scene, bag_in, params)
    summary = run_bag(bag_in, bag_out, params, pipe, progress=False, log=lambda line: print("  " + line))
    print(f"[5/5] the same input as a rosbag2 through the node's code path: {summary.frames_processed} frames, "
          f"{summary.persons} persons -> {bag_out} (topics {params.meshes_topic}, {params.contacts_topic}, "
          f"{params.humans_topic}; open it in Foxglove, fixed frame {params.map_frame!r})")
