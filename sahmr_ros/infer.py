"""``sahmr infer``: the pipeline on a user's own image, camera, pose, scene and boxes.

Reads the inputs with :mod:`sahmr_ros.io`, runs :class:`~sahmr_ros.pipeline.Pipeline` once, and writes
into ``out_dir``:

* ``person_<i>_mesh.ply`` (or ``.obj``): the recovered mesh, map frame, metres (SMPL topology);
* ``person_<i>_contacts.ply``: the scene points the person touches, with a ``label`` property
  (``constants.CONTACT_PART_NAMES``) and colours by body part;
* ``summary.json``: inputs, weights, per person root / 14 joints / contact counts / flags, skipped
  boxes and their reasons, per-stage timings;
* ``overlay.png``: the image with the projected meshes and boxes, and a top view of the scene with
  roots and contacts.

``<i>`` is the box's index in the order the boxes were given (0-based), so a skipped box leaves a gap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.geometry import invert_transform, transform_points
from sahmr_ros.io import (
    read_boxes,
    read_camera,
    read_image,
    read_point_cloud,
    read_pose,
    undistort_image,
    write_labelled_points_ply,
    write_mesh,
)

__all__ = ["InferInputs", "load_inputs", "run_infer", "DISTORTION_POLICIES", "MESH_FORMATS"]

DISTORTION_POLICIES = ("undistort", "refuse")
MESH_FORMATS = ("ply", "obj")
SUMMARY_FORMAT = "sahmr_ros.infer/1"


@dataclass
class InferInputs:
    """Everything ``sahmr infer`` reads, checked for consistency.

    Attributes:
        image: (H, W, 3) uint8 RGB, undistorted when the camera had distortion.
        K: (3, 3) intrinsics of ``image`` (camera optical frame).
        T_map_camera: (4, 4) camera pose in the map frame.
        scene_points_map: (N, 3) float64 scene points, map frame.
        boxes: (B, 4) person boxes ``x1, y1, x2, y2`` in pixels.
        undistorted: whether the image was undistorted.
        sources: file (or argument) each input came from, for the summary.
    """

    image: np.ndarray
    K: np.ndarray
    T_map_camera: np.ndarray
    scene_points_map: np.ndarray
    boxes: np.ndarray
    undistorted: bool = False
    sources: dict = field(default_factory=dict)


def load_inputs(image: str | Path, camera: str | Path, pose: str | Path, scene: str | Path,
                boxes: Sequence[str], distortion: str = "undistort") -> InferInputs:
    """Read and cross-check the inputs of one inference.

    Args:
        image: image file (PNG, JPEG, ...; any mode, converted to RGB).
        camera: camera YAML/JSON (:func:`sahmr_ros.io.read_camera`).
        pose: ``T_map_camera`` file or string (:func:`sahmr_ros.io.read_pose`).
        scene: map-frame point cloud or mesh (meshes are sampled on their surface at 2 cm).
        boxes: one ``"x1,y1,x2,y2"`` per person.
        distortion: ``"undistort"`` (remove plumb_bob / rational_polynomial distortion, keeping K) or
            ``"refuse"`` (a camera with non-zero distortion is an error).

    Raises:
        InputError: naming the file and field of any unreadable or inconsistent input.
    """
    if distortion not in DISTORTION_POLICIES:
        raise InputError(f"--distortion: {distortion!r} unknown; choose one of {', '.join(DISTORTION_POLICIES)}")
    if not boxes:
        raise InputError("--box: no person box given; pass at least one --box x1,y1,x2,y2 (pixels)")
    rgb = read_image(image)
    cam = read_camera(camera)
    height, width = rgb.shape[:2]
    for name, calib, actual in (("width", cam.width, width), ("height", cam.height, height)):
        if calib is not None and calib != actual:
            raise InputError(f"{camera}: image {name} {calib} does not match {image} ({width}x{height}); "
                             "use the calibration of this camera at this resolution")
    undistorted = False
    K = cam.K
    if cam.has_distortion:
        if distortion == "refuse":
            raise InputError(f"{camera}: distortion coefficients are non-zero ({cam.model}) and --distortion refuse "
                             "was given; pass a rectified image with zero distortion, or --distortion undistort")
        rgb, K = undistort_image(rgb, cam)
        undistorted = True
    return InferInputs(
        image=rgb,
        K=K,
        T_map_camera=read_pose(pose),
        scene_points_map=read_point_cloud(scene, sample_mesh_surface=True),
        boxes=read_boxes(list(boxes)),
        undistorted=undistorted,
        sources={"image": str(image), "camera": str(camera), "pose": str(pose), "scene": str(scene)},
    )


def _person_summary(p, mesh_name: str, contacts_name: str) -> dict:
    return {
        "box_index": p.box_index,
        "box_xyxy": np.asarray(p.box_xyxy, dtype=float).tolist(),
        "score": float(p.score),
        "root_map": np.asarray(p.root_map, dtype=float).tolist(),
        "root_camera": np.asarray(p.root_camera, dtype=float).tolist(),
        "joints14_map": {name: np.asarray(j, dtype=float).tolist()
                         for name, j in zip(C.JOINT14_NAMES, p.joints14_map)},
        "num_contact_points": int(len(p.contact_labels)),
        "contact_points_by_part": p.contacts_by_part(),
        "num_roi_voxels": int(p.num_roi_voxels),
        "flags": list(p.flags),
        "mesh": mesh_name,
        "contacts": contacts_name,
    }


def run_infer(inputs: InferInputs, pipeline, out_dir: str | Path, mesh_format: str = "ply") -> dict:
    """Run ``pipeline`` on ``inputs`` and write the outputs (module docstring) into ``out_dir``.

    Args:
        inputs: from :func:`load_inputs`.
        pipeline: a :class:`~sahmr_ros.pipeline.Pipeline`.
        out_dir: created if needed; existing files of the same names are overwritten.
        mesh_format: ``"ply"`` or ``"obj"``.

    Returns:
        The summary written to ``summary.json``.
    """
    from sahmr_ros.visualization.figures import ImageOverlay, TopView, write_result_figure

    if mesh_format not in MESH_FORMATS:
        raise InputError(f"--mesh-format: {mesh_format!r} unknown; choose one of {', '.join(MESH_FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scene = pipeline.set_scene(inputs.scene_points_map)
    frame = pipeline.process(inputs.image, inputs.K, inputs.T_map_camera, inputs.boxes)

    persons = []
    for p in frame.persons:
        mesh_name = f"person_{p.box_index}_mesh.{mesh_format}"
        contacts_name = f"person_{p.box_index}_contacts.ply"
        write_mesh(out_dir / mesh_name, p.vertices_map, pipeline.faces)
        write_labelled_points_ply(out_dir / contacts_name, p.contact_points_map,
                                  np.asarray(p.contact_labels, dtype=np.int64))
        persons.append(_person_summary(p, mesh_name, contacts_name))

    T_camera_map = invert_transform(inputs.T_map_camera)
    meshes_camera = [transform_points(T_camera_map, p.vertices_map.astype(np.float64)) for p in frame.persons]
    timings = frame.timings_ms
    title = [f"sahmr infer - weights: {pipeline.weights_description}",
             f"{len(frame.persons)} of {len(inputs.boxes)} boxes recovered; total {timings['total']:.0f} ms "
             f"on {pipeline.device}"]
    write_result_figure(
        out_dir / "overlay.png", ImageOverlay(inputs.image, inputs.K, meshes_camera, pipeline.faces, inputs.boxes),
        TopView(scene.points_map, inputs.T_map_camera[:3, 3], inputs.T_map_camera[:3, 2], np.zeros((0, 3)),
                np.array([p.root_map for p in frame.persons]).reshape(-1, 3),
                [p.contact_points_map for p in frame.persons], [p.contact_labels for p in frame.persons]),
        title)

    summary = {
        "format": SUMMARY_FORMAT,
        "frames": "map frame (of --pose and --scene), metres; root = H36M pelvis; joints in H36M-14 order",
        "weights": pipeline.weights_description,
        "device": str(pipeline.device),
        "inputs": {
            **inputs.sources,
            "image_size": [int(inputs.image.shape[1]), int(inputs.image.shape[0])],
            "undistorted": inputs.undistorted,
            "K": inputs.K.tolist(),
            "T_map_camera": inputs.T_map_camera.tolist(),
            "scene_points": scene.num_input_points,
            "scene_points_dropped_nonfinite": scene.num_dropped_nonfinite,
            "scene_points_after_voxelisation": len(scene),
            "boxes": inputs.boxes.tolist(),
        },
        "persons": persons,
        "skipped": [{"box_index": s.box_index, "reason": s.reason} for s in frame.skipped],
        "timings_ms": timings,
        "overlay": "overlay.png",
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
